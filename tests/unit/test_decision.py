"""Every row of the deletion decision table (docs/architecture.md), and the invariant over all
of them."""

import dataclasses
import itertools

import pytest

from scp_operator.backoff import Schedule
from scp_operator.decision import Action, CrdState, Situation, Timing, decide
from scp_operator.model import DeletionPolicy
from scp_operator.scp.outcomes import Outcome, Verdict

SID = "2a9be312-5d4b-4bc8-b2ae-35100fa9241f"
BASE = Situation(server_id=SID)
TIMING = Timing(fast=Schedule(5, 900), slow=Schedule(60, 1800), hold_recheck=60, confirm_poll=10)


def answered(kind: Verdict, status: int | None = None, **kw: object) -> Situation:
    return dataclasses.replace(BASE, outcome=Outcome(kind, status, **kw), timing=TIMING)  # type: ignore[arg-type]


# --- rows that decide without calling SCP ---------------------------------------------------


def test_row_orphan_releases_without_a_call() -> None:
    d = decide(dataclasses.replace(BASE, policy=DeletionPolicy.ORPHAN))
    assert (d.action, d.reason, d.warning) == (Action.RELEASE, "Orphaned", False)


def test_row_orphan_wins_over_everything_even_protection_and_sharing() -> None:
    s = dataclasses.replace(
        BASE, policy=DeletionPolicy.ORPHAN, protected=True, sharers=("a/b",), crd=CrdState.UNKNOWN
    )
    assert decide(s).action is Action.RELEASE


@pytest.mark.parametrize("crd", [CrdState.TERMINATING, CrdState.GONE])
def test_row_crd_cascade_releases_without_a_call_and_warns(crd: CrdState) -> None:
    d = decide(dataclasses.replace(BASE, crd=crd, protected=True))
    assert (d.action, d.reason, d.warning) == (Action.RELEASE, "CrdDeleted", True)
    assert "WITHOUT deleting" in d.message


def test_unreadable_crd_holds_and_never_calls() -> None:
    d = decide(dataclasses.replace(BASE, crd=CrdState.UNKNOWN))
    assert d.action is Action.HOLD
    assert d.reason == "CrdCheckFailed"


def test_row_protection_holds_with_slow_recheck_and_names_the_way_out() -> None:
    d = decide(dataclasses.replace(BASE, protected=True, timing=TIMING))
    assert (d.action, d.reason, d.delay, d.warning) == (Action.HOLD, "DeletionProtected", 60, True)
    assert "deletion-protection" in d.message
    assert "Orphan" in d.message


def test_row_shared_server_holds_and_names_the_other_objects() -> None:
    d = decide(dataclasses.replace(BASE, sharers=("ns2/web", "ns1/db"), timing=TIMING))
    assert (d.action, d.reason) == (Action.HOLD, "ServerShared")
    assert "ns1/db, ns2/web" in d.message


def test_no_blocker_means_call_delete() -> None:
    assert decide(BASE).action is Action.CALL_DELETE


def test_confirm_mode_after_acceptance_calls_get_not_delete() -> None:
    s = dataclasses.replace(BASE, confirm=True, accepted_before=True)
    assert decide(s).action is Action.CALL_GET
    # without confirm mode an earlier acceptance changes nothing: DELETE again is harmless
    assert decide(dataclasses.replace(s, confirm=False)).action is Action.CALL_DELETE


# --- rows decided by SCP's answer -----------------------------------------------------------


def test_row_202_releases() -> None:
    d = decide(answered(Verdict.ACCEPTED, 202))
    assert (d.action, d.reason, d.warning) == (Action.RELEASE, "DeleteAccepted", False)


def test_row_202_in_confirm_mode_keeps_until_404() -> None:
    s = dataclasses.replace(answered(Verdict.ACCEPTED, 202), confirm=True)
    d = decide(s)
    assert (d.action, d.reason, d.delay) == (Action.HOLD, "AwaitingConfirmation", 10)
    present = dataclasses.replace(
        s, accepted_before=True, outcome=Outcome(Verdict.FOUND, 200, body={"state": "DELETING"})
    )
    assert decide(present).action is Action.HOLD
    gone = dataclasses.replace(s, accepted_before=True, outcome=Outcome(Verdict.GONE, 404))
    d = decide(gone)
    assert (d.action, d.reason) == (Action.RELEASE, "ServerGone")
    assert "confirmed" in d.message


def test_confirm_mode_reports_a_server_stuck_in_error() -> None:
    s = dataclasses.replace(
        BASE,
        confirm=True,
        accepted_before=True,
        timing=TIMING,
        outcome=Outcome(Verdict.FOUND, 200, body={"state": "ERROR"}),
    )
    d = decide(s)
    assert (d.action, d.reason, d.warning) == (Action.HOLD, "DeletionFailed", True)


def test_row_404_releases() -> None:
    d = decide(answered(Verdict.GONE, 404))
    assert (d.action, d.reason) == (Action.RELEASE, "ServerGone")


def test_row_409_on_a_locked_server_says_it_is_the_lock_and_how_to_unlock() -> None:
    s = dataclasses.replace(
        answered(Verdict.CONFLICT, 409, detail="Cannot terminate due to associated resources"),
        server_locked=True,
    )
    d = decide(s)
    assert (d.action, d.reason, d.warning) == (Action.HOLD, "ServerLocked", True)
    assert f"POST /v1/servers/{SID}/unlock" in d.message
    assert "Orphan" in d.message
    assert "File Storage" not in d.message  # not a guess list when the cause is known
    assert d.delay is not None
    assert 2.5 <= d.delay <= 5  # the fast schedule: unlocking is quick


@pytest.mark.parametrize(
    ("auto_scaling", "named", "not_named"),
    [
        (False, ["File Storage", "an LB server group", "a Backup"], []),
        (True, ["File Storage", "a Backup"], ["LB server group"]),
    ],
)
def test_row_409_on_an_unlocked_server_names_what_remains(
    auto_scaling: bool, named: list[str], not_named: list[str]
) -> None:
    s = dataclasses.replace(
        answered(Verdict.CONFLICT, 409), server_locked=False, auto_scaling=auto_scaling
    )
    d = decide(s)
    assert (d.action, d.reason) == (Action.HOLD, "Conflict")
    assert "not locked" in d.message
    assert all(cause in d.message for cause in named)
    assert not any(cause in d.message for cause in not_named)


def test_row_409_holds_with_fast_backoff_and_names_the_causes() -> None:
    d = decide(answered(Verdict.CONFLICT, 409, detail="Server is locked"))
    assert (d.action, d.reason, d.warning) == (Action.HOLD, "Conflict", True)
    for cause in (
        "locked",
        "File Storage",
        "LB server group",
        "Backup",
        "Server is locked",
        "Orphan",
    ):
        assert cause in d.message
    assert d.delay is not None
    assert 2.5 <= d.delay <= 5


def test_row_409_backoff_grows_to_the_cap() -> None:
    delays = [
        decide(dataclasses.replace(answered(Verdict.CONFLICT, 409), attempt=n, jitter=0.999)).delay
        for n in range(12)
    ]
    assert delays == sorted(delays)
    assert delays[-1] == pytest.approx(900, rel=0.01)


def test_row_401_holds_slowly_and_points_at_keys_or_clock() -> None:
    d = decide(answered(Verdict.UNAUTHORIZED, 401, detail="[HMAC] HMAC valid fail"))
    assert (d.action, d.reason) == (Action.HOLD, "Unauthorized")
    assert "SCP_ACCESS_KEY" in d.message
    assert "clock" in d.message
    assert d.delay is not None
    assert d.delay >= 30


def test_row_401_with_stale_timestamp_names_clock_skew() -> None:
    d = decide(answered(Verdict.UNAUTHORIZED, 401, detail="[HMAC] Timestamp expired"))
    assert "clock is probably skewed" in d.message


def test_row_403_holds_slowly_and_names_iam_permission() -> None:
    d = decide(answered(Verdict.FORBIDDEN, 403, detail="Action definition is not found"))
    assert (d.action, d.reason) == (Action.HOLD, "Forbidden")
    assert "IAM permission" in d.message
    assert d.delay is not None
    assert d.delay >= 30


@pytest.mark.parametrize(
    ("kind", "reason"), [(Verdict.THROTTLED, "Throttled"), (Verdict.UNAVAILABLE, "ScpUnavailable")]
)
def test_row_429_5xx_network_hold_and_honour_retry_after(kind: Verdict, reason: str) -> None:
    d = decide(answered(kind, 503, retry_after=120.0))
    assert (d.action, d.reason) == (Action.HOLD, reason)
    assert d.delay == 120.0
    d = decide(answered(kind, None, detail="cannot connect to SCP"))
    assert d.delay is not None
    assert d.delay <= 5


@pytest.mark.parametrize(
    ("kind", "reason"),
    [(Verdict.REJECTED, "Rejected"), (Verdict.NO_CREDENTIALS, "CredentialsUnavailable")],
)
def test_row_other_answers_and_missing_credentials_hold_slowly(kind: Verdict, reason: str) -> None:
    d = decide(answered(kind, 400 if kind is Verdict.REJECTED else None, detail="x"))
    assert (d.action, d.reason, d.warning) == (Action.HOLD, reason, True)
    assert d.delay is not None
    assert d.delay >= 30


def test_an_unexpected_200_on_delete_is_never_taken_as_success() -> None:
    d = decide(answered(Verdict.FOUND, 200, body={}))
    assert d.action is Action.HOLD


# --- the invariant over the whole input space -----------------------------------------------

RELEASING_KINDS = {Verdict.ACCEPTED, Verdict.GONE}


@pytest.mark.parametrize("kind", [None, *Verdict])
def test_release_only_on_202_404_orphan_or_crd_cascade(kind: Verdict | None) -> None:
    for policy, protected, crd, sharers, confirm, accepted in itertools.product(
        DeletionPolicy, [False, True], CrdState, [(), ("x/y",)], [False, True], [False, True]
    ):
        s = Situation(
            server_id=SID,
            policy=policy,
            protected=protected,
            crd=crd,
            sharers=sharers,
            confirm=confirm,
            accepted_before=accepted,
            outcome=None if kind is None else Outcome(kind, 200, body={"state": "ACTIVE"}),
        )
        d = decide(s)
        if d.action is not Action.RELEASE:
            if d.action is Action.HOLD:
                assert d.delay is not None
                assert d.delay >= 1
            continue
        allowed = (
            policy is DeletionPolicy.ORPHAN
            or crd in (CrdState.TERMINATING, CrdState.GONE)
            or (
                kind in RELEASING_KINDS
                and not protected
                and not sharers
                and crd is CrdState.PRESENT
                and not (confirm and kind is Verdict.ACCEPTED)
            )
        )
        assert allowed, (s, d)


def test_dry_run_holds_before_any_delete_and_says_what_it_would_do() -> None:
    d = decide(dataclasses.replace(BASE, dry_run=True, timing=TIMING))
    assert (d.action, d.reason, d.warning) == (Action.HOLD, "DryRun", True)
    assert f"would delete server {SID}" in d.message
    # dry run never stands in the way of letting go without a call
    assert (
        decide(dataclasses.replace(BASE, dry_run=True, policy=DeletionPolicy.ORPHAN)).action
        is Action.RELEASE
    )


def test_blast_radius_budget_holds_until_a_slot_frees() -> None:
    d = decide(dataclasses.replace(BASE, budget_wait=30.0, timing=TIMING))
    assert (d.action, d.reason, d.delay) == (Action.HOLD, "DeletionBudgetExhausted", 30.0)
    d = decide(dataclasses.replace(BASE, budget_wait=3000.0, timing=TIMING))
    assert d.delay == TIMING.hold_recheck  # re-checked often enough to see a bypass
    assert "bypass-deletion-budget" in d.message
    confirm = dataclasses.replace(BASE, budget_wait=123.0, confirm=True, accepted_before=True)
    assert decide(confirm).action is Action.CALL_GET  # a confirming GET deletes nothing


# --- issue 9: rows added for facts read at decision time --------------------------------------


def test_confirm_mode_sends_the_delete_again_when_the_server_is_back_in_a_steady_state() -> None:
    """Defect 6: after a 202 whose server returned to ACTIVE the operator polled forever."""
    s = dataclasses.replace(
        answered(Verdict.FOUND, 200, body={"state": "ACTIVE"}), confirm=True, accepted_before=True
    )
    d = decide(s)
    assert (d.action, d.reason, d.warning) == (Action.HOLD, "DeletionNotCompleted", True)
    assert d.forget_acceptance
    # once the acceptance is forgotten, the next attempt deletes again
    again = decide(dataclasses.replace(s, outcome=None, accepted_before=False))
    assert again.action is Action.CALL_DELETE


def test_confirm_polling_backs_off_with_the_attempts() -> None:
    """Defect 6: the poll was a fixed 5-10 s forever (hundreds of reads per hour)."""
    s = dataclasses.replace(
        answered(Verdict.FOUND, 200, body={"state": "DELETING"}), confirm=True, accepted_before=True
    )
    first = decide(dataclasses.replace(s, attempt=0, jitter=0.0)).delay
    later = decide(dataclasses.replace(s, attempt=6, jitter=0.0)).delay
    assert first is not None
    assert later is not None
    assert later >= 8 * first


def test_an_unreadable_spec_holds_with_a_condition_naming_the_field() -> None:
    """Defect 9: InvalidSpec always blamed serverId and set no condition."""
    d = decide(dataclasses.replace(BASE, spec_error="spec.region: String should match pattern"))
    assert (d.action, d.reason, d.warning) == (Action.HOLD, "InvalidSpec", True)
    assert "spec.region" in d.message
    orphan = dataclasses.replace(BASE, spec_error="x", policy=DeletionPolicy.ORPHAN)
    assert decide(orphan).action is Action.RELEASE  # the way out stays open


def test_a_region_the_environment_lacks_holds_before_any_call() -> None:
    """Defect 5: the region error raised out of the client with no condition and no event."""
    d = decide(dataclasses.replace(BASE, region_error="region 'kr-south1' does not exist"))
    assert (d.action, d.reason, d.warning) == (Action.HOLD, "InvalidRegion", True)
    assert "spec.region" in d.message


def test_a_failed_sharer_check_holds_and_never_deletes() -> None:
    d = decide(dataclasses.replace(BASE, sharers_error="LIST virtualservers answered HTTP 500"))
    assert (d.action, d.reason) == (Action.HOLD, "ShareCheckFailed")
