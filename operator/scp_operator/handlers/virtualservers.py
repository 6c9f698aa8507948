"""Kopf handlers for VirtualServer deletions: let Orphans go, delete the server.

Why a module of its own: these are the handlers that can delete a server, kept thin so that the
path from Kopf's call to SCP's DELETE reads top to bottom. Each gathers facts
(:mod:`.facts`), asks the decision table (:func:`scp_operator.decision.decide`), acts, and
writes what happened (:mod:`scp_operator.reporting`). Reading a live server for ``Ready`` is
:mod:`.observation`.

Pitfalls avoided on purpose (see docs/architecture.md): no ``retries=``, ``timeout=`` or
``PermanentError`` on the delete handler, because Kopf would then release the finalizer; delays
are computed by :mod:`scp_operator.backoff`.
"""

from __future__ import annotations

import asyncio
import dataclasses
import logging
from typing import Any

import kopf

from scp_operator import lease, metrics, reporting, sharding
from scp_operator.constants import BYPASS_ANNOTATION, FINALIZER, GROUP, PLURAL, VERSION
from scp_operator.decision import Action, Situation, decide
from scp_operator.handlers import facts, pacing
from scp_operator.model import DeletionPolicy
from scp_operator.runtime import Runtime
from scp_operator.scp.outcomes import Outcome, Verdict

RESOURCE = (GROUP, VERSION, PLURAL)
logger = logging.getLogger(__name__)


def refuse_outside_shard(uid: str, memo: kopf.Memo) -> None:
    """Never act on an object outside this process's shard: raise, and stop the operator.

    Kopf only delivers objects the API server returned for the shard's ``shardSelector``; one
    outside the range means the API server ignores the selector (the ``ShardedListAndWatch``
    feature gate is off), so another shard may be acting on the same objects right now. The
    startup check usually catches that; this catches what it could not see (a cluster with no
    objects at startup). ``kopf.TemporaryError`` keeps the finalizer (a delete handler that
    returns normally would release it); the process then stops (SIGTERM, Kopf's clean
    shutdown, as when the Lease is lost), once, with the reason in its log.
    """
    runtime: Runtime | None = memo.get("runtime")
    if runtime is None:
        return
    shard = runtime.settings.operator.shard
    if shard.owns(uid):
        return
    message = sharding.out_of_shard_message(uid, shard)
    if not memo.get("stopping_outside_shard"):
        memo.stopping_outside_shard = True
        logger.error("%s. This instance stops.", message)
        lease.stop_process()
    raise kopf.TemporaryError(message, delay=60)


def _terminating_orphan(meta: kopf.Meta, spec: kopf.Spec, **_: Any) -> bool:
    return bool(meta.get("deletionTimestamp")) and (
        spec.get("deletionPolicy") == DeletionPolicy.ORPHAN.value
        and FINALIZER in (meta.get("finalizers") or [])
    )


@kopf.on.event(*RESOURCE, id="orphan-fast-path", when=_terminating_orphan)
async def release_orphans(
    type: str,
    body: kopf.Body,
    meta: kopf.Meta,
    spec: kopf.Spec,
    status: kopf.Status,
    patch: kopf.Patch,
    memo: kopf.Memo,
    **_: Any,
) -> None:
    """Let an Orphan object go at once, even while the delete handler waits out a backoff.

    ``deletionPolicy: Orphan`` is the way out of a deletion that cannot finish; Kopf would only
    run the delayed delete handler when its delay ends, which may be many minutes away.
    """
    if type == "DELETED":
        return
    refuse_outside_shard(str(meta.get("uid")), memo)
    runtime: Runtime | None = memo.get("runtime")
    if runtime is None:
        return
    decision = decide(Situation(server_id=str(spec.get("serverId")), policy=DeletionPolicy.ORPHAN))
    if decision.action is Action.RELEASE:
        reporting.decision(reporting.subject(body, meta, status, patch, memo, runtime), decision)
        patch.fns.append(remove_finalizer_if_orphan)
        runtime.blocked.released(str(meta.get("uid")))
        metrics.DELETIONS.labels(decision.reason).inc()
        metrics.record_release(decision.reason, meta.get("deletionTimestamp"))


def remove_finalizer_if_orphan(raw: kopf.RawBody) -> None:
    """Remove our finalizer from ``raw`` — only while ``raw`` still says Orphan.

    Kopf applies this function to the object as it is when the patch is sent, and again to a
    fresh copy after a 422 (the object changed meanwhile). The policy is re-read each time: an
    ArgoCD self-heal may have reverted it to Delete, and then the object must stay.
    """
    if (raw.get("spec") or {}).get("deletionPolicy") != DeletionPolicy.ORPHAN.value:
        return
    finalizers = raw.get("metadata", {}).get("finalizers") or []
    if FINALIZER in finalizers:
        raw["metadata"]["finalizers"] = [f for f in finalizers if f != FINALIZER]


@kopf.on.delete(*RESOURCE, id="delete-server")
async def delete_server(
    body: kopf.Body,
    spec: kopf.Spec,
    meta: kopf.Meta,
    status: kopf.Status,
    patch: kopf.Patch,
    memo: kopf.Memo,
    uid: str,
    retry: int,
    logger: kopf.Logger,
    **_: Any,
) -> None:
    """Delete the cloud server, or hold the finalizer and say why (the decision table).

    Facts that could let a server be deleted are read last, from the API server, while holding
    an SCP request slot: the CRD's state and the other objects naming the server are read after
    every other await, and the DELETE follows with no await in between but the send itself.
    """
    refuse_outside_shard(uid, memo)
    runtime: Runtime = memo.runtime
    # A held deletion waits here for its next attempt (one write per retry: see pacing.py).
    await pacing.wait_for_next_attempt(status, meta, uid, runtime)
    out = reporting.subject(body, meta, status, patch, memo, runtime)
    situation, parsed, target = await facts.gather(spec, meta, status, retry, runtime)
    endpoint = facts.base_url(target, parsed)
    decision = decide(situation)
    if decision.action is Action.HOLD:
        # The CRD cascade outranks every hold (an invalid spec, protection, a dry run...): read it
        # now rather than wait for the cascade handler, which may not have run yet.
        situation = dataclasses.replace(situation, crd=await runtime.crd.state())
        decision = decide(situation)
    outcome: Outcome | None = None
    if decision.action is Action.CALL_DELETE and parsed is not None and target is not None:
        async with target.client.slot():
            crd, (sharers, sharers_error) = await asyncio.gather(
                runtime.crd.state(),
                facts.sharers(
                    runtime, uid, parsed, target, status, str(meta.get("namespace")), logger
                ),
            )
            bypass = (meta.get("annotations") or {}).get(BYPASS_ANNOTATION) == "true"
            situation = dataclasses.replace(
                situation,
                crd=crd,
                sharers=sharers,
                sharers_error=sharers_error,
                budget_wait=None if bypass else runtime.budget.wait_time(uid),
            )
            decision = decide(situation)
            if decision.action is Action.CALL_DELETE:
                took = runtime.budget.spend(uid)  # no await between the check and this
                outcome = await target.client.delete_server(
                    parsed.server_id, parsed.region, slot_held=True
                )
                if took and outcome.kind is not Verdict.ACCEPTED:
                    runtime.budget.refund(uid)
    elif decision.action is Action.CALL_GET and parsed is not None and target is not None:
        outcome = await target.client.get_server(parsed.server_id, parsed.region)
    if outcome is not None:
        progress = reporting.record(reporting.progress(status), decision.action, outcome)
        doubt = None
        if outcome.kind is Verdict.GONE and target is not None:
            doubt = await facts.gone_doubt(target, status, endpoint, parsed)
        locked: bool | None = None
        auto_scaling = False
        if outcome.kind is Verdict.CONFLICT and target is not None and parsed is not None:
            seen, locked, auto_scaling = await facts.blocker(
                target, parsed, status, retry, endpoint
            )
            if seen is not None:
                reporting.server(out, seen)
        decision = decide(
            dataclasses.replace(
                situation,
                outcome=outcome,
                accepted_before=bool(progress.accepted_time),
                gone_doubt=doubt,
                server_locked=locked,
                auto_scaling=auto_scaling,
            )
        )
        if outcome.kind is Verdict.ACCEPTED and not situation.accepted_before:
            reporting.retained_volumes(out, situation.server_id)
        logger.info(
            "SCP answered %s for server %s: %s",
            outcome.describe(),
            situation.server_id,
            decision.action,
        )
        if decision.action is Action.HOLD:  # a released object vanishes: no status write
            reporting.deletion(out, progress, forget_acceptance=decision.forget_acceptance)
    reporting.decision(out, decision)
    if decision.action is Action.HOLD:
        runtime.blocked.held(uid, decision.reason)
        metrics.RETRIES.labels(decision.reason).inc()
        # Kopf writes this status and runs the handler again at once; the next run waits for
        # nextAttemptTime itself, so no wake-up write is needed (pacing.py).
        reporting.next_attempt(out, pacing.when(decision.delay or 60))
        raise kopf.TemporaryError(decision.message, delay=0)
    if decision.action is not Action.RELEASE:  # pragma: no cover - decide() never returns CALL_*
        raise kopf.TemporaryError(f"internal: unexpected action {decision.action}", delay=60)
    runtime.blocked.released(uid)
    metrics.DELETIONS.labels(decision.reason).inc()
    metrics.record_release(decision.reason, meta.get("deletionTimestamp"))
