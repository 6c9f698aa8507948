"""Property-based tests (hypothesis): the decision table, the backoff schedule, URLs and signing.

The table-driven tests in test_decision.py, test_backoff.py and test_signing.py pin each row and
the known-answer vector; these explore the space between the rows. Each property is a sentence of
docs/architecture.md, "Invariants": the finalizer is released only on 202, 404, Orphan or the
CRD cascade; a hold always waits (no hot loops); delays are bounded, monotone up to the cap,
jittered and never zero; any server id and query produce a URL without ``//`` whose signature
SCP's gateway accepts.

Examples are drawn deterministically (``derandomize``) so a CI run is reproducible; set
``HYPOTHESIS_PROFILE=explore`` for fresh random examples and more of them.
"""

from __future__ import annotations

import asyncio
import dataclasses
import math
import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import httpx
import pytest
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st
from pydantic import SecretStr

from scp_emulator import signing as emulator_signing
from scp_emulator.auth import authenticate
from scp_emulator.config import Credential, EmulatorConfig
from scp_emulator.testing import ThreadedEmulator
from scp_operator.backoff import MIN_DELAY, Schedule
from scp_operator.constants import FINALIZER, PROTECTION_ANNOTATION
from scp_operator.credentials import CredentialsProvider
from scp_operator.decision import Action, CrdState, Doubt, Situation, Timing, decide
from scp_operator.evidence import blocking_sharers
from scp_operator.model import DeletionPolicy, protection
from scp_operator.scp import endpoints, signing
from scp_operator.scp.client import ScpClient
from scp_operator.scp.outcomes import Outcome, Verdict

settings.register_profile("ci", max_examples=200, derandomize=True, deadline=None, print_blob=True)
settings.register_profile("explore", max_examples=3000, deadline=None, print_blob=True)
settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE", "ci"))

SID = "2a9be312-5d4b-4bc8-b2ae-35100fa9241f"

# --- strategies -------------------------------------------------------------------------------

seconds = st.floats(min_value=0.001, max_value=100_000, allow_nan=False, allow_infinity=False)
jitters = st.floats(min_value=0.0, max_value=1.0, exclude_max=True)
attempts = st.integers(min_value=0, max_value=10_000)


@st.composite
def schedules(draw: st.DrawFn, min_base: float = 0.001) -> Schedule:
    base = draw(st.floats(min_value=min_base, max_value=10_000, allow_nan=False))
    cap = draw(st.floats(min_value=base, max_value=100_000, allow_nan=False))
    return Schedule(base, cap)


@st.composite
def timings(draw: st.DrawFn, min_interval: float = 0.001) -> Timing:
    """Any timing the settings accept (every knob > 0, caps not below bases)."""
    interval = st.floats(min_value=min_interval, max_value=100_000, allow_nan=False)
    return Timing(
        fast=draw(schedules()),
        slow=draw(schedules()),
        hold_recheck=draw(interval),
        confirm_poll=draw(interval),
    )


outcomes = st.builds(
    Outcome,
    kind=st.sampled_from(Verdict),
    status=st.none() | st.integers(min_value=100, max_value=599),
    detail=st.none()
    | st.sampled_from(["[HMAC] Timestamp expired", "[HMAC] HMAC valid fail", "Server is locked"])
    | st.text(max_size=20),
    retry_after=st.none() | st.floats(min_value=0, max_value=3600, allow_nan=False),
    body=st.none()
    | st.fixed_dictionaries(
        {}, optional={"state": st.sampled_from(["ACTIVE", "ERROR", "DELETING", "error", ""])}
    ),
)


@st.composite
def situations(draw: st.DrawFn, timing: st.SearchStrategy[Timing] | None = None) -> Situation:
    return Situation(
        server_id=SID,
        policy=draw(st.sampled_from(DeletionPolicy)),
        protected=draw(st.booleans()),
        crd=draw(st.sampled_from(CrdState)),
        sharers=tuple(draw(st.lists(st.sampled_from(["a/b", "ns1/web", "ns2/db"]), unique=True))),
        outcome=draw(st.none() | outcomes),
        attempt=draw(attempts),
        jitter=draw(jitters),
        confirm=draw(st.booleans()),
        accepted_before=draw(st.booleans()),
        dry_run=draw(st.booleans()),
        budget_wait=draw(st.none() | st.floats(min_value=1.0, max_value=7200, allow_nan=False)),
        timing=draw(timing if timing is not None else timings(min_interval=1.0)),
        spec_error=draw(st.none() | st.just("spec.serverId: bad")),
        region_error=draw(st.none() | st.just("region 'kr-south1' does not exist")),
        sharers_error=draw(st.none() | st.just("LIST virtualservers answered HTTP 500")),
        gone_doubt=draw(st.none() | st.just(Doubt("EndpointChanged", "seen elsewhere"))),
        account_hold=draw(
            st.none()
            | st.sampled_from(
                [
                    Doubt("AccountNotAdmitted", "ScpAccount a does not admit namespace x"),
                    Doubt("AccountNotFound", "ScpAccount a does not exist"),
                    Doubt("AccountCredentialsUnavailable", "the keys cannot be read"),
                ]
            )
        ),
    )


def may_release(s: Situation) -> bool:
    """The finalizer is released only on 202, 404, Orphan or the CRD cascade (architecture.md)."""
    if s.policy is DeletionPolicy.ORPHAN or s.crd in (CrdState.TERMINATING, CrdState.GONE):
        return True
    return s.outcome is not None and (
        (s.outcome.kind is Verdict.GONE and s.gone_doubt is None)
        or (s.outcome.kind is Verdict.ACCEPTED and not s.confirm)
    )


def longest_wait(s: Situation) -> float:
    t = s.timing
    retry_after = s.outcome.retry_after if s.outcome and s.outcome.retry_after else 0.0
    return max(t.fast.cap, t.slow.cap, t.hold_recheck, t.confirm_poll, retry_after, MIN_DELAY)


# --- the decision table -----------------------------------------------------------------------


@given(situations())
def test_release_happens_only_on_202_404_orphan_or_crd_cascade(s: Situation) -> None:
    d = decide(s)
    if d.action is Action.RELEASE:
        assert may_release(s), (s, d)
        assert d.reason in {"Orphaned", "CrdDeleted", "DeleteAccepted", "ServerGone"}


@given(situations(), st.booleans(), st.sampled_from([CrdState.TERMINATING, CrdState.GONE]))
def test_orphan_and_crd_cascade_always_release_without_a_call(
    s: Situation, orphan: bool, crd: CrdState
) -> None:
    s = dataclasses.replace(s, policy=DeletionPolicy.ORPHAN) if orphan else s
    s = s if s.policy is DeletionPolicy.ORPHAN else dataclasses.replace(s, crd=crd)
    d = decide(s)
    assert d.action is Action.RELEASE
    assert d.reason == ("Orphaned" if s.policy is DeletionPolicy.ORPHAN else "CrdDeleted")
    assert (d.reason == "CrdDeleted") == d.warning  # the cascade is loud


@given(situations())
def test_blockers_never_lead_to_a_delete_call(s: Situation) -> None:
    d = decide(dataclasses.replace(s, outcome=None))
    blocked = (
        s.policy is DeletionPolicy.ORPHAN
        or s.crd is not CrdState.PRESENT
        or s.protected
        or bool(s.sharers)
        or s.dry_run
        or s.budget_wait is not None
        or s.spec_error is not None
        or s.region_error is not None
        or s.sharers_error is not None
        or s.account_hold is not None  # isolation: no SCP call for an account that refuses
    )
    if blocked:
        assert d.action is not Action.CALL_DELETE, (s, d)
    if d.action is Action.CALL_GET:  # confirm mode only, after an earlier 202
        assert s.confirm
        assert s.accepted_before


@given(situations(), outcomes)
def test_an_answer_is_never_answered_with_another_call(s: Situation, outcome: Outcome) -> None:
    assert decide(dataclasses.replace(s, outcome=outcome)).action in (Action.RELEASE, Action.HOLD)


@given(situations())
def test_holds_wait_at_least_a_second_and_at_most_the_longest_configured_delay(
    s: Situation,
) -> None:
    d = decide(s)
    if d.action is not Action.HOLD:
        return
    assert d.delay is not None
    assert MIN_DELAY <= d.delay <= longest_wait(s), (s, d)
    assert d.message
    assert d.reason


NAMES_THE_SERVER = {
    "Orphaned",
    "CrdDeleted",
    "DeletionProtected",
    "ServerShared",
    "DryRun",
    "DeletionBudgetExhausted",
    "DeleteAccepted",
    "ServerGone",
    "Conflict",
    "Rejected",
}


@given(situations())
def test_holds_for_problems_are_warnings_and_say_which_server(s: Situation) -> None:
    d = decide(s)
    if d.action is Action.HOLD and d.reason != "AwaitingConfirmation":
        assert d.warning, d
    if d.reason in NAMES_THE_SERVER:
        assert SID in d.message, d


@settings(max_examples=50)
@given(situations(), st.data())
def test_a_later_attempt_never_retries_sooner(s: Situation, data: st.DataObject) -> None:
    later = dataclasses.replace(s, attempt=s.attempt + data.draw(st.integers(1, 100)))
    first, second = decide(s), decide(later)
    assume(first.action is Action.HOLD and first.reason == second.reason)
    assert first.delay is not None
    assert second.delay is not None
    assert second.delay >= first.delay


@given(situations())
def test_decide_is_pure(s: Situation) -> None:
    assert decide(s) == decide(dataclasses.replace(s))


@given(situations(timing=timings(min_interval=0.001)))
def test_holds_wait_at_least_a_second_whatever_the_settings(s: Situation) -> None:
    d = decide(s)
    if d.action is Action.HOLD:
        assert d.delay is not None
        assert d.delay >= MIN_DELAY, (s, d)


# --- the backoff schedule ---------------------------------------------------------------------


@given(schedules(), attempts)
def test_raw_delay_is_bounded_by_one_second_and_the_cap(s: Schedule, n: int) -> None:
    assert MIN_DELAY <= s.raw(n) <= max(s.cap, MIN_DELAY)


@given(schedules(), attempts)
def test_raw_delay_is_monotone_and_doubles_until_the_cap(s: Schedule, n: int) -> None:
    assert s.raw(n + 1) >= s.raw(n)
    if s.raw(n + 1) < s.cap and s.raw(n) > MIN_DELAY:
        assert s.raw(n + 1) == pytest.approx(2 * s.raw(n))


@given(schedules())
def test_raw_delay_reaches_the_cap(s: Schedule) -> None:
    assert s.raw(10_000) == max(s.cap, MIN_DELAY)
    assert s.raw(-5) == s.raw(0)  # a negative retry count is treated as the first attempt


@given(schedules(), attempts, jitters)
def test_jittered_delay_is_within_half_to_full_raw_and_never_zero(
    s: Schedule, n: int, jitter: float
) -> None:
    raw = s.raw(n)
    delay = s.delay(n, jitter)
    assert raw / 2 <= delay <= raw
    assert delay >= MIN_DELAY > 0


@given(schedules(), attempts, st.floats(allow_nan=True))
def test_any_jitter_input_even_nonsense_gives_a_sane_delay(
    s: Schedule, n: int, jitter: float
) -> None:
    delay = s.delay(n, jitter)
    assert math.isfinite(delay)
    assert MIN_DELAY <= delay <= max(s.cap, MIN_DELAY)


@given(schedules(min_base=2.0), attempts, jitters, jitters)
def test_jitter_spreads_retries(s: Schedule, n: int, j1: float, j2: float) -> None:
    assume(abs(j1 - j2) > 0.01)
    assert s.delay(n, j1) != s.delay(n, j2)
    assert (s.delay(n, j1) < s.delay(n, j2)) == (j1 < j2)


@given(schedules(), attempts, jitters, st.floats(min_value=0, max_value=3600, allow_nan=False))
def test_retry_after_is_a_floor_not_a_cap(s: Schedule, n: int, j: float, floor: float) -> None:
    delay = s.delay(n, j, at_least=floor)
    assert delay >= floor
    assert delay == max(s.delay(n, j), floor)


# --- URLs and signatures ----------------------------------------------------------------------

any_text = st.text(max_size=40)
bases = st.sampled_from(
    [
        "https://virtualserver.kr-west1.e.samsungsdscloud.com",
        "https://virtualserver.kr-west1.e.samsungsdscloud.com/",
        "http://127.0.0.1:8484//",
        "https://proxy.example:8443/scp//virtualserver/",
    ]
)
queries = st.none() | st.dictionaries(any_text, any_text, max_size=3)


@given(bases, any_text, queries)
def test_built_urls_never_contain_a_double_slash_in_the_path(
    base: str, server_id: str, query: dict[str, str] | None
) -> None:
    url = endpoints.build_url(base, "v1", "servers", server_id, query=query)
    parts = urlsplit(url)
    assert "//" not in parts.path
    assert parts.path.startswith(urlsplit(endpoints.normalise_base(base)).path + "/v1/servers")
    assert not parts.fragment
    # the id is one path segment: it cannot climb out of /v1/servers or add a query
    tail = parts.path.split("/v1/servers", 1)[1]
    assert tail.count("/") <= 1
    assert ("?" in url) == bool(query)


keys = st.text(
    alphabet=st.characters(min_codepoint=0x21, max_codepoint=0x7E), min_size=1, max_size=30
)


@given(bases, any_text, queries, keys, keys, st.sampled_from(["DELETE", "GET"]), st.data())
def test_the_emulators_gateway_accepts_every_signature_the_operator_makes(
    base: str,
    server_id: str,
    query: dict[str, str] | None,
    access_key: str,
    secret_key: str,
    method: str,
    data: st.DataObject,
) -> None:
    """The operator's signer and the emulator's own, independent verifier agree on any URL."""
    account = data.draw(st.sampled_from(["", "0e5a9ad5c1a14c2f8f4a6a7d3b2c1e00"]))
    url = endpoints.build_url(base, "v1", "servers", server_id, query=query)
    now = 1_700_000_000.0
    headers = signing.signed_headers(
        method=method,
        url=url,
        access_key=access_key,
        secret_key=secret_key,
        account_id=account,
        api_version="1.3",
        language="en-US",
        clock=lambda: now,
    )
    assert headers["Scp-Signature"] == emulator_signing.compute_signature(
        secret_key=secret_key,
        method=method,
        url=url,
        timestamp=headers["Scp-Timestamp"],
        access_key=access_key,
        account_id=account,
    )
    result = authenticate(
        method=method,
        path=urlsplit(url).path,
        candidate_urls=[url],
        headers={**headers, "Scp-AccountId": account},
        credentials={access_key: Credential(access_key=access_key, secret_key=secret_key)},
        now_ms=int(now * 1000) + 250,
        window_seconds=300,
    )
    assert result.ok, result


@pytest.fixture(scope="module")
def live_emulator() -> Iterator[ThreadedEmulator]:
    with ThreadedEmulator(EmulatorConfig()) as emu:
        yield emu


# The emulator's catch-all route (``/{tail:.*}``) does not match a path whose decoded form holds
# a line break, so aiohttp answers those itself; keep them out of this end-to-end property.
routable_text = st.text(
    alphabet=st.characters(exclude_characters="\n\r\x85\u2028\u2029"), max_size=40
)


@settings(max_examples=30, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(server_id=routable_text)
def test_any_server_id_sent_over_http_carries_a_signature_the_emulator_accepts(
    live_emulator: ThreadedEmulator, tmp_path: Path, server_id: str
) -> None:
    """Through real HTTP: what the client signs is byte for byte what the emulator receives.

    The client refuses (without sending) a URL that httpx would rewrite, such as a ``..``
    segment; everything it does send is correctly signed, whatever SCP then says about the id.
    """
    live_emulator.clear_requests()
    client = ScpClient(
        credentials=CredentialsProvider(
            access_key=SecretStr(live_emulator.access_key),
            secret_key=SecretStr(live_emulator.secret_key),
            directory=None,
            home=tmp_path,
        ),
        base_url=lambda region: live_emulator.url,
        api_version="1.3",
        timeout=10,
    )

    async def call() -> Outcome:
        try:
            return await client.delete_server(server_id)
        finally:
            await client.aclose()

    outcome = asyncio.run(call())
    sent = live_emulator.requests(method="DELETE")
    if not sent:
        assert outcome.kind is Verdict.REJECTED
        assert outcome.detail == "internal: URL changed after signing"
        return
    assert len(sent) == 1
    assert sent[0]["signature_valid"] is True, (server_id, sent[0])
    assert outcome.kind is not Verdict.UNAUTHORIZED
    assert outcome.kind in (
        Verdict.GONE,
        Verdict.FORBIDDEN,
        Verdict.REJECTED,
    )  # unknown id or route


@given(st.sampled_from(["/", "?", "#", "..", "%2F", "a/../b", " ", "\x00", "é"]))
def test_path_tricks_in_a_server_id_stay_inside_one_segment(trick: str) -> None:
    url = endpoints.build_url("https://scp.test", "v1", "servers", trick)
    path = urlsplit(url).path
    assert path.startswith("/v1/servers")
    assert path.count("/") <= 3
    if trick not in ("/", ".."):  # "/" strips to nothing; ".." the client refuses to send
        assert httpx.URL(url).path.startswith("/v1/servers/")


# --- the shared-server guard: facts from the API server into the table -----------------------

PEER = st.fixed_dictionaries(
    {
        "uid": st.sampled_from(["u1", "u2", "u3", "u4"]),
        "namespace": st.sampled_from(["team-a", "team-b"]),
        "terminating": st.booleans(),
        "finalizer": st.booleans(),
        "policy": st.sampled_from(["Delete", "Orphan", "Retain", None]),
        "protection": st.sampled_from([None, "true", "false", "yes", "1", "on", "enabled", ""]),
        "spelling": st.sampled_from([str.lower, str.upper]),
    }
)


def peer_object(p: dict[str, Any]) -> dict[str, Any]:
    meta: dict[str, Any] = {"uid": p["uid"], "namespace": p["namespace"], "name": p["uid"]}
    if p["terminating"]:
        meta["deletionTimestamp"] = "2026-12-03T00:00:00Z"
    if p["finalizer"]:
        meta["finalizers"] = [FINALIZER]
    if p["protection"] is not None:
        meta["annotations"] = {PROTECTION_ANNOTATION: p["protection"]}
    spec: dict[str, Any] = {"serverId": p["spelling"](SID)}
    if p["policy"] is not None:
        spec["deletionPolicy"] = p["policy"]
    return {"metadata": meta, "spec": spec}


@given(situations(), st.lists(PEER, max_size=4, unique_by=lambda p: p["uid"]))
def test_a_server_named_by_a_live_protected_or_orphan_object_is_never_sent_a_delete(
    s: Situation, peers: list[dict[str, Any]]
) -> None:
    """issue 9's invariant: whatever the other objects naming the server look like, a DELETE is
    decided only when none of them is live, protected or keeping the server (Orphan)."""
    listed = [peer_object(p) for p in peers]
    s = dataclasses.replace(s, outcome=None, sharers=blocking_sharers("me", SID, listed))
    d = decide(s)
    if d.action is not Action.CALL_DELETE:
        return
    assert s.policy is DeletionPolicy.DELETE
    assert not s.protected
    for p in peers:
        if p["terminating"] and not p["finalizer"]:
            continue  # already released: it no longer holds the server
        assert p["terminating"], p  # live
        assert not protection(peer_object(p)["metadata"].get("annotations")).protected, p
        assert p["policy"] in ("Delete", None), p  # Orphan or an unknown policy keeps it
