"""Wake a held deletion's wait when its object is switched to ``deletionPolicy: Orphan``.

A held deletion waits for its next attempt inside the delete handler (see
:mod:`scp_operator.handlers.pacing` for why: one Kubernetes write per retry instead of two).
While it waits, Kopf cannot run the Orphan fast path for that object — one object's handlers run
one at a time — so this module watches for the switch itself and wakes the wait.

One watch per watched namespace (or one cluster-wide), filtered by the API server with the
field selector ``spec.deletionPolicy=Orphan`` (a CRD ``selectableField``): it carries only
objects that are, or just became, Orphan, whatever the number of objects. It starts from the
collection's current ``resourceVersion`` (a one-item LIST), so existing Orphan objects are not
replayed, and starts over after an error or an expired version. It starts with the first wait
and then keeps running (one idle connection) rather than reconnect for every retry.

Waking is a courtesy, never the safety: after any wait the handler reads the object again and
acts only on what the API server says now. A missed wake (the watch reconnecting at that moment)
costs time — the Orphan release comes at the next attempt — not a deletion.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Callable, Sequence
from typing import Any

from scp_operator.constants import GROUP, PLURAL, VERSION
from scp_operator.kube_http import Connection, KubeApiError, path

logger = logging.getLogger(__name__)

SELECTOR = "spec.deletionPolicy=Orphan"
#: Seconds a watch request stays open (the API server ends it then; a new one follows).
WATCH_SECONDS = 300
#: After a failure, the next watch starts this much later, doubling up to :data:`RETRY_CAP`.
RETRY_SECONDS = 5.0
RETRY_CAP = 300.0
#: Objects seen turning Orphan are remembered this long, for a wait registered just after.
REMEMBER_SECONDS = 60.0

_API = f"{GROUP}/{VERSION}"


class OrphanWatch:
    """Lets a deletion wait until a time, or until its object is switched to Orphan."""

    def __init__(
        self,
        connect: Callable[[], Connection] = lambda: Connection(connections=1),
        namespaces: Sequence[str] = (),
        clock: Callable[[], float] = time.monotonic,
        *,
        enabled: bool = True,
    ) -> None:
        self._enabled = enabled
        self._connect = connect
        self._namespaces = tuple(namespaces) or (None,)
        self._clock = clock
        self._waiting: dict[str, asyncio.Event] = {}
        self._seen: dict[str, float] = {}  # uid -> when it was seen terminating as Orphan
        self._tasks: list[asyncio.Task[None]] = []
        self._connection: Connection | None = None

    async def wait(self, uid: str, seconds: float) -> bool:
        """Wait ``seconds``; True when the object was switched to Orphan meanwhile."""
        if self._recently_seen(uid):
            return True
        event = self._waiting.setdefault(uid, asyncio.Event())
        self._start()
        try:
            await asyncio.wait_for(event.wait(), timeout=max(0.0, seconds))
            return True
        except TimeoutError:
            return False
        finally:
            self._waiting.pop(uid, None)

    def _recently_seen(self, uid: str) -> bool:
        now = self._clock()
        for key in [k for k, t in self._seen.items() if now - t > REMEMBER_SECONDS]:
            del self._seen[key]
        return uid in self._seen

    def saw(self, obj: dict[str, Any]) -> None:
        """One object from the watch: wake its wait if it is terminating and Orphan."""
        meta = obj.get("metadata") or {}
        uid = str(meta.get("uid") or "")
        orphan = (obj.get("spec") or {}).get("deletionPolicy") == "Orphan"
        if not uid or not orphan or not meta.get("deletionTimestamp"):
            return  # checked here too: a selector the API server ignored must not wake anything
        self._seen[uid] = self._clock()
        event = self._waiting.get(uid)
        if event is not None:
            event.set()

    def _start(self) -> None:
        if self._tasks or not self._enabled:
            return
        self._connection = self._connect()
        self._tasks = [
            asyncio.create_task(self._watch(self._connection, ns), name=f"orphan watch {ns or '*'}")
            for ns in self._namespaces
        ]

    async def _stop(self) -> None:
        tasks, self._tasks = self._tasks, []
        connection, self._connection = self._connection, None
        for task in tasks:
            task.cancel()
        for task in tasks:
            with contextlib.suppress(asyncio.CancelledError):
                await task
        if connection is not None:
            await connection.aclose()

    async def aclose(self) -> None:
        """Stop watching (the operator is stopping)."""
        await self._stop()

    async def _watch(self, connection: Connection, namespace: str | None) -> None:
        url = path(_API, PLURAL, namespace=namespace)
        failures = 0
        while True:
            if failures:
                await asyncio.sleep(min(RETRY_CAP, RETRY_SECONDS * 2 ** (failures - 1)))
            failures += 1
            try:
                listing = await connection.request(
                    "GET", url, params={"fieldSelector": SELECTOR, "limit": 1}
                )
                version = str((listing.get("metadata") or {}).get("resourceVersion") or "")
                async for event in connection.stream(
                    url,
                    params={
                        "watch": "true",
                        "fieldSelector": SELECTOR,
                        "resourceVersion": version,
                        "timeoutSeconds": WATCH_SECONDS,
                    },
                    timeout=WATCH_SECONDS + 30,
                ):
                    if event.get("type") == "ERROR":
                        break  # e.g. 410 Gone: the version expired; list and watch again
                    obj = event.get("object")
                    if isinstance(obj, dict):
                        failures = 0  # a working watch: the next one starts at once
                        self.saw(obj)
                else:
                    failures = 0  # ended by the API server after WATCH_SECONDS, as expected
            except asyncio.CancelledError:
                raise
            except KubeApiError as exc:
                if exc.status == 400 and failures == 1:
                    logger.warning(
                        "Cannot watch for deletions switched to Orphan (%s): the installed "
                        "VirtualServer CRD lacks the selectable field spec.deletionPolicy; apply "
                        "this version's CRD. Meanwhile an Orphan switch takes effect at the next "
                        "attempt of a held deletion.",
                        exc,
                    )
                else:
                    logger.debug("Orphan watch (%s): %s", namespace, exc)
            except Exception as exc:  # refused, reset, timed out, an unexpected answer
                logger.debug("Orphan watch (%s): %s", namespace, type(exc).__name__)
