"""What the VirtualServer handlers write: status fields and events, in one place.

Handlers decide; this module writes. Every status field goes out as a model of
:mod:`scp_operator.model` — a partial :class:`~scp_operator.model.VirtualServerStatus` serialised
by :func:`scp_operator.model.dump` into Kopf's status patch — so the CRD, the models and what is
really written cannot drift apart (``tests/unit/test_model_crd_agreement.py`` checks the first
two). Events go through :func:`scp_operator.events.post`, which keeps a blocked object's repeated
warning from flooding ``kubectl describe``.

A released object is about to vanish, so nothing is written to its status: one fewer API write
per deleted object, and its event still says what happened.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterable

import kopf
from pydantic import ValidationError

from scp_operator import conditions, events, volumes
from scp_operator.decision import Action, Decision
from scp_operator.model import DeletionProgress, ServerObservation, VirtualServerStatus, dump
from scp_operator.runtime import Runtime
from scp_operator.scp.outcomes import Outcome, Verdict


@dataclasses.dataclass(frozen=True)
class Subject:
    """One VirtualServer as a handler sees it: Kopf's views of it, and where to write."""

    body: kopf.Body
    meta: kopf.Meta
    status: kopf.Status
    patch: kopf.Patch
    memo: kopf.Memo  # Kopf's per-object memo: remembers the last event posted
    repeat_interval: float  # SCP_OPERATOR_EVENT_REPEAT_INTERVAL
    #: Outside Kopf's handlers (the periodic re-read) events are collected here, to be posted
    #: by the caller once its status write succeeded; None: post through Kopf at once.
    held_events: list[tuple[bool, str, str]] | None = None


def subject(
    body: kopf.Body,
    meta: kopf.Meta,
    status: kopf.Status,
    patch: kopf.Patch,
    memo: kopf.Memo,
    runtime: Runtime,
) -> Subject:
    """The :class:`Subject` a handler writes to, with the operator's event repeat interval."""
    interval = runtime.settings.operator.event_repeat_interval
    return Subject(body, meta, status, patch, memo, interval)


def retained_volumes(subject: Subject, server_id: str) -> None:
    """After SCP accepted a deletion: post which volumes outlive the server (if any may)."""
    seen = subject.status.get("server") or {}
    try:
        stored = ServerObservation.model_validate(seen)
    except ValidationError:
        stored = ServerObservation()
    said = volumes.report(server_id, stored.volumes)
    if said is not None:
        reason, message = said
        _event(subject, warning=True, reason=reason, message=message)


def write(patch: kopf.Patch, update: VirtualServerStatus, *, remove: Iterable[str] = ()) -> None:
    """Merge the fields set in ``update`` into the handler's status patch (Kopf sends it once,
    when the handler returns or raises)."""
    for key, value in dump(update, remove=remove).items():
        patch.status[key] = value


def ready(subject: Subject, state: str, reason: str, message: str, *, warning: bool) -> None:
    """Write the Ready condition; post it as a Warning event too when ``warning``."""
    replaced = conditions.replace(
        subject.status.get("conditions"),
        type="Ready",
        status=state,
        reason=reason,
        message=message,
        generation=subject.meta.get("generation"),
    )
    write(subject.patch, VirtualServerStatus(conditions=replaced))
    if warning:
        _event(subject, warning=True, reason=reason, message=message)


def server(subject: Subject, observation: ServerObservation) -> None:
    """Write ``status.server``: what SCP said about the server, and where it said it."""
    write(subject.patch, VirtualServerStatus(server=observation))


def decision(subject: Subject, decided: Decision) -> None:
    """Write the Deleting condition (unless releasing) and post the decision's event."""
    if decided.action is Action.HOLD:
        replaced = conditions.replace(
            subject.patch.status.get("conditions") or subject.status.get("conditions"),
            type="Deleting",
            status="True",
            reason=decided.reason,
            message=decided.message,
            generation=subject.meta.get("generation"),
        )
        write(subject.patch, VirtualServerStatus(conditions=replaced))
    _event(subject, warning=decided.warning, reason=decided.reason, message=decided.message)


def progress(status: kopf.Status) -> DeletionProgress:
    """``status.deletion`` as stored (empty when there is none, or none that can be read)."""
    try:
        return DeletionProgress.model_validate(status.get("deletion") or {})
    except ValidationError:
        return DeletionProgress()


def record(
    before: DeletionProgress, action: Action, outcome: Outcome, *, now: str | None = None
) -> DeletionProgress:
    """``status.deletion`` after a call to SCP (``action`` says which call)."""
    now = now or conditions.now_iso()
    changes: dict[str, object] = {
        # None (no answer) is left out of the patch: the stored status stays
        "last_http_status": outcome.status,
        "last_message": outcome.describe(),
    }
    if action is Action.CALL_DELETE:
        changes["attempts"] = before.attempts + 1
        changes["last_attempt_time"] = now
    if outcome.kind is Verdict.ACCEPTED and not before.accepted_time:
        changes["accepted_time"] = now
    return before.model_copy(update=changes)


def next_attempt(subject: Subject, when: str) -> None:
    """Write ``status.deletion.nextAttemptTime``, merged into whatever ``status.deletion`` the
    handler already wrote (a merge patch writes only the fields it names)."""
    written = subject.patch.status.get("deletion")
    merged = dict(written) if isinstance(written, dict) else {}
    merged["nextAttemptTime"] = when
    subject.patch.status["deletion"] = merged


def deletion(subject: Subject, after: DeletionProgress, *, forget_acceptance: bool) -> None:
    """Write ``status.deletion``; ``forget_acceptance`` removes ``acceptedTime`` (an earlier 202
    did not take, so the next attempt DELETEs again)."""
    if forget_acceptance:
        after = after.model_copy(update={"accepted_time": None})
    write(
        subject.patch,
        VirtualServerStatus(deletion=after),
        remove=("deletion.acceptedTime",) if forget_acceptance else (),
    )


def _event(subject: Subject, *, warning: bool, reason: str, message: str) -> None:
    if subject.held_events is not None:
        subject.held_events.append((warning, reason, message))
        return
    events.post(
        subject.body,
        subject.memo,
        warning=warning,
        reason=reason,
        message=message,
        repeat_interval=subject.repeat_interval,
    )
