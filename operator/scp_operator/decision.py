"""The deletion decision table (docs/architecture.md) — the one place it lives.

A pure function from what is known about a terminating VirtualServer (its policy and annotations,
the CRD's state, the other objects naming the same server, and SCP's last answer) to an action:
release the finalizer, hold it for a while, or make the next SCP call. The Kopf handler only
gathers the inputs and carries the action out, so every row is testable without Kubernetes.

Invariant: :attr:`Action.RELEASE` comes only from 202, 404, ``Orphan`` or the CRD cascade.

Size: about 350 lines on purpose — the table's rows are read top to bottom and their order is
the meaning, so they stay in one module rather than spread over several.
"""

from __future__ import annotations

import dataclasses
import enum

from scp_operator.backoff import MIN_DELAY, Schedule
from scp_operator.constants import BYPASS_ANNOTATION, PROTECTION_ANNOTATION
from scp_operator.crd_state import CrdState as CrdState  # re-exported: the table's input
from scp_operator.model import DeletionPolicy
from scp_operator.scp.outcomes import Outcome, Verdict


class Action(enum.StrEnum):
    """What the handler does next."""

    RELEASE = "Release"  # let Kopf remove the finalizer
    HOLD = "Hold"  # keep it; try again after ``delay``
    CALL_DELETE = "CallDelete"  # send DELETE, then decide again with its outcome
    CALL_GET = "CallGet"  # confirm mode: GET until 404, then decide again


@dataclasses.dataclass(frozen=True)
class Timing:
    """Retry schedules (from settings)."""

    fast: Schedule = dataclasses.field(default_factory=lambda: Schedule(5.0, 900.0))
    slow: Schedule = dataclasses.field(default_factory=lambda: Schedule(60.0, 1800.0))
    hold_recheck: float = 60.0
    confirm_poll: float = 10.0


@dataclasses.dataclass(frozen=True)
class Doubt:
    """Why an answer of SCP's is not evidence enough to act on (e.g. a 404 from elsewhere)."""

    reason: str
    message: str


@dataclasses.dataclass(frozen=True)
class Situation:
    """Everything the decision depends on, each read right before deciding."""

    server_id: str
    policy: DeletionPolicy = DeletionPolicy.DELETE
    protected: bool = False
    protection_note: str = ""  # set when the annotation's value was not understood (still holds)
    crd: CrdState = CrdState.PRESENT
    spec_error: str | None = None  # the spec cannot be read: which field, and why
    account_hold: Doubt | None = None  # the object's ScpAccount may not be used (why, in words)
    region_error: str | None = None  # the region names no endpoint of the configured environment
    sharers: tuple[str, ...] = ()  # who else keeps the server, as the owner may see them
    sharers_error: str | None = None  # the API server could not be asked who else names it
    gone_doubt: Doubt | None = None  # a 404 that is not evidence (other endpoint or account)
    outcome: Outcome | None = None  # SCP's answer in this attempt; None: no call made yet
    # What SCP last said about the server, to say which blocker a 409 is: locked (None: not
    # known), and whether an Auto-Scaling Group created it (its LB server group does not block)
    server_locked: bool | None = None
    auto_scaling: bool = False
    attempt: int = 0  # Kopf's retry count for the delete handler
    jitter: float = 0.5  # in [0, 1), drawn by the caller
    confirm: bool = False  # confirm mode: keep the finalizer after 202 until GET says 404
    accepted_before: bool = False  # SCP accepted a DELETE in an earlier attempt
    dry_run: bool = False  # never DELETE: say what would be deleted, and hold
    budget_wait: float | None = None  # blast-radius limit reached: seconds until a slot frees
    timing: Timing = dataclasses.field(default_factory=Timing)


@dataclasses.dataclass(frozen=True)
class Decision:
    """The action plus the words for the ``Deleting`` condition and the event."""

    action: Action
    reason: str
    message: str
    delay: float | None = None
    warning: bool = False
    forget_acceptance: bool = False  # an earlier 202 did not take: the next attempt DELETEs again


#: Server states SCP reports for a server that is not being deleted (scp-api.md: ACTIVE, SHUTOFF
#: and ERROR are the states seen; transitional deletion states are unknown, so anything else is
#: taken as "deletion may still be under way").
STEADY_STATES = frozenset({"ACTIVE", "SHUTOFF", "STOPPED"})

CONFLICT_CAUSES = (
    "SCP refuses to delete a server while it is locked, or while File Storage, an LB server "
    "group (unless created by an Auto-Scaling Group) or a Backup is connected"
)


def attached_causes(auto_scaling: bool) -> str:
    """SCP's documented reasons besides a lock, in words (scp-api.md: the seed's 409 list)."""
    found = ["File Storage", "an LB server group", "a Backup"]
    if auto_scaling:  # an Auto-Scaling Group's LB server group does not block its servers
        found.remove("an LB server group")
    return ", ".join(found[:-1]) + " or " + found[-1] if len(found) > 1 else found[0]


ORPHAN_HINT = "set spec.deletionPolicy: Orphan to let the object go and keep the server"


def decide(s: Situation) -> Decision:
    """Apply the decision table (docs/architecture.md, "The decision table"), top row first."""
    sid = s.server_id
    if s.policy is DeletionPolicy.ORPHAN:
        return Decision(
            Action.RELEASE, "Orphaned", f"deletionPolicy is Orphan: server {sid} is kept in SCP"
        )
    if s.crd in (CrdState.TERMINATING, CrdState.GONE):
        return Decision(
            Action.RELEASE,
            "CrdDeleted",
            f"the VirtualServer CRD is being deleted, so this object goes WITHOUT deleting "
            f"server {sid}: it is left running in SCP and is no longer tracked",
            warning=True,
        )
    if s.spec_error is not None:
        return _hold(
            s,
            "InvalidSpec",
            f"the spec cannot be read ({s.spec_error}); no server is deleted: fix the spec, "
            f"or {ORPHAN_HINT}",
            s.timing.slow,
        )
    if s.crd is CrdState.UNKNOWN:
        return _hold(
            s,
            "CrdCheckFailed",
            "cannot read the VirtualServer CRD to rule out a CRD deletion; will retry",
            s.timing.fast,
        )
    if s.protected:
        said = s.protection_note or 'is "true"'
        return Decision(
            Action.HOLD,
            "DeletionProtected",
            f"annotation {PROTECTION_ANNOTATION} {said}: server {sid} is "
            f"not deleted; remove the annotation to delete it, or {ORPHAN_HINT}",
            delay=max(MIN_DELAY, s.timing.hold_recheck),
            warning=True,
        )
    if s.account_hold is not None:
        return _hold(s, s.account_hold.reason, s.account_hold.message, s.timing.slow)
    if s.region_error is not None:
        return _hold(
            s,
            "InvalidRegion",
            f"{s.region_error}; nothing was sent to SCP: correct spec.region, or {ORPHAN_HINT}",
            s.timing.slow,
        )
    if s.sharers_error is not None:
        return _hold(
            s,
            "ShareCheckFailed",
            f"cannot ask the API server which other objects name server {sid} "
            f"({s.sharers_error}); nothing was deleted, will retry",
            s.timing.fast,
        )
    if s.sharers:
        return Decision(
            Action.HOLD,
            "ServerShared",
            f"server {sid} is also named by {', '.join(sorted(s.sharers))}; it is deleted only "
            f"when the last object naming it goes",
            delay=max(MIN_DELAY, s.timing.hold_recheck),
            warning=True,
        )
    if s.outcome is None:
        if s.confirm and s.accepted_before:
            return Decision(Action.CALL_GET, "AwaitingConfirmation", f"checking server {sid}")
        if s.dry_run:
            return Decision(
                Action.HOLD,
                "DryRun",
                f"dry run: would delete server {sid}; nothing was deleted (unset "
                f"SCP_OPERATOR_DRY_RUN to delete, or {ORPHAN_HINT})",
                delay=max(MIN_DELAY, s.timing.hold_recheck),
                warning=True,
            )
        if s.budget_wait is not None:
            return Decision(
                Action.HOLD,
                "DeletionBudgetExhausted",
                f"blast-radius limit reached (SCP_OPERATOR_MAX_DELETIONS_PER_WINDOW): server "
                f"{sid} waits for the window to move on; to let this object go now, annotate "
                f"it {BYPASS_ANNOTATION}=true",
                # re-checked at least every hold_recheck, so a bypass annotation is seen soon
                delay=max(MIN_DELAY, min(s.budget_wait, s.timing.hold_recheck)),
                warning=True,
            )
        return Decision(Action.CALL_DELETE, "Deleting", f"deleting server {sid}")
    return _after_answer(s, s.outcome)


def _after_answer(s: Situation, o: Outcome) -> Decision:
    sid, said = s.server_id, o.describe()
    match o.kind:
        case Verdict.ACCEPTED if s.confirm:
            return Decision(
                Action.HOLD,
                "AwaitingConfirmation",
                f"SCP accepted the deletion of server {sid}; waiting until it is gone",
                delay=max(MIN_DELAY, s.timing.confirm_poll),
            )
        case Verdict.ACCEPTED:
            return Decision(
                Action.RELEASE, "DeleteAccepted", f"SCP accepted the deletion of server {sid} (202)"
            )
        case Verdict.GONE if s.gone_doubt is not None:
            return _hold(
                s,
                s.gone_doubt.reason,
                f"SCP answered 404 for server {sid}, but {s.gone_doubt.message}; the object is "
                f"kept because the server may still exist. {ORPHAN_HINT[0].upper()}"
                f"{ORPHAN_HINT[1:]} if it is really gone",
                s.timing.slow,
            )
        case Verdict.GONE:
            words = "is gone (deletion confirmed)" if s.accepted_before else "does not exist"
            return Decision(Action.RELEASE, "ServerGone", f"server {sid} {words} in SCP (404)")
        case Verdict.FOUND:
            state = str((o.body or {}).get("state") or "unknown")[:64]
            if state.upper() == "ERROR":
                return _hold(
                    s,
                    "DeletionFailed",
                    f"server {sid} is still present in SCP (state {state}); SCP reports an "
                    "error — check the server in SCP's console",
                    s.timing.slow,
                )
            if state.upper() in STEADY_STATES:
                # SCP accepted a DELETE, yet the server is back in a steady state: that deletion
                # did not take. Waiting would poll forever; the next attempt deletes again.
                return dataclasses.replace(
                    _hold(
                        s,
                        "DeletionNotCompleted",
                        f"SCP accepted the deletion of server {sid}, but the server is "
                        f"{state} again; the deletion is sent again",
                        s.timing.fast,
                    ),
                    forget_acceptance=True,
                )
            return Decision(
                Action.HOLD,
                "AwaitingConfirmation",
                f"server {sid} is still present in SCP (state {state}); waiting until it is gone",
                # grows with the attempts: a deletion that takes an hour costs a few dozen reads
                delay=Schedule(s.timing.confirm_poll, s.timing.fast.cap).delay(s.attempt, s.jitter),
            )
        case Verdict.CONFLICT:
            return _conflict(s, said)
        case Verdict.UNAUTHORIZED:
            clock = "timestamp" in (o.detail or "").lower()
            cause = (
                "the request timestamp was rejected: the node's clock is probably skewed"
                if clock
                else "check SCP_ACCESS_KEY/SCP_SECRET_KEY (and the node's clock: "
                "a skewed clock invalidates every signature)"
            )
            return _hold(
                s, "Unauthorized", f"SCP rejected the credentials ({said}); {cause}", s.timing.slow
            )
        case Verdict.FORBIDDEN:
            return _hold(
                s,
                "Forbidden",
                f"SCP forbade the call ({said}); the access key lacks "
                "the IAM permission to delete virtual servers, or the API version or "
                "route is not available to it",
                s.timing.slow,
            )
        case Verdict.THROTTLED:
            return _hold(
                s,
                "Throttled",
                f"SCP is throttling requests ({said})",
                s.timing.fast,
                at_least=o.retry_after,
            )
        case Verdict.UNAVAILABLE:
            return _hold(
                s,
                "ScpUnavailable",
                f"SCP is unavailable ({said})",
                s.timing.fast,
                at_least=o.retry_after,
            )
        case Verdict.NO_CREDENTIALS:
            return _hold(
                s, "CredentialsUnavailable", f"no usable SCP credentials: {o.detail}", s.timing.slow
            )
        case _:
            return _hold(
                s,
                "Rejected",
                f"unexpected answer from SCP ({said}); server {sid} "
                "may still exist, so the object is kept",
                s.timing.slow,
            )


def _conflict(s: Situation, said: str) -> Decision:
    """409: say which blocker it is, from what SCP said about the server (SCP's 409 body does
    not: "Cannot terminate due to associated resources")."""
    sid = s.server_id
    if s.server_locked:
        return _hold(
            s,
            "ServerLocked",
            f"SCP refused to delete server {sid} ({said}): the server is locked in SCP. Unlock "
            f"it (SCP console, or POST /v1/servers/{sid}/unlock) and the deletion goes on, "
            f"or {ORPHAN_HINT}",
            s.timing.fast,
        )
    if s.server_locked is False:
        return _hold(
            s,
            "Conflict",
            f"SCP refused to delete server {sid} ({said}). The server is not locked, so "
            f"something is connected to it: {attached_causes(s.auto_scaling)}. Disconnect it "
            f"in SCP and the deletion goes on, or {ORPHAN_HINT}",
            s.timing.fast,
        )
    return _hold(
        s,
        "Conflict",
        f"SCP refused to delete server {sid} ({said}). "
        f"{CONFLICT_CAUSES}; fix that in SCP, or {ORPHAN_HINT}",
        s.timing.fast,
    )


def _hold(
    s: Situation, reason: str, message: str, schedule: Schedule, *, at_least: float | None = None
) -> Decision:
    delay = schedule.delay(s.attempt, s.jitter, at_least=at_least)
    return Decision(Action.HOLD, reason, message, delay=delay, warning=True)
