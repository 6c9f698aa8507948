"""The facts the delete handler decides on, read from Kopf's view, the API server and SCP.

Why a module of its own: it keeps the delete handler a plain sequence of "decide, act, decide
again". Here are the reads behind each decision: the spec, policy, protection annotation and the
object's account before any SCP call (:func:`gather`); the other objects naming the server,
right before a DELETE (:func:`sharers`); whether a 404 counts, right after one
(:func:`gone_doubt`); which blocker a 409 is, right after one (:func:`blocker`). The rules that
judge these facts are pure and live elsewhere (:mod:`scp_operator.evidence`,
:mod:`scp_operator.decision`).
"""

from __future__ import annotations

import random
from typing import Any

import kopf
from pydantic import ValidationError

from scp_operator import accounts, evidence
from scp_operator.decision import Doubt, Situation
from scp_operator.directory import Refusal, Target
from scp_operator.evidence import Where, blocking_sharers
from scp_operator.kube import KubeReadError
from scp_operator.model import (
    DeletionPolicy,
    ServerObservation,
    VirtualServerSpec,
    VolumeObservation,
    protection,
)
from scp_operator.runtime import Runtime
from scp_operator.scp.answers import created_by_auto_scaling, describe_body, describe_volumes
from scp_operator.scp.endpoints import EndpointError
from scp_operator.scp.outcomes import Verdict

_rng = random.SystemRandom()


async def gather(
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


def spec_problem(exc: ValidationError) -> str:
    """Which spec field is wrong and why, in a few words (never the whole value)."""
    names = {"server_id": "spec.serverId", "region": "spec.region"}
    parts = []
    for err in exc.errors(include_url=False, include_input=False)[:3]:
        loc = [str(p) for p in err.get("loc", ())]
        field = names.get(loc[0], f"spec.{loc[0]}") if loc else "spec"
        parts.append(f"{field}: {err.get('msg', 'invalid')}")
    return "; ".join(parts) or "invalid spec"


def base_url(target: Target | None, parsed: VirtualServerSpec | None) -> str:
    """The base URL the object's calls go to ("" when none can be made)."""
    if target is None or parsed is None:
        return ""
    try:
        return target.client.base_url(parsed.region)
    except EndpointError:
        return ""


async def sharers(
    runtime: Runtime,
    uid: str,
    parsed: VirtualServerSpec,
    target: Target,
    status: kopf.Status,
    namespace: str,
    logger: kopf.Logger,
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


async def gone_doubt(
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
        servers = (probe.body or {}).get("servers") if probe.kind is Verdict.FOUND else None
        if isinstance(servers, list):
            listed = tuple(
                str(s.get("account_id"))
                for s in servers
                if isinstance(s, dict) and s.get("account_id")
            )
    return evidence.gone_doubt(observed, calling, listed)


#: On a 409 the server is read again on the first attempt and every this many attempts after;
#: in between the last read (``status.server.locked``) says which blocker it is. A blocked object
#: retries about 11 times in its first hour: this keeps its SCP calls there at about 14, not 22.
REREAD_EVERY = 4


def observe_server(body: dict[str, Any] | None, endpoint: str) -> ServerObservation:
    """``status.server`` from a server object SCP returned at ``endpoint``."""
    observed = describe_body(body)
    account = (body or {}).get("account_id")
    volumes = describe_volumes(body)
    return ServerObservation(
        name=observed["name"],
        state=observed["state"],
        locked=observed["locked"],
        endpoint=endpoint,
        account_id=account[:128] if isinstance(account, str) and account else None,
        volumes=None
        if volumes is None
        else [
            VolumeObservation(id=v["id"], delete_on_termination=v["delete_on_termination"])
            for v in volumes
        ],
    )


async def blocker(
    target: Target, parsed: VirtualServerSpec, status: kopf.Status, retry: int, endpoint: str
) -> tuple[ServerObservation | None, bool | None, bool]:
    """After a 409: is the server locked, and did an Auto-Scaling Group create it?

    SCP's 409 says only "Cannot terminate due to associated resources", so the server is read:
    a lock shows in it; the other causes (File Storage, LB server group, Backup) do not, and are
    named as what remains. Returns the fresh observation (None when not read, or the read
    failed), whether the server is locked (None: unknown), and whether it is an Auto-Scaling
    Group's.
    """
    stored = status.get("server") or {}
    known = stored.get("locked")
    if retry % REREAD_EVERY and isinstance(known, bool):
        return None, known, False
    outcome = await target.client.get_server(parsed.server_id, parsed.region)
    if outcome.kind is not Verdict.FOUND:
        return None, known if isinstance(known, bool) else None, False
    seen = observe_server(outcome.body, endpoint)
    return seen, seen.locked, created_by_auto_scaling(outcome.body)
