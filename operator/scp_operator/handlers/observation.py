"""Kopf handlers that read a server from SCP and write what was found: ``Ready``, ``server``.

Two callers share one read (:func:`look`) and one way of writing it (:func:`write`):

- :func:`observe`, a Kopf handler, at creation, on resume and when the spec changes. A server
  SCP does not know is reported at once: a typo found now would otherwise become a silently
  orphaned server at deletion time.
- the periodic re-read (:mod:`.resync`), every ``SCP_OPERATOR_RESYNC_INTERVAL`` seconds, so
  ``Ready``, ``State`` and ArgoCD's health follow SCP when a server is locked, fails or is
  deleted in SCP's console. It writes only what :func:`changed`.
"""

from __future__ import annotations

import dataclasses
import random
from collections.abc import Mapping
from typing import Any

import kopf
from pydantic import ValidationError

from scp_operator import reporting
from scp_operator.constants import GROUP, PLURAL, VERSION
from scp_operator.decision import Situation, decide
from scp_operator.directory import Refusal
from scp_operator.handlers import facts
from scp_operator.handlers.virtualservers import refuse_outside_shard
from scp_operator.model import ServerObservation, VirtualServerSpec, dump
from scp_operator.runtime import Runtime
from scp_operator.scp.endpoints import EndpointError
from scp_operator.scp.outcomes import Verdict

RESOURCE = (GROUP, VERSION, PLURAL)
_rng = random.SystemRandom()

#: The re-read comes every interval times a factor drawn from this range, so processes started
#: together do not sweep in step.
JITTER = (0.75, 1.25)
#: Answers that say nothing about the server: the re-read keeps the status as it was.
_NO_NEWS = frozenset({Verdict.THROTTLED, Verdict.UNAVAILABLE})


@dataclasses.dataclass(frozen=True)
class Look:
    """What one read of the server says, before anything is written."""

    state: str  # of the Ready condition: True, False or Unknown
    reason: str
    message: str
    warning: bool
    observation: ServerObservation | None = None
    retry_delay: float | None = None  # observe retries after this many seconds
    news: bool = True  # False: SCP's answer says nothing about the server (try again later)


async def look(spec: Mapping[str, Any], namespace: str, runtime: Runtime, retry: int) -> Look:
    """Read the server through the object's account, and say what that means for ``Ready``."""
    try:
        parsed = VirtualServerSpec.model_validate(dict(spec))
    except ValidationError as exc:
        # Nothing to retry until the spec changes (which runs observe again).
        message = f"the spec cannot be read: {facts.spec_problem(exc)}"
        return Look("False", "InvalidSpec", message, warning=True)
    sid = parsed.server_id
    target = await runtime.accounts.resolve(parsed.account_ref, namespace)
    if isinstance(target, Refusal):
        # Isolation: nothing is read from SCP; re-checked, since accounts and labels change.
        delay = runtime.timing.slow.delay(retry, _rng.random())
        return Look("False", target.reason, target.message, warning=True, retry_delay=delay)
    try:
        endpoint = target.client.base_url(parsed.region)
    except EndpointError as exc:
        return Look("False", "InvalidRegion", f"{exc}; correct spec.region", warning=True)
    outcome = await target.client.get_server(sid, parsed.region)
    if outcome.kind is Verdict.FOUND:
        observation = facts.observe_server(outcome.body, endpoint)
        state = observation.state or ""
        if state.upper() == "ERROR":
            return Look(
                "False",
                "ServerError",
                f"server {sid} is in state ERROR in SCP",
                warning=True,
                observation=observation,
            )
        if observation.locked:
            # Still Ready (the server is there), but a deletion would be held: say so now.
            message = (
                f"server {sid} found in SCP (state {state}); it is locked, so deleting this "
                "object will wait until it is unlocked in SCP"
            )
            return Look("True", "ServerLocked", message, warning=False, observation=observation)
        message = f"server {sid} found in SCP (state {state})"
        return Look("True", "ServerFound", message, warning=False, observation=observation)
    if outcome.kind is Verdict.GONE:
        message = (
            f"server {sid} does not exist in SCP at {endpoint}: check "
            "spec.serverId and spec.region (deleting this object would delete nothing)"
        )
        return Look("False", "ServerNotFound", message, warning=True)
    situation = Situation(
        server_id=sid, outcome=outcome, attempt=retry, jitter=_rng.random(), timing=runtime.timing
    )
    decision = decide(situation)
    # The deletion table's wording carries the hints for keys, clock and permissions; for other
    # answers SCP's own words are clearer than deletion-flavoured ones.
    hinted = outcome.kind in (Verdict.UNAUTHORIZED, Verdict.FORBIDDEN, Verdict.NO_CREDENTIALS)
    message = f"cannot read server {sid}: {decision.message if hinted else outcome.describe()}"
    return Look(
        "Unknown",
        decision.reason,
        message,
        warning=True,
        retry_delay=decision.delay or 60,
        news=outcome.kind not in _NO_NEWS,
    )


def write(out: reporting.Subject, seen: Look) -> None:
    """Write what ``seen`` says into the subject's status patch (and its events)."""
    if seen.observation is not None:
        reporting.server(out, seen.observation)
    reporting.ready(out, seen.state, seen.reason, seen.message, warning=seen.warning)


def changed(status: Mapping[str, Any], generation: Any, seen: Look) -> bool:
    """Whether writing ``seen`` would change the stored status (Ready, the generation it
    describes, or ``status.server``)."""
    found = [c for c in status.get("conditions") or () if isinstance(c, dict)]
    ready = next((c for c in found if c.get("type") == "Ready"), None)
    if ready is None or (
        ready.get("status"),
        ready.get("reason"),
        ready.get("message"),
        ready.get("observedGeneration"),
    ) != (seen.state, seen.reason, seen.message, generation):
        return True
    if seen.observation is None:
        return False
    stored = dict(status.get("server") or {})
    return any(stored.get(k) != v for k, v in dump(seen.observation).items())


@kopf.on.create(*RESOURCE, id="observe")
@kopf.on.resume(*RESOURCE, id="observe")
# Any spec change, not only spec.region: Ready carries the generation it describes, and a
# status older than the spec is not trusted (ArgoCD's health check shows Progressing).
@kopf.on.update(*RESOURCE, id="observe", field="spec")
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

    The endpoint and account it was found in are recorded, so that a 404 at deletion time
    counts only when it comes from the same place.
    """
    refuse_outside_shard(str(meta.get("uid")), memo)  # a sharded instance: never another's
    if meta.get("deletionTimestamp"):
        return  # the delete handler owns terminating objects
    runtime: Runtime = memo.runtime
    seen = await look(spec, str(meta.get("namespace")), runtime, retry)
    out = reporting.subject(body, meta, status, patch, memo, runtime)
    write(out, seen)
    if seen.retry_delay is not None:
        raise kopf.TemporaryError(seen.message, delay=seen.retry_delay)
