"""Kopf handlers that read a server from SCP and write what was found: ``Ready``, ``server``.

Two handlers share one read (:func:`look`):

- :func:`observe` at creation, on resume and when the spec changes. A server SCP does
  not know is reported at once: a typo found now would otherwise become a silently orphaned
  server at deletion time.
- :func:`resync` every ``SCP_OPERATOR_RESYNC_INTERVAL`` seconds (jittered ±25 %), so ``Ready``,
  ``State`` and ArgoCD's health follow SCP when a server is locked, fails or is deleted in SCP's
  console. It writes only when something changed (status and event alike): 5 000 objects
  re-read every 10 minutes cost about 8 SCP GETs a second through the same limiter as
  deletions, and almost no API server writes.

Why the re-read is a Kopf timer whose handler waits itself: a timer's ``interval`` is fixed when
the module is imported, before the settings are read, and carries no jitter; the handler waits
``stopped.wait(jittered interval)`` and the decorator's interval is only the short pause
between two runs. A timer rather than a daemon because Kopf applies a timer's status patch after
each run. The timer stops when the object is deleted (the delete handler owns it then) and is
not started at all when the interval is 0.
"""

from __future__ import annotations

import dataclasses
import logging
import random
from typing import Any

import kopf
from pydantic import ValidationError

from scp_operator import reporting
from scp_operator.constants import GROUP, PLURAL, VERSION
from scp_operator.decision import Situation, decide
from scp_operator.directory import Refusal
from scp_operator.handlers import facts
from scp_operator.model import ServerObservation, VirtualServerSpec, dump
from scp_operator.runtime import Runtime
from scp_operator.scp.endpoints import EndpointError
from scp_operator.scp.outcomes import Verdict

RESOURCE = (GROUP, VERSION, PLURAL)
_rng = random.SystemRandom()

#: Seconds between the end of one re-read and the start of the next wait (see the docstring).
RESYNC_PAUSE = 1.0
#: The re-read comes every interval times a factor drawn from this range, so objects created or
#: resumed together spread their reads instead of arriving at SCP at once.
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


async def look(spec: kopf.Spec, namespace: str, runtime: Runtime, retry: int) -> Look:
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


def _write(out: reporting.Subject, seen: Look) -> None:
    if seen.observation is not None:
        reporting.server(out, seen.observation)
    reporting.ready(out, seen.state, seen.reason, seen.message, warning=seen.warning)


def changed(status: kopf.Status, generation: Any, seen: Look) -> bool:
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
    if meta.get("deletionTimestamp"):
        return  # the delete handler owns terminating objects
    runtime: Runtime = memo.runtime
    seen = await look(spec, str(meta.get("namespace")), runtime, retry)
    out = reporting.subject(body, meta, status, patch, memo, runtime)
    _write(out, seen)
    if seen.retry_delay is not None:
        raise kopf.TemporaryError(seen.message, delay=seen.retry_delay)


def _resync_on(memo: kopf.Memo, **_: Any) -> bool:
    runtime: Runtime | None = memo.get("runtime")
    return runtime is not None and runtime.settings.operator.resync_interval > 0


@kopf.timer(*RESOURCE, id="resync", interval=RESYNC_PAUSE, when=_resync_on)
async def resync(
    spec: kopf.Spec,
    status: kopf.Status,
    meta: kopf.Meta,
    body: kopf.Body,
    patch: kopf.Patch,
    memo: kopf.Memo,
    logger: kopf.Logger,
    **kwargs: Any,
) -> None:
    """Every resync interval (jittered), read the server again; write only what changed."""
    # Kopf passes `stopped` to timers only; its TimerFn protocol does not name it, so it is
    # taken from the keyword arguments rather than declared.
    stopped: kopf.DaemonStopped = kwargs["stopped"]
    runtime: Runtime = memo.runtime
    interval = runtime.settings.operator.resync_interval
    await stopped.wait(interval * _rng.uniform(*JITTER))
    if stopped or meta.get("deletionTimestamp"):
        return  # deleted meanwhile: the delete handler owns it now
    seen = await look(spec, str(meta.get("namespace")), runtime, retry=0)
    if not seen.news:
        logger.debug("Re-read of the server said nothing new (%s); status kept", seen.reason)
        return
    if changed(status, meta.get("generation"), seen):
        logger.info("SCP now says: %s", seen.message)
        _write(reporting.subject(body, meta, status, patch, memo, runtime), seen)


class _QuietResync(logging.Filter):
    """Drop Kopf's "Timer 'resync' succeeded." line: one per object per interval says nothing
    (a change is logged by :func:`resync` itself; failures still are)."""

    def filter(self, record: logging.LogRecord) -> bool:
        return record.getMessage() != "Timer 'resync' succeeded."


logging.getLogger("kopf.objects").addFilter(_QuietResync())
