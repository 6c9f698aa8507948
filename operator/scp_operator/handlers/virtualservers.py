"""Kopf handlers for VirtualServer: observe the server, let Orphans go, delete the server.

Why a module of its own: these are the handlers that can delete a server, kept thin so that the
path from Kopf's call to SCP's DELETE reads top to bottom. Each gathers facts
(:mod:`.facts`), asks the decision table (:func:`scp_operator.decision.decide`), acts, and
writes what happened (:mod:`scp_operator.reporting`).

Pitfalls avoided on purpose (see docs/architecture.md): no ``retries=``, ``timeout=`` or
``PermanentError`` on the delete handler, because Kopf would then release the finalizer; delays
are computed by :mod:`scp_operator.backoff`.
"""

from __future__ import annotations

import asyncio
import dataclasses
import random
from typing import Any

import kopf
from pydantic import ValidationError

from scp_operator import metrics, reporting
from scp_operator.constants import BYPASS_ANNOTATION, FINALIZER, GROUP, PLURAL, VERSION
from scp_operator.decision import Action, Situation, decide
from scp_operator.directory import Refusal
from scp_operator.handlers import facts
from scp_operator.model import DeletionPolicy, ServerObservation, VirtualServerSpec
from scp_operator.runtime import Runtime
from scp_operator.scp.answers import describe_body
from scp_operator.scp.endpoints import EndpointError
from scp_operator.scp.outcomes import Outcome, Verdict

RESOURCE = (GROUP, VERSION, PLURAL)
_rng = random.SystemRandom()


def _subject(
    body: kopf.Body,
    meta: kopf.Meta,
    status: kopf.Status,
    patch: kopf.Patch,
    memo: kopf.Memo,
    runtime: Runtime,
) -> reporting.Subject:
    interval = runtime.settings.operator.event_repeat_interval
    return reporting.Subject(body, meta, status, patch, memo, interval)


@kopf.on.create(*RESOURCE, id="observe")
@kopf.on.resume(*RESOURCE, id="observe")
@kopf.on.update(*RESOURCE, id="observe", field="spec.region")
async def observe(
    spec: kopf.Spec,
    status: kopf.Status,
    meta: kopf.Meta,
    body: kopf.Body,
    patch: kopf.Patch,
    memo: kopf.Memo,
    retry: int,
    **_: Any,
) -> None:
    """Read the server from SCP and record what was found, and where.

    A server SCP does not know is reported at once: a typo found now would otherwise become a
    silently orphaned server at deletion time. The endpoint and account it was found in are
    recorded, so that a 404 at deletion time counts only when it comes from the same place.
    """
    if meta.get("deletionTimestamp"):
        return  # the delete handler owns terminating objects
    runtime: Runtime = memo.runtime
    out = _subject(body, meta, status, patch, memo, runtime)
    try:
        parsed = VirtualServerSpec.model_validate(dict(spec))
    except ValidationError as exc:
        # Nothing to retry until the spec changes (which runs this handler again).
        message = f"the spec cannot be read: {facts.spec_problem(exc)}"
        reporting.ready(out, "False", "InvalidSpec", message, warning=True)
        return
    sid = parsed.server_id
    target = await runtime.accounts.resolve(parsed.account_ref, str(meta.get("namespace")))
    if isinstance(target, Refusal):
        # Isolation: nothing is read from SCP; re-checked, since accounts and labels change.
        reporting.ready(out, "False", target.reason, target.message, warning=True)
        delay = runtime.timing.slow.delay(retry, _rng.random())
        raise kopf.TemporaryError(target.message, delay=delay)
    try:
        endpoint = target.client.base_url(parsed.region)
    except EndpointError as exc:
        reporting.ready(out, "False", "InvalidRegion", f"{exc}; correct spec.region", warning=True)
        return
    outcome = await target.client.get_server(sid, parsed.region)
    if outcome.kind is Verdict.FOUND:
        observed = describe_body(outcome.body)
        account = (outcome.body or {}).get("account_id")
        observation = ServerObservation(
            name=observed["name"],
            state=observed["state"],
            locked=observed["locked"],
            endpoint=endpoint,
            account_id=account[:128] if isinstance(account, str) and account else None,
        )
        reporting.server(out, observation)
        if (observed["state"] or "").upper() == "ERROR":
            message = f"server {sid} is in state ERROR in SCP"
            reporting.ready(out, "False", "ServerError", message, warning=True)
        else:
            message = f"server {sid} found in SCP (state {observed['state']})"
            reporting.ready(out, "True", "ServerFound", message, warning=False)
        return
    if outcome.kind is Verdict.GONE:
        message = (
            f"server {sid} does not exist in SCP at {endpoint}: check "
            "spec.serverId and spec.region (deleting this object would delete nothing)"
        )
        reporting.ready(out, "False", "ServerNotFound", message, warning=True)
        return
    situation = Situation(
        server_id=sid, outcome=outcome, attempt=retry, jitter=_rng.random(), timing=runtime.timing
    )
    decision = decide(situation)
    # The deletion table's wording carries the hints for keys, clock and permissions; for other
    # answers SCP's own words are clearer than deletion-flavoured ones.
    hinted = outcome.kind in (Verdict.UNAUTHORIZED, Verdict.FORBIDDEN, Verdict.NO_CREDENTIALS)
    message = f"cannot read server {sid}: {decision.message if hinted else outcome.describe()}"
    reporting.ready(out, "Unknown", decision.reason, message, warning=True)
    raise kopf.TemporaryError(message, delay=decision.delay or 60)


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
    runtime: Runtime | None = memo.get("runtime")
    if runtime is None:
        return
    decision = decide(Situation(server_id=str(spec.get("serverId")), policy=DeletionPolicy.ORPHAN))
    if decision.action is Action.RELEASE:
        reporting.decision(_subject(body, meta, status, patch, memo, runtime), decision)
        patch.fns.append(remove_finalizer_if_orphan)
        runtime.blocked.released(str(meta.get("uid")))
        metrics.DELETIONS.labels(decision.reason).inc()


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
    runtime: Runtime = memo.runtime
    out = _subject(body, meta, status, patch, memo, runtime)
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
        decision = decide(
            dataclasses.replace(
                situation,
                outcome=outcome,
                accepted_before=bool(progress.accepted_time),
                gone_doubt=doubt,
            )
        )
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
        raise kopf.TemporaryError(decision.message, delay=decision.delay or 60)
    if decision.action is not Action.RELEASE:  # pragma: no cover - decide() never returns CALL_*
        raise kopf.TemporaryError(f"internal: unexpected action {decision.action}", delay=60)
    runtime.blocked.released(uid)
    metrics.DELETIONS.labels(decision.reason).inc()
