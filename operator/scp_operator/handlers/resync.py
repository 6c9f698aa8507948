"""The periodic re-read: one task per process walks every object, instead of a timer per object.

Every ``SCP_OPERATOR_RESYNC_INTERVAL`` seconds (jittered ±25 %) a sweep lists the VirtualServers
a page at a time, reads each live object's server from SCP (:func:`observation.look`, the same
read as at creation, through the same request limiter as deletions) and writes only what changed:
``Ready``, the generation it describes, ``status.server``. An answer that says nothing about the
server (429, 5xx, a transport error) changes nothing.

Why one loop and not a Kopf timer per object (as before): a Kopf timer is an asyncio task per
object that also keeps the object's latest body for it, so memory grew with every watched object
(measured in the benchmark's footprint section), and each timer run was a Kopf processing cycle.
One loop holds one page of bodies at a time, whatever the number of objects.

What makes writing from outside Kopf safe: the status merge patch carries the ``resourceVersion``
of the body the read started from (:func:`kube_status.patch_status`), so an object that changed
meanwhile — a deletion began, Kopf wrote a handler's status — is not overwritten; the next sweep
reads it again. Terminating objects are skipped: the delete handler owns them. Events are posted
only after the status write succeeded, as Kopf does for handlers.

The reads of one sweep are spread over 80 % of the interval (at most :data:`IN_FLIGHT` at once),
so 5 000 objects every 10 minutes cost about 10 SCP reads a second, not a burst.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import logging
import random
from collections.abc import Callable, Sequence
from typing import Any, cast

import kopf

from scp_operator import kube_status, reporting
from scp_operator.handlers import observation
from scp_operator.kube import KubeClient, KubeReadError
from scp_operator.runtime import Runtime

logger = logging.getLogger(__name__)
_rng = random.SystemRandom()

#: A sweep's reads are spread over this share of the interval, leaving room for slow answers.
SPREAD = 0.8
#: Reads of one sweep in flight at most (each still waits for the SCP request limiter).
IN_FLIGHT = 8


@dataclasses.dataclass
class Sweep:
    """What one sweep did (for the log and for tests)."""

    read: int = 0
    written: int = 0
    conflicts: int = 0  # the object changed meanwhile: left for the next sweep


class Resync:
    """The re-read loop of one process (see the module docstring)."""

    def __init__(
        self,
        runtime: Runtime,
        kube: KubeClient,
        *,
        interval: float,
        namespaces: Sequence[str] = (),
        keep: Callable[[dict[str, Any]], bool] = lambda _item: True,
        shard_selector: str = "",
    ) -> None:
        self._runtime = runtime
        self._shard_selector = shard_selector
        self._kube = kube
        self._interval = interval
        self._namespaces = tuple(namespaces)
        self._keep = keep
        self._task: asyncio.Task[None] | None = None

    def start(self) -> None:
        """Start sweeping; the first sweep comes after one (jittered) interval, since every
        object was just read at creation or on resume."""
        self._task = asyncio.create_task(self._run(), name="resync")

    async def stop(self) -> None:
        task, self._task = self._task, None
        if task is not None:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task

    async def _run(self) -> None:
        while True:
            await asyncio.sleep(self._interval * _rng.uniform(*observation.JITTER))
            try:
                done = await self.sweep()
            except KubeReadError as exc:
                logger.warning("Periodic re-read skipped, the objects cannot be listed: %s", exc)
                continue
            logger.debug(
                "Periodic re-read: %d read, %d written, %d changed meanwhile",
                done.read,
                done.written,
                done.conflicts,
            )

    async def sweep(self, spread: float | None = None) -> Sweep:
        """Read every live object's server once; ``spread``: seconds to spread the reads over
        (default: :data:`SPREAD` of the interval)."""
        budget = self._interval * SPREAD if spread is None else spread
        done = Sweep()
        slots = asyncio.Semaphore(IN_FLIGHT)
        running: set[asyncio.Task[None]] = set()
        listed = started = 0
        try:
            async for items, remaining in kube_status.pages(
                self._kube, self._namespaces, keep=self._keep, shard_selector=self._shard_selector
            ):
                expected = listed + len(items) + (remaining or 0)
                listed += len(items)
                for item in items:
                    if (item.get("metadata") or {}).get("deletionTimestamp"):
                        continue  # the delete handler owns it
                    if started and budget > 0:  # spaced between reads, none after the last
                        await asyncio.sleep(budget / max(expected, 1))
                    await slots.acquire()
                    task = asyncio.create_task(self._one(item, done))
                    running.add(task)
                    task.add_done_callback(running.discard)
                    task.add_done_callback(lambda _t: slots.release())
                    started += 1
            if running:
                await asyncio.gather(*running)
        finally:
            for task in running:
                task.cancel()
        return done

    async def _one(self, item: dict[str, Any], done: Sweep) -> None:
        try:
            await self._reread(item, done)
        except KubeReadError as exc:
            logger.warning("Periodic re-read: %s", exc)
        except Exception:  # one object's surprise must not end the loop for all
            logger.exception("Periodic re-read of one object failed")

    async def _reread(self, item: dict[str, Any], done: Sweep) -> None:
        body = kopf.Body(cast(kopf.RawBody, item))
        meta, status = body.meta, body.status
        namespace, name = str(meta.get("namespace")), str(meta.get("name"))
        seen = await observation.look(body.spec, namespace, self._runtime, retry=0)
        done.read += 1
        if not seen.news or not observation.changed(status, meta.get("generation"), seen):
            return
        patch = kopf.Patch()
        held: list[tuple[bool, str, str]] = []
        out = dataclasses.replace(
            reporting.subject(body, meta, status, patch, kopf.Memo(), self._runtime),
            held_events=held,
        )
        observation.write(out, seen)
        written = await kube_status.patch_status(
            self._kube, namespace, name, patch["status"], str(meta.get("resourceVersion") or "")
        )
        if not written:
            done.conflicts += 1
            return
        done.written += 1
        logger.info("[%s/%s] SCP now says: %s", namespace, name, seen.message)
        for warning, reason, message in held:
            await kube_status.post_event(
                self._kube, item, warning=warning, reason=reason, message=message
            )
