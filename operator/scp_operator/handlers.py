"""Kopf handlers for VirtualServer: thin — gather inputs, call SCP, apply the decision.

The decision itself is :func:`scp_operator.decision.decide`. Pitfalls avoided on purpose (see
design.md): no ``retries=``, ``timeout=`` or ``PermanentError`` on the delete handler, because
Kopf would then release the finalizer; delays are computed by :mod:`scp_operator.backoff`.

Size: over 500 lines because it still holds startup wiring, observing, the Orphan fast path,
deletion and status writing together. Splitting it by job (an entry module that sets every Kopf
option, VirtualServer handlers, CRD handlers, status writing) is open issue 13; the pure parts
already live elsewhere (:mod:`~scp_operator.decision`, :mod:`~scp_operator.evidence`,
:mod:`~scp_operator.cascade`).
"""

from __future__ import annotations

import asyncio
import dataclasses
import random
from typing import Any

import kopf
from pydantic import ValidationError

from scp_operator import (
    account_checks,
    accounts,
    cascade,
    conditions,
    events,
    lease,
    metrics,
    model,
    scope,
)
from scp_operator import runtime as runtime_mod
from scp_operator import settings as settings_mod
from scp_operator.constants import CRD_NAME, FINALIZER, GROUP, PLURAL, VERSION
from scp_operator.decision import (
    BYPASS_ANNOTATION,
    Action,
    Decision,
    Doubt,
    Situation,
    decide,
)
from scp_operator.directory import Refusal, Target
from scp_operator.evidence import Where, blocking_sharers, gone_doubt
from scp_operator.kube import KubeReadError
from scp_operator.model import DeletionPolicy, ServerObservation, VirtualServerSpec, protection
from scp_operator.runtime import Runtime
from scp_operator.scp.client import describe_body
from scp_operator.scp.endpoints import EndpointError
from scp_operator.scp.outcomes import Kind, Outcome

RESOURCE = (GROUP, VERSION, PLURAL)
_rng = random.SystemRandom()


@kopf.on.startup()
async def configure(
    settings: kopf.OperatorSettings, memo: kopf.Memo, logger: Any, **_: Any
) -> None:
    """Set the finalizer and storage names, then build the runtime from validated settings.

    Kopf's progress and diff-base live in ``status.kopf`` rather than in annotations: a blocked
    object's retry then writes its progress, its conditions and ``status.deletion`` in one status
    PATCH, instead of an annotation PATCH plus a status PATCH (measured: 3 -> 2 writes per retry;
    the other write is Kopf's wake-up "touch" after the delay). Only this operator writes status
    (the CRD has a status subresource), so nothing else overwrites it.
    """
    settings.persistence.finalizer = FINALIZER
    settings.persistence.progress_storage = kopf.StatusProgressStorage(name="kopf")
    settings.persistence.diffbase_storage = kopf.StatusDiffBaseStorage(name="kopf")
    settings.watching.server_timeout = 600
    settings.watching.client_timeout = 660
    try:
        loaded = settings_mod.load()
    except settings_mod.SettingsError as exc:
        raise kopf.PermanentError(f"invalid settings: {exc}") from None
    # One active instance: a second one (started by hand, or a second release) waits here,
    # logging which instance holds the Lease, before it touches any object.
    memo.lease = await lease.start(loaded.operator, scope.watched())
    runtime = runtime_mod.build(loaded)
    memo.runtime = runtime
    memo.account_checks = account_checks.start(runtime)
    try:
        memo.metrics_server = await metrics.start_server(loaded.operator.metrics_port)
    except OSError as exc:
        await runtime.aclose()
        raise kopf.PermanentError(
            f"SCP_OPERATOR_METRICS_PORT: cannot serve metrics on port "
            f"{loaded.operator.metrics_port}: {exc.strerror} (choose another port, or 0 to disable)"
        ) from None
    if loaded.operator.check_versions:
        warning = await runtime_mod.check_api_version(runtime.client)
        if warning:
            logger.warning(warning)
    logger.info(
        "scp-operator ready: SCP API %s at %s, confirm mode %s%s",
        loaded.scp.api_version,
        loaded.scp.service_url(),
        "on" if loaded.operator.confirm_deletion else "off",
        ", DRY RUN (nothing will be deleted)" if loaded.operator.dry_run else "",
    )


@kopf.on.cleanup()
async def close(memo: kopf.Memo, **_: Any) -> None:
    """Close the SCP connection pool and the metrics endpoint; give the Lease back last."""
    await account_checks.stop(memo.get("account_checks"))
    runtime: Runtime | None = memo.get("runtime")
    if runtime is not None:
        await runtime.aclose()
    server = memo.get("metrics_server")
    if server is not None:
        await server.cleanup()
    keeper: lease.LeaseKeeper | None = memo.get("lease")
    if keeper is not None:
        await keeper.release()  # the next instance starts at once instead of after expiry


def _our_crd_terminating(name: str | None, meta: kopf.Meta, **_: Any) -> bool:
    return name == CRD_NAME and bool(meta.get("deletionTimestamp"))


@kopf.on.event(
    "apiextensions.k8s.io",
    "v1",
    "customresourcedefinitions",
    id="crd-cascade",
    when=_our_crd_terminating,
)
async def release_on_crd_deletion(body: kopf.Body, memo: kopf.Memo, logger: Any, **_: Any) -> None:
    """The CRD is being deleted: let every VirtualServer go, deleting no server, and say so.

    Kopf stops serving a resource whose CRD terminates (and never starts serving it when the
    operator starts during the cascade), so the delete handler never sees these deletions; see
    :mod:`scp_operator.cascade`, which lists the objects itself and keeps going until none is
    left.
    """
    runtime: Runtime | None = memo.get("runtime")
    if runtime is None:
        return
    await cascade.release_all(runtime, crd=body, namespaces=scope.watched(), logger=logger)


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
    logger: Any,
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
    generation = meta.get("generation")

    def ready(state: str, reason: str, message: str, warning: bool) -> None:
        patch.status["conditions"] = conditions.set_condition(
            status.get("conditions"),
            type="Ready",
            status=state,
            reason=reason,
            message=message,
            generation=generation,
        )
        if warning:
            events.post(
                body,
                memo,
                warning=True,
                reason=reason,
                message=message,
                repeat_interval=runtime.settings.operator.event_repeat_interval,
            )

    try:
        parsed = VirtualServerSpec.model_validate(dict(spec))
    except ValidationError as exc:
        # Nothing to retry until the spec changes (which runs this handler again).
        ready("False", "InvalidSpec", f"the spec cannot be read: {spec_problem(exc)}", True)
        return
    sid = parsed.server_id
    target = await runtime.accounts.resolve(parsed.account_ref, str(meta.get("namespace")))
    if isinstance(target, Refusal):
        # Isolation: nothing is read from SCP; re-checked, since accounts and labels change.
        ready("False", target.reason, target.message, True)
        delay = runtime.timing.slow.delay(retry, _rng.random())
        raise kopf.TemporaryError(target.message, delay=delay)
    try:
        endpoint = target.client.base_url(parsed.region)
    except EndpointError as exc:
        ready("False", "InvalidRegion", f"{exc}; correct spec.region", True)
        return
    outcome = await target.client.get_server(sid, parsed.region)
    if outcome.kind is Kind.FOUND:
        observed = describe_body(outcome.body)
        account = (outcome.body or {}).get("account_id")
        patch.status["server"] = model.dump(
            ServerObservation(
                name=observed["name"],
                state=observed["state"],
                locked=observed["locked"],
                endpoint=endpoint,
                account_id=account[:128] if isinstance(account, str) and account else None,
            )
        )
        if (observed["state"] or "").upper() == "ERROR":
            ready("False", "ServerError", f"server {sid} is in state ERROR in SCP", True)
        else:
            ready(
                "True",
                "ServerFound",
                f"server {sid} found in SCP (state {observed['state']})",
                False,
            )
        return
    if outcome.kind is Kind.GONE:
        ready(
            "False",
            "ServerNotFound",
            f"server {sid} does not exist in SCP at {endpoint}: check "
            "spec.serverId and spec.region (deleting this object would delete nothing)",
            True,
        )
        return
    decision = decide(
        Situation(
            server_id=sid,
            outcome=outcome,
            attempt=retry,
            jitter=_rng.random(),
            timing=runtime.timing,
        )
    )
    # The deletion table's wording carries the hints for keys, clock and permissions; for other
    # answers SCP's own words are clearer than deletion-flavoured ones.
    hinted = outcome.kind in (Kind.UNAUTHORIZED, Kind.FORBIDDEN, Kind.NO_CREDENTIALS)
    message = f"cannot read server {sid}: {decision.message if hinted else outcome.describe()}"
    ready("Unknown", decision.reason, message, True)
    raise kopf.TemporaryError(message, delay=decision.delay or 60)


def spec_problem(exc: ValidationError) -> str:
    """Which spec field is wrong and why, in a few words (never the whole value)."""
    names = {"server_id": "spec.serverId", "region": "spec.region"}
    parts = []
    for err in exc.errors(include_url=False, include_input=False)[:3]:
        loc = [str(p) for p in err.get("loc", ())]
        field = names.get(loc[0], f"spec.{loc[0]}") if loc else "spec"
        parts.append(f"{field}: {err.get('msg', 'invalid')}")
    return "; ".join(parts) or "invalid spec"


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
        _report(
            decision, body=body, status=status, meta=meta, patch=patch, memo=memo, runtime=runtime
        )
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
    logger: Any,
    **_: Any,
) -> None:
    """Delete the cloud server, or hold the finalizer and say why (the decision table).

    Facts that could let a server be deleted are read last, from the API server, while holding
    an SCP request slot: the CRD's state and the other objects naming the server are read after
    every other await, and the DELETE follows with no await in between but the send itself.
    """
    runtime: Runtime = memo.runtime
    situation, parsed, target = await _situation(spec, meta, status, retry, runtime)
    endpoint = situation_endpoint(target, parsed)
    deletion = dict(status.get("deletion") or {})
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
                _sharers(runtime, uid, parsed, target, status, str(meta.get("namespace")), logger),
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
                if took and outcome.kind is not Kind.ACCEPTED:
                    runtime.budget.refund(uid)
    elif decision.action is Action.CALL_GET and parsed is not None and target is not None:
        outcome = await target.client.get_server(parsed.server_id, parsed.region)
    if outcome is not None:
        action = decision.action
        deletion = _record(deletion, action, outcome)
        doubt = None
        if outcome.kind is Kind.GONE and target is not None:
            doubt = await _gone_doubt(target, status, endpoint, parsed)
        decision = decide(
            dataclasses.replace(
                situation,
                outcome=outcome,
                accepted_before=bool(deletion.get("acceptedTime")),
                gone_doubt=doubt,
            )
        )
        if decision.forget_acceptance:
            deletion["acceptedTime"] = None  # null in a merge patch removes the field
        logger.info(
            "SCP answered %s for server %s: %s",
            outcome.describe(),
            situation.server_id,
            decision.action,
        )
        if decision.action is Action.HOLD:  # a released object vanishes: no status write
            patch.status["deletion"] = deletion
    _report(decision, body=body, status=status, meta=meta, patch=patch, memo=memo, runtime=runtime)
    if decision.action is Action.HOLD:
        runtime.blocked.held(uid, decision.reason)
        metrics.RETRIES.labels(decision.reason).inc()
        raise kopf.TemporaryError(decision.message, delay=decision.delay or 60)
    if decision.action is not Action.RELEASE:  # pragma: no cover - decide() never returns CALL_*
        raise kopf.TemporaryError(f"internal: unexpected action {decision.action}", delay=60)
    runtime.blocked.released(uid)
    metrics.DELETIONS.labels(decision.reason).inc()


async def _situation(
    spec: kopf.Spec, meta: kopf.Meta, status: kopf.Status, retry: int, runtime: Runtime
) -> tuple[Situation, VirtualServerSpec | None, Target | None]:
    """The facts known without asking SCP: spec, policy, annotations, settings, status, and
    the object's account (read from the API server now; None when there is none to use)."""
    op = runtime.settings.operator
    shield = protection(meta.get("annotations"))
    deletion = status.get("deletion") or {}
    common: dict[str, Any] = {
        "protected": shield.protected,
        "protection_note": shield.note,
        "attempt": retry,
        "jitter": _rng.random(),
        "confirm": op.confirm_deletion,
        "accepted_before": bool(deletion.get("acceptedTime")),
        "dry_run": op.dry_run,
        "timing": runtime.timing,
    }
    try:
        parsed = VirtualServerSpec.model_validate(dict(spec))
    except ValidationError as exc:
        # Orphan needs no server id: the way out stays open even for a broken spec.
        orphan = spec.get("deletionPolicy") == DeletionPolicy.ORPHAN.value
        situation = Situation(
            server_id=str(spec.get("serverId") or "(none)")[:64],
            policy=DeletionPolicy.ORPHAN if orphan else DeletionPolicy.DELETE,
            spec_error=spec_problem(exc),
            **common,
        )
        return situation, None, None
    if parsed.deletion_policy is DeletionPolicy.ORPHAN:  # released without any SCP call
        orphan = Situation(server_id=parsed.server_id, policy=parsed.deletion_policy, **common)
        return orphan, parsed, None
    resolved = await runtime.accounts.resolve(parsed.account_ref, str(meta.get("namespace")))
    target: Target | None = None
    account_hold = region_error = None
    if isinstance(resolved, Refusal):
        account_hold = Doubt(resolved.reason, resolved.message)
    else:
        target = resolved
        try:
            target.client.base_url(parsed.region)
        except EndpointError as exc:
            region_error = str(exc)
    situation = Situation(
        server_id=parsed.server_id,
        policy=parsed.deletion_policy,
        account_hold=account_hold,
        region_error=region_error,
        **common,
    )
    return situation, parsed, target


def situation_endpoint(target: Target | None, parsed: VirtualServerSpec | None) -> str:
    """The base URL the object's calls go to ("" when none can be made)."""
    if target is None or parsed is None:
        return ""
    try:
        return target.client.base_url(parsed.region)
    except EndpointError:
        return ""


async def _sharers(
    runtime: Runtime,
    uid: str,
    parsed: VirtualServerSpec,
    target: Target,
    status: kopf.Status,
    namespace: str,
    logger: Any,
) -> tuple[tuple[str, ...], str | None]:
    """Other objects of the same account that keep the server alive, asked of the API server
    now; shown as this object's owner may see them (other namespaces counted, not named)."""
    try:
        listed = await runtime.crd.naming(parsed.server_id)
    except KubeReadError as exc:
        return (), str(exc)
    observed = str((status.get("server") or {}).get("accountId") or "")
    refs = blocking_sharers(
        uid,
        parsed.server_id,
        listed,
        account_ref=parsed.account_ref,
        account_id=target.account_id or observed,
    )
    if refs:
        logger.info("Server %s is also named by %s", parsed.server_id, ", ".join(refs))
    return accounts.shown_refs(refs, namespace), None


async def _gone_doubt(
    target: Target, status: kopf.Status, endpoint: str, parsed: VirtualServerSpec | None
) -> Doubt | None:
    """Why this 404 is not evidence (see :func:`scp_operator.evidence.gone_doubt`), if it is not."""
    seen = status.get("server") or {}
    observed = (
        Where(str(seen["endpoint"]), str(seen.get("accountId") or ""))
        if seen.get("endpoint")
        else None
    )
    calling = Where(endpoint, target.account_id)
    listed: tuple[str, ...] | None = None
    if observed is not None and observed.account and not calling.account:
        probe = await target.client.list_servers_probe(parsed.region if parsed else None)
        servers = (probe.body or {}).get("servers") if probe.kind is Kind.FOUND else None
        if isinstance(servers, list):
            listed = tuple(
                str(s.get("account_id"))
                for s in servers
                if isinstance(s, dict) and s.get("account_id")
            )
    return gone_doubt(observed, calling, listed)


def _record(deletion: dict[str, Any], action: Action, outcome: Outcome) -> dict[str, Any]:
    """Update ``status.deletion`` after a call."""
    now = conditions.now_iso()
    result = dict(deletion)
    if action is Action.CALL_DELETE:
        result["attempts"] = int(result.get("attempts") or 0) + 1
        result["lastAttemptTime"] = now
    if outcome.status is not None:
        result["lastHttpStatus"] = outcome.status
    else:
        result.pop("lastHttpStatus", None)
    result["lastMessage"] = outcome.describe()
    if outcome.kind is Kind.ACCEPTED and not result.get("acceptedTime"):
        result["acceptedTime"] = now
    return result


def _report(
    decision: Decision,
    *,
    body: kopf.Body,
    status: kopf.Status,
    meta: kopf.Meta,
    patch: kopf.Patch,
    memo: kopf.Memo,
    runtime: Runtime,
) -> None:
    """Write the Deleting condition (unless releasing) and post the event (throttled).

    A released object is about to vanish, so its status is not written: one fewer API write per
    deleted object, and the event still tells what happened.
    """
    if decision.action is Action.HOLD:
        patch.status["conditions"] = conditions.set_condition(
            patch.status.get("conditions") or status.get("conditions"),
            type="Deleting",
            status="True",
            reason=decision.reason,
            message=decision.message,
            generation=meta.get("generation"),
        )
    events.post(
        body,
        memo,
        warning=decision.warning,
        reason=decision.reason,
        message=decision.message,
        repeat_interval=runtime.settings.operator.event_repeat_interval,
    )


__all__ = ["configure", "delete_server", "observe", "release_on_crd_deletion", "release_orphans"]
