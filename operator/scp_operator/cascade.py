"""The CRD cascade: when the VirtualServer CRD is deleted, let every object go, deleting nothing.

Deleting a CRD deletes every object of it. The owner removed a type, not a fleet, so those
deletions must not delete cloud servers (the decision table's ``CrdDeleted`` row). Kopf cannot
do this through the delete handler: it stops serving a resource whose CRD terminates and never
starts serving it when the operator (re)starts during the cascade. So this module lists the
objects itself, releases each one through the decision table with a JSON patch guarded by the
finalizer list, posts a Warning per object, reports progress on the CRD, and keeps going —
with backoff, never giving up — until no object carries the finalizer or the CRD is gone.

Sharded (docs/scaling.md), each process releases only its own shard's objects: its LIST carries
the shard's ``shardSelector`` and what comes back is filtered by uid hash again here, so no
object is patched by two processes even on an API server that ignores the selector.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Mapping, Sequence
from typing import Any

import kopf

from scp_operator import metrics, scope, sharding
from scp_operator.constants import API_VERSION, FINALIZER, KIND
from scp_operator.decision import Action, CrdState, Situation, decide
from scp_operator.kube import KubeReadError
from scp_operator.model import DeletionPolicy
from scp_operator.runtime import Runtime

#: Longest pause between rounds while objects remain (the first pauses are shorter).
MAX_PAUSE = 30.0
#: Progress is reported on the CRD at most this often (seconds) while objects remain.
REPORT_EVERY = 30.0


async def release_all(
    runtime: Runtime,
    *,
    crd: Mapping[str, Any],
    namespaces: Sequence[str],
    logger: logging.Logger | logging.LoggerAdapter[Any],
) -> int:
    """Release every object still held by our finalizer; returns how many this call released."""
    released = 0
    failures = 0
    last_report = -REPORT_EVERY
    loop = asyncio.get_running_loop()
    shard = runtime.settings.operator.shard
    while True:
        try:
            if scope.is_exact(namespaces):
                held = await runtime.crd.holding(namespaces, shard_selector=shard.selector())
            else:  # Kopf patterns: list everything, keep what this instance serves
                held = [
                    item
                    for item in await runtime.crd.holding((), shard_selector=shard.selector())
                    if scope.serves(str(item.get("metadata", {}).get("namespace")), namespaces)
                ]
            held = mine(held, shard)
        except KubeReadError as exc:
            held, error = None, str(exc)
        else:
            error = ""
        if held is not None and not held:
            if released:
                message = f"CRD cascade: released {released} VirtualServer(s); no server deleted"
                logger.warning(message)
                _event(crd, "Warning", "CrdCascadeComplete", message)
            return released
        if held is not None:
            for item in held:
                if await _release_one(runtime, item):
                    released += 1
                else:
                    error = "some objects changed or could not be patched"
            if not error:
                continue  # list again: objects created meanwhile, or changed ones
        failures += 1
        now = loop.time()
        if now - last_report >= REPORT_EVERY:
            last_report = now
            remaining = "unknown" if held is None else str(len(held))
            message = (
                f"CRD cascade: released {released} VirtualServer(s) so far, {remaining} remain "
                f"({error}); retrying"
            )
            logger.warning(message)
            _event(crd, "Warning", "CrdCascadeRetrying", message)
        if await runtime.crd.state() is CrdState.GONE:
            return released
        await asyncio.sleep(min(MAX_PAUSE, 0.5 * 2 ** min(failures, 6)))


def mine(items: list[dict[str, Any]], shard: sharding.Shard) -> list[dict[str, Any]]:
    """The items this shard owns by uid hash: what the API server returned for the shard's
    selector, checked again, since an API server without the feature gate returns everything."""
    return [item for item in items if shard.owns(str(item.get("metadata", {}).get("uid") or ""))]


async def _release_one(runtime: Runtime, item: Mapping[str, Any]) -> bool:
    """Release one object through the table's CrdDeleted row; False when it must be retried.

    The object's own fields are read leniently: one object with a legacy or invalid value must
    not stop the cascade for the others (the row releases whatever the policy says).
    """
    meta = item.get("metadata") or {}
    spec = item.get("spec") or {}
    policy = (
        DeletionPolicy.ORPHAN
        if spec.get("deletionPolicy") == DeletionPolicy.ORPHAN.value
        else DeletionPolicy.DELETE
    )
    decision = decide(
        Situation(
            server_id=str(spec.get("serverId") or "?")[:64], policy=policy, crd=CrdState.TERMINATING
        )
    )
    if decision.action is not Action.RELEASE:  # pragma: no cover - the table's row
        return False
    finalizers = list(meta.get("finalizers") or ())
    ok = await runtime.crd.release(
        str(meta.get("namespace")), str(meta.get("name")), finalizers, FINALIZER
    )
    if ok:
        _event(
            _ref(meta),
            "Warning" if decision.warning else "Normal",
            decision.reason,
            decision.message,
        )
        runtime.blocked.released(str(meta.get("uid")))
        metrics.DELETIONS.labels(decision.reason).inc()
        metrics.record_release(decision.reason, meta.get("deletionTimestamp"))
    return ok


def _ref(meta: Mapping[str, Any]) -> dict[str, Any]:
    """Enough of an object for an event about it (the object itself may be gone by then)."""
    return {
        "apiVersion": API_VERSION,
        "kind": KIND,
        "metadata": {
            "namespace": meta.get("namespace"),
            "name": meta.get("name"),
            "uid": meta.get("uid"),
        },
    }


def _event(body: Mapping[str, Any], type_: str, reason: str, message: str) -> None:
    kopf.event(dict(body), type=type_, reason=reason, message=message)  # type: ignore[arg-type]
