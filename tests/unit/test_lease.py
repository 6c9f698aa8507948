"""The Lease that keeps a second operator instance from running (scp_operator.lease).

The pure parts (names, expiry, clocks, the waiting message) are tested directly; the keeper runs
against an in-memory Lease API with the real optimistic-concurrency rules (resourceVersion, 409)
and a fake clock whose ``sleep`` moves time forward, so minutes of waiting take milliseconds.
"""

from __future__ import annotations

import asyncio
import copy
import datetime
import email.utils
import logging
import os
import signal
from collections.abc import AsyncIterator, Callable
from typing import Any

import pytest
from pydantic import ValidationError

from scp_operator import lease, sharding
from scp_operator.lease import (
    WHY_WAITING,
    Answer,
    LeaseConflict,
    LeaseError,
    LeaseKeeper,
    LeaseRecord,
    LeaseWrite,
    ServerClock,
    effective_lease_name,
    estimate_offset,
    is_expired,
    make_identity,
    micro_time,
    parse_micro_time,
    waiting_message,
    watched_namespaces,
)
from scp_operator.settings import OperatorSettings

NS, NAME = "kube-system", "scp-operator"
T0 = 1_800_000_000.0  # a wall-clock time (s since the epoch)


# ---- names -----------------------------------------------------------------------------------


def test_cluster_wide_instances_share_the_configured_name() -> None:
    assert effective_lease_name("scp-operator", []) == "scp-operator"
    assert effective_lease_name("scp-operator", [" ", ""]) == "scp-operator"


def test_namespaced_name_is_the_hash_the_chart_computes() -> None:
    # echo -n "team-a,team-b" | sha256sum  ->  183efbe2b2...  (helm: sortAlpha|join|sha256sum)
    assert effective_lease_name("scp-operator", ["team-b", "team-a"]) == (
        "scp-operator-ns-183efbe2b2"
    )


@pytest.mark.parametrize(
    "spelling",
    [["team-a", "team-b"], ["team-b", "team-a"], ["team-a,team-b"], ["team-b, team-a", "team-a"]],
)
def test_the_same_namespaces_name_the_same_lease_however_spelt(spelling: list[str]) -> None:
    assert effective_lease_name("x", spelling) == effective_lease_name("x", ["team-a", "team-b"])


def test_different_namespaces_get_different_leases() -> None:
    names = {
        effective_lease_name("x", ns)
        for ns in (["team-a"], ["team-b"], ["team-a", "team-b"], ["team-a", "team-c"], [])
    }
    assert len(names) == 5


@pytest.mark.parametrize(
    ("argv", "expected"),
    [
        (["scp-operator", "run", "--standalone", "--namespace=b", "-n", "a"], ["a", "b"]),
        (["scp-operator", "run", "--namespace", "a,b", "--verbose"], ["a", "b"]),
        (["scp-operator", "run", "-vna", "--liveness=http://0.0.0.0:8080/healthz"], ["a"]),
        (["scp-operator", "run", "--all-namespaces"], []),
        (["scp-operator", "run", "--standalone"], []),
        # a value that merely looks like the flag is not one
        (["scp-operator", "run", "--log-refkey", "-n", "--namespace=x"], ["x"]),
        (["/x/scp_operator/__main__.py", "run", "-n", "team-a"], ["team-a"]),
        (["pytest", "-n", "auto"], []),  # not an operator command line at all
    ],
)
def test_watched_namespaces_are_read_with_kopfs_own_parser(
    argv: list[str], expected: list[str]
) -> None:
    assert watched_namespaces(argv, environ={}) == expected


def test_kopfs_legacy_namespace_variable_counts_too() -> None:
    argv = ["scp-operator", "run", "-n", "a"]
    assert watched_namespaces(argv, environ={"KOPF_RUN_NAMESPACE": "b"}) == ["a", "b"]


def test_identity_names_host_process_and_this_start() -> None:
    assert make_identity("pod-7f9c", 42, "a1b2c3") == "pod-7f9c/42/a1b2c3"
    host, pid, token = make_identity().split("/")
    assert host
    assert int(pid) > 0
    assert len(token) == 6
    assert make_identity() != make_identity()  # a restart in the same pod is someone else


# ---- settings --------------------------------------------------------------------------------


def test_lease_settings_default_to_one_cluster_wide_lease_in_kube_system() -> None:
    settings = OperatorSettings()
    assert (settings.lease_name, settings.lease_namespace) == ("scp-operator", "kube-system")
    assert settings.lease_duration == 15


def test_lease_settings_come_from_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SCP_OPERATOR_LEASE_NAME", "")
    monkeypatch.setenv("SCP_OPERATOR_LEASE_NAMESPACE", "default")
    monkeypatch.setenv("SCP_OPERATOR_LEASE_DURATION", "3")
    settings = OperatorSettings()
    assert (settings.lease_name, settings.lease_namespace, settings.lease_duration) == (
        "",
        "default",
        3,
    )


@pytest.mark.parametrize(
    "bad",
    [
        {"lease_name": "Scp_Operator"},
        {"lease_name": "x" * 240},
        {"lease_namespace": ""},
        {"lease_namespace": "kube.system"},
        {"lease_duration": 1},
        {"lease_duration": 2.5},
    ],
)
def test_bad_lease_settings_are_refused(bad: dict[str, Any]) -> None:
    with pytest.raises(ValidationError):
        OperatorSettings(**bad)


# ---- times and expiry ------------------------------------------------------------------------


def record(
    holder: str = "other/1/abcdef",
    *,
    renewed: float | None = T0,
    duration: int | None = 15,
    version: str = "7",
) -> LeaseRecord:
    return LeaseRecord(NS, NAME, holder, duration, renewed, renewed, 3, version)


def test_micro_times_round_trip_and_always_carry_a_fraction() -> None:
    # the API server's MicroTime needs the six-digit fraction isoformat() drops when it is zero
    assert micro_time(T0).microsecond == 1
    assert micro_time(T0 + 0.25).isoformat().endswith(".250000+00:00")
    assert parse_micro_time("2027-01-15T08:00:00.000000Z") == parse_micro_time(
        "2027-01-15T08:00:00+00:00"
    )
    assert parse_micro_time(micro_time(T0 + 0.5).isoformat()) == T0 + 0.5
    assert parse_micro_time("yesterday") is None
    assert parse_micro_time(None) is None


def test_a_lease_reads_from_its_json() -> None:
    got = LeaseRecord.from_object(
        {
            "metadata": {"name": NAME, "namespace": NS, "resourceVersion": "42"},
            "spec": {
                "holderIdentity": "pod/1/abcdef",
                "leaseDurationSeconds": 15,
                "renewTime": "2027-01-15T08:00:00.500000Z",
                "leaseTransitions": 2,
            },
        }
    )
    assert (got.ref, got.holder, got.duration, got.transitions) == (
        f"{NS}/{NAME}",
        "pod/1/abcdef",
        15,
        2,
    )
    assert got.resource_version == "42"
    assert got.renew_time == parse_micro_time("2027-01-15T08:00:00.5Z")
    assert got.acquire_time is None
    empty = LeaseRecord.from_object({"metadata": {"name": NAME}, "spec": {}})
    assert (empty.holder, empty.duration, empty.renew_time) == ("", None, None)


def expired(rec: LeaseRecord, *, now: float, unchanged_for: float = 0.0) -> bool:
    return is_expired(
        rec, server_now=now, unchanged_for=unchanged_for, tolerance=15.0, default_duration=30.0
    )


def test_a_lease_held_by_nobody_is_free() -> None:
    assert expired(record(holder=""), now=T0)


def test_a_freshly_renewed_lease_is_not_expired() -> None:
    assert not expired(record(), now=T0 + 5)


def test_a_stale_renew_time_counts_only_beyond_duration_plus_tolerance() -> None:
    assert not expired(record(), now=T0 + 15 + 15)  # within the skew tolerance
    assert expired(record(), now=T0 + 15 + 15.1)


def test_watching_it_unchanged_for_its_duration_proves_expiry_whatever_the_clocks() -> None:
    # renewTime is in our future (the holder's clock runs ahead): only watching can tell
    ahead = record(renewed=T0 + 600)
    assert not expired(ahead, now=T0, unchanged_for=15.0)
    assert expired(ahead, now=T0, unchanged_for=15.1)


def test_a_lease_without_duration_or_renew_time_is_judged_conservatively() -> None:
    no_duration = record(duration=None)
    assert not expired(no_duration, now=T0, unchanged_for=29)  # our own duration (30) counts
    assert expired(no_duration, now=T0, unchanged_for=31)
    never_renewed = record(renewed=None)
    assert not expired(never_renewed, now=T0 + 10_000)
    assert expired(never_renewed, now=T0 + 10_000, unchanged_for=16)


def test_the_waiting_message_names_the_lease_the_holder_and_why() -> None:
    message = waiting_message(record(), server_now=T0 + 4.2, waited=61)
    assert f"Lease {NS}/{NAME} is held by other/1/abcdef" in message
    assert "last renewed 4s ago" in message
    assert "lease 15s" in message
    assert WHY_WAITING in message
    assert "waiting for 61s" in message
    assert WHY_WAITING == (
        "another scp-operator instance holds it; this one waits until it stops or its lease expires"
    )


def http_date(epoch: float) -> str:
    return email.utils.format_datetime(datetime.datetime.fromtimestamp(epoch, datetime.UTC), True)


def test_the_server_clock_follows_the_date_header() -> None:
    assert estimate_offset(None, T0, T0) is None
    assert estimate_offset("not a date", T0, T0) is None
    # the server is 10 minutes ahead; its Date is truncated to the second
    offset = estimate_offset(http_date(T0 + 600), T0 - 0.1, T0 + 0.1)
    assert offset is not None
    assert abs(offset - 600) <= 1.0
    clock = ServerClock(wall=lambda: T0)
    clock.observe(http_date(T0 + 600), T0, T0)
    assert abs(clock.now() - (T0 + 600)) <= 1.0


def test_offsets_within_the_date_resolution_are_ignored() -> None:
    clock = ServerClock(wall=lambda: T0 + 0.7)
    clock.observe(http_date(T0), T0 + 0.7, T0 + 0.7)
    assert clock.offset == 0.0
    assert clock.now() == T0 + 0.7


# ---- the keeper against an in-memory API -----------------------------------------------------


class FakeTime:
    """Monotonic and wall clocks that only ``sleep`` (or a test) moves."""

    def __init__(self) -> None:
        self.mono = 1000.0
        self.wall = T0
        self.slept: list[float] = []

    def advance(self, seconds: float) -> None:
        self.mono += seconds
        self.wall += seconds

    async def sleep(self, seconds: float) -> None:
        self.slept.append(seconds)
        self.advance(seconds)
        await asyncio.sleep(0)


def fmt(epoch: float) -> str:
    return datetime.datetime.fromtimestamp(epoch, datetime.UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


class FakeLeaseApi:
    """One Lease with the API server's rules: resourceVersion bumps, 409 on a stale write.

    ``server_skew`` is how far the server's clock (its Date header) is from the fake wall clock.
    ``on_read``/``before_write`` let a test play another instance between the keeper's calls;
    ``errors`` queues exceptions per method.
    """

    def __init__(self, time: FakeTime, server_skew: float = 0.0) -> None:
        self.time = time
        self.server_skew = server_skew
        self.spec: dict[str, Any] | None = None
        self.version = 0
        self.writes: list[LeaseWrite] = []
        self.errors: dict[str, list[LeaseError]] = {
            "read": [],
            "create": [],
            "replace": [],
            "list": [],
        }
        self.on_read: Callable[[], None] | None = None
        self.before_write: Callable[[], None] | None = None
        self.closed = 0
        self.name = NAME  # the one Lease this fake keeps
        self.annotations: dict[str, str] = {}
        self.others: list[dict[str, Any]] = []  # other Leases of the namespace, for list()
        self.on_list: Callable[[], None] | None = None
        self.lists = 0

    def server_now(self) -> float:
        return self.time.wall + self.server_skew

    def put(self, holder: str, *, renewed: float | None = None, duration: int = 15) -> None:
        """Another instance writes the Lease (by the server's clock unless ``renewed``)."""
        when = self.server_now() if renewed is None else renewed
        transitions = (self.spec or {}).get("leaseTransitions", 0)
        self.spec = {
            "holderIdentity": holder,
            "leaseDurationSeconds": duration,
            "acquireTime": fmt(when),
            "renewTime": fmt(when),
            "leaseTransitions": transitions,
        }
        self.version += 1

    @property
    def stored(self) -> dict[str, Any]:
        assert self.spec is not None, "no Lease stored"
        return self.spec

    @property
    def holder(self) -> str | None:
        return None if self.spec is None else self.spec["holderIdentity"]

    def _answer(self) -> Answer:
        assert self.spec is not None
        obj = {
            "metadata": {
                "name": self.name,
                "namespace": NS,
                "resourceVersion": str(self.version),
                "annotations": dict(self.annotations),
            },
            "spec": copy.deepcopy(self.spec),
        }
        return Answer(obj, http_date(self.server_now()))

    def _fail(self, method: str) -> None:
        if self.errors[method]:
            raise self.errors[method].pop(0)

    async def read(self, namespace: str, name: str) -> Answer | None:
        assert (namespace, name) == (NS, self.name)
        if self.on_read is not None:
            self.on_read()
        self._fail("read")
        return None if self.spec is None else self._answer()

    def _store(self, lease: LeaseWrite) -> Answer:
        assert lease.name == self.name
        self.writes.append(lease)
        self.annotations = dict(lease.annotations)
        self.spec = {
            "holderIdentity": lease.holder,
            "leaseDurationSeconds": lease.duration,
            "acquireTime": fmt(lease.acquire_time),
            "renewTime": fmt(lease.renew_time),
            "leaseTransitions": lease.transitions,
        }
        self.version += 1
        return self._answer()

    async def create(self, lease: LeaseWrite) -> Answer:
        if self.before_write is not None:
            self.before_write()
        self._fail("create")
        if self.spec is not None:
            raise LeaseConflict(409, "HTTP 409: already exists")
        return self._store(lease)

    async def replace(self, lease: LeaseWrite) -> Answer:
        if self.before_write is not None:
            self.before_write()
        self._fail("replace")
        if self.spec is None:
            raise LeaseError(404, "HTTP 404: not found")
        if lease.resource_version != str(self.version):
            raise LeaseConflict(409, "HTTP 409: the object has been modified")
        return self._store(lease)

    async def list(self, namespace: str) -> Answer:
        assert namespace == NS
        self.lists += 1
        if self.on_list is not None:
            self.on_list()
        self._fail("list")
        items = [copy.deepcopy(o) for o in self.others]
        if self.spec is not None:
            items.append(self._answer().obj)
        return Answer({"items": items}, http_date(self.server_now()))

    async def aclose(self) -> None:
        self.closed += 1


@pytest.fixture
def clock() -> FakeTime:
    return FakeTime()


@pytest.fixture
def api(clock: FakeTime) -> FakeLeaseApi:
    return FakeLeaseApi(clock)


@pytest.fixture
async def keepers(clock: FakeTime, api: FakeLeaseApi) -> AsyncIterator[Callable[..., LeaseKeeper]]:
    """Factory of keepers on the fake API and clock; all released at the end."""
    made: list[LeaseKeeper] = []
    lost: list[str] = []

    def make(identity: str = "me/1/000001", **kwargs: Any) -> LeaseKeeper:
        keeper = LeaseKeeper(
            namespace=NS,
            name=kwargs.pop("name", NAME),
            duration=kwargs.pop("duration", 15),
            identity=identity,
            api=api,
            on_lost=kwargs.pop("on_lost", lost.append),
            clock=ServerClock(wall=lambda: clock.wall),
            monotonic=lambda: clock.mono,
            sleep=clock.sleep,
            **kwargs,
        )
        made.append(keeper)
        return keeper

    yield make
    for keeper in made:
        await keeper.release()


async def run_until(condition: Callable[[], bool], steps: int = 10_000) -> None:
    """Let the event loop (and so the fake clock) run until ``condition`` holds."""
    for _ in range(steps):
        if condition():
            return
        await asyncio.sleep(0)
    raise AssertionError("condition never held")


async def test_a_missing_lease_is_created_and_held(
    keepers: Callable[..., LeaseKeeper], api: FakeLeaseApi, clock: FakeTime
) -> None:
    keeper = keepers()
    await keeper.acquire()
    assert keeper.held
    assert api.holder == "me/1/000001"
    assert api.stored["leaseDurationSeconds"] == 15
    assert clock.slept == []  # nothing to wait for


async def test_renewals_keep_the_lease_fresh(
    keepers: Callable[..., LeaseKeeper], api: FakeLeaseApi, clock: FakeTime
) -> None:
    keeper = keepers()
    await keeper.acquire()
    await run_until(lambda: len(api.writes) >= 4)
    renewals = api.writes[1:4]
    assert [w.holder for w in renewals] == ["me/1/000001"] * 3
    assert [w.renew_time - T0 for w in renewals] == pytest.approx([5.0, 10.0, 15.0])
    assert {w.acquire_time for w in api.writes[:4]} == {api.writes[0].acquire_time}
    assert not keeper.lost.is_set()


async def test_a_second_instance_waits_says_why_and_takes_over_once_renewals_stop(
    keepers: Callable[..., LeaseKeeper],
    api: FakeLeaseApi,
    clock: FakeTime,
    caplog: pytest.LogCaptureFixture,
) -> None:
    api.put("pod-a/7/abcdef")
    began = clock.mono
    renewals: list[float] = []

    def other_instance_renews() -> None:
        if clock.mono < began + 65:
            api.put("pod-a/7/abcdef")
            renewals.append(clock.mono)

    api.on_read = other_instance_renews
    caplog.set_level(logging.INFO, logger="scp_operator.lease")
    await keepers().acquire()

    assert api.holder == "me/1/000001"
    # taken over more than one duration after the last renewal it saw, within one more poll
    assert renewals[-1] + 15 < clock.mono <= renewals[-1] + 15 + 5
    assert api.stored["leaseTransitions"] == 1
    warnings = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert len(warnings) == 3  # at 0, 30 and 60 s: at most every 30 s
    assert f"Lease {NS}/{NAME} is held by pod-a/7/abcdef" in warnings[0]
    assert WHY_WAITING in warnings[0]
    assert "taken over from pod-a/7/abcdef (expired)" in caplog.records[-1].getMessage()


async def test_a_lease_abandoned_long_ago_is_taken_at_once(
    keepers: Callable[..., LeaseKeeper], api: FakeLeaseApi, clock: FakeTime
) -> None:
    api.put("crashed/1/abcdef", renewed=clock.wall - 3600)
    await keepers().acquire()
    assert api.holder == "me/1/000001"
    assert clock.slept == []


async def test_a_fast_local_clock_does_not_steal_a_live_lease(
    keepers: Callable[..., LeaseKeeper], api: FakeLeaseApi, clock: FakeTime
) -> None:
    """This host's clock is 10 minutes ahead; the API server's Date header corrects it."""
    api.server_skew = -600.0
    api.put("pod-a/7/abcdef")
    api.on_read = lambda: api.put("pod-a/7/abcdef") if clock.mono < 1100 else None
    await keepers().acquire()
    assert clock.mono >= 1100 + 15  # only after the holder stopped renewing


async def test_losing_a_race_for_the_lease_means_waiting_again(
    keepers: Callable[..., LeaseKeeper], api: FakeLeaseApi, clock: FakeTime
) -> None:
    api.put("crashed/1/abcdef", renewed=clock.wall - 3600)

    def a_racer_writes_first() -> None:
        api.before_write = None
        api.put("racer/2/abcdef")

    api.before_write = a_racer_writes_first
    api.on_read = lambda: api.put("racer/2/abcdef") if clock.mono < 1050 else None
    keeper = keepers()
    await keeper.acquire()
    assert clock.mono > 1050  # it waited for the racer to stop
    assert api.holder == "me/1/000001"


async def test_api_errors_while_taking_the_lease_are_explained_and_retried(
    keepers: Callable[..., LeaseKeeper],
    api: FakeLeaseApi,
    clock: FakeTime,
    caplog: pytest.LogCaptureFixture,
) -> None:
    api.errors["read"] = [LeaseError(403, "HTTP 403: leases is forbidden")] * 3
    api.errors["create"] = [LeaseError(404, 'HTTP 404: namespaces "kube-system" not found')]
    caplog.set_level(logging.WARNING, logger="scp_operator.lease")
    await keepers().acquire()
    assert api.holder == "me/1/000001"
    text = caplog.text
    assert "get, create and update on leases (coordination.k8s.io) in namespace kube-system" in (
        text
    )
    assert "This instance handles nothing until it holds the Lease" in text
    assert clock.slept == [5.0] * 4


async def test_another_holder_seen_at_renewal_means_lost(
    keepers: Callable[..., LeaseKeeper], api: FakeLeaseApi
) -> None:
    reasons: list[str] = []
    keeper = keepers(on_lost=reasons.append)
    await keeper.acquire()
    api.put("thief/3/abcdef")
    await run_until(keeper.lost.is_set)
    assert reasons == [f"Lease {NS}/{NAME} is now held by thief/3/abcdef"]
    assert not keeper.held
    await keeper.release()
    assert api.holder == "thief/3/abcdef"  # someone else's Lease is left alone


async def test_renewals_failing_for_two_thirds_of_the_duration_mean_lost(
    keepers: Callable[..., LeaseKeeper], api: FakeLeaseApi, clock: FakeTime
) -> None:
    reasons: list[str] = []
    keeper = keepers(on_lost=reasons.append)
    await keeper.acquire()
    acquired = clock.mono
    api.errors["replace"] = [LeaseError(None, "ConnectionRefusedError")] * 100
    await run_until(keeper.lost.is_set)
    assert 10 < clock.mono - acquired <= 11  # 15 s lease: lost after 10 s, 5 s before expiry
    assert "not renewed for" in reasons[0]


async def test_a_late_but_successful_renewal_is_not_a_loss(
    keepers: Callable[..., LeaseKeeper], api: FakeLeaseApi, clock: FakeTime
) -> None:
    """A stalled event loop renews late; nobody took over (the resourceVersion says so)."""
    keeper = keepers()
    await keeper.acquire()
    clock.advance(40)  # far beyond the lease duration
    await run_until(lambda: len(api.writes) >= 3)
    assert not keeper.lost.is_set()


async def test_the_lease_deleted_under_the_holder_means_lost(
    keepers: Callable[..., LeaseKeeper], api: FakeLeaseApi
) -> None:
    keeper = keepers()
    await keeper.acquire()
    api.spec = None
    await run_until(keeper.lost.is_set)
    assert keeper.lost_reason == f"Lease {NS}/{NAME} was deleted"


async def test_release_lets_the_next_instance_start_at_once(
    keepers: Callable[..., LeaseKeeper], api: FakeLeaseApi, clock: FakeTime
) -> None:
    first = keepers()
    await first.acquire()
    await first.release()
    assert api.holder == ""
    assert api.stored["leaseDurationSeconds"] == 1
    clock.slept.clear()
    await keepers("next/2/000002").acquire()
    assert api.holder == "next/2/000002"
    assert [s for s in clock.slept if s] == []


async def test_starting_twice_in_one_process_reuses_the_held_lease(api: FakeLeaseApi) -> None:
    """Kopf retries a startup hook that failed after taking the Lease: no self-deadlock."""
    settings = OperatorSettings(lease_namespace=NS, lease_name=NAME)
    first = await lease.start(settings, [], on_lost=lambda _reason: None, api=api)
    assert first is not None
    try:
        writes = len(api.writes)
        again = await asyncio.wait_for(lease.start(settings, [], api=api), timeout=5)
        assert again is first
        assert len(api.writes) == writes
        assert api.holder == lease.process_identity()
    finally:
        await first.release()
    assert api.holder == ""
    # released: a later start takes it again with a keeper of its own
    fresh = await lease.start(settings, [], on_lost=lambda _reason: None, api=api)
    assert fresh is not None
    assert fresh is not first
    await fresh.release()


def test_the_identity_is_one_per_process() -> None:
    assert lease.process_identity() == lease.process_identity()
    assert lease.process_identity().split("/")[1] == str(os.getpid())


async def test_start_returns_nothing_when_the_lease_is_disabled(
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.WARNING, logger="scp_operator.lease")
    assert await lease.start(OperatorSettings(lease_name=""), ["a"]) is None
    assert "unsafe outside tests" in caplog.text


def test_stop_process_sends_sigterm_to_its_own_process(monkeypatch: pytest.MonkeyPatch) -> None:
    sent: list[tuple[int, int]] = []
    monkeypatch.setattr(os, "kill", lambda pid, sig: sent.append((pid, sig)))
    lease.stop_process()
    assert sent == [(os.getpid(), signal.SIGTERM)]


async def test_a_keeper_closes_the_connection_it_made_and_not_one_it_was_given(
    clock: FakeTime, api: FakeLeaseApi
) -> None:
    """Its own Kubernetes client is closed when the Lease is given back; a caller's is not."""
    given = LeaseKeeper(namespace=NS, name=NAME, duration=15, identity="me/1/000001", api=api)
    await given.release()
    assert api.closed == 0
    own = LeaseKeeper(namespace=NS, name=NAME, duration=15, identity="me/1/000001")
    assert isinstance(own.api, lease.KubeLeaseApi)
    own.api = api  # as if it had made this one itself
    own.clock = ServerClock(wall=lambda: clock.wall)
    await own.acquire()
    await own.release()
    assert api.holder == ""  # given back first ...
    assert api.closed == 1  # ... then closed


async def test_a_keeper_cancelled_while_waiting_closes_its_connection(
    clock: FakeTime, api: FakeLeaseApi
) -> None:
    """The operator stopped while another instance held the Lease: no pool left open."""
    api.put("other/9/000009")
    keeper = LeaseKeeper(namespace=NS, name=NAME, duration=15, identity="me/1/000001")
    keeper.api = api  # as if it had made this one itself
    keeper.clock = ServerClock(wall=lambda: clock.wall)
    read = asyncio.Event()
    api.on_read = read.set
    waiting = asyncio.ensure_future(keeper.acquire())
    await read.wait()  # it has seen the other holder and waits
    waiting.cancel()
    with pytest.raises(asyncio.CancelledError):
        await waiting
    assert api.closed == 1
    assert api.holder == "other/9/000009"


# ---- shards: one Lease each, and no overlap with another plan ---------------------------------


def other_lease(
    name: str, holder: str, shard_range: str | None, *, renewed: float, version: int = 1
) -> dict[str, Any]:
    """Another instance's Lease, as the API server lists it."""
    annotations = {} if shard_range is None else {lease.RANGE_ANNOTATION: shard_range}
    return {
        "metadata": {
            "name": name,
            "namespace": NS,
            "resourceVersion": str(version),
            "annotations": annotations,
        },
        "spec": {
            "holderIdentity": holder,
            "leaseDurationSeconds": 15,
            "renewTime": fmt(renewed),
            "acquireTime": fmt(renewed),
        },
    }


def keep_renewing(api: FakeLeaseApi, index: int) -> Callable[[], None]:
    """``api.others[index]`` is renewed before every list: its holder is alive."""

    def renew() -> None:
        other = api.others[index]
        other["metadata"]["resourceVersion"] = str(int(other["metadata"]["resourceVersion"]) + 1)
        other["spec"]["renewTime"] = fmt(api.server_now())

    return renew


OLD_SHARD_1_OF_2 = "0x8000000000000000-0x10000000000000000"


async def test_each_shard_takes_its_own_lease_and_records_its_range(
    api: FakeLeaseApi, clock: FakeTime
) -> None:
    settings = OperatorSettings(lease_namespace=NS, lease_name=NAME, shards=3, shard_index=1)
    api.name = f"{NAME}-shard-1-of-3"
    keeper = await lease.start(settings, [], on_lost=lambda _reason: None, api=api)
    assert keeper is not None
    try:
        assert keeper.name == f"{NAME}-shard-1-of-3"
        assert api.annotations == {lease.RANGE_ANNOTATION: "0x5555555555555555-0xaaaaaaaaaaaaaaaa"}
        assert api.lists >= 1  # it looked for other plans before becoming active
    finally:
        await keeper.release()


async def test_a_shard_waits_while_a_live_lease_of_another_plan_overlaps_and_says_so(
    keepers: Callable[..., LeaseKeeper],
    api: FakeLeaseApi,
    clock: FakeTime,
    caplog: pytest.LogCaptureFixture,
) -> None:
    """An upgrade from 2 to 3 shards: new shard 1 of 3 overlaps old shard 1 of 2."""
    caplog.set_level(logging.WARNING, logger="scp_operator.lease")
    api.name = f"{NAME}-shard-1-of-3"
    api.others = [
        other_lease(f"{NAME}-shard-1-of-2", "old/1/aaaaaa", OLD_SHARD_1_OF_2, renewed=clock.wall)
    ]
    api.on_list = keep_renewing(api, 0)
    keeper = keepers(name=f"{NAME}-shard-1-of-3")
    await keeper.acquire()
    own = sharding.plan(3, 1).range
    waiting = asyncio.ensure_future(keeper.wait_alone(NAME, own, strict=True))
    await run_until(lambda: api.lists >= 10)
    assert not waiting.done()  # ten looks, the old holder alive each time: still waiting
    assert f"{NS}/{NAME}-shard-1-of-2" in caplog.text
    assert "old/1/aaaaaa" in caplog.text
    assert lease.WHY_WAITING_FOR_PLAN in caplog.text
    api.on_list = None
    api.others[0]["spec"]["holderIdentity"] = ""  # the old process stopped and gave it back
    await asyncio.wait_for(waiting, timeout=5)


async def test_an_overlapping_lease_nobody_renews_stops_counting_after_its_duration(
    keepers: Callable[..., LeaseKeeper], api: FakeLeaseApi, clock: FakeTime
) -> None:
    api.others = [
        other_lease(f"{NAME}-shard-1-of-2", "killed/1/aaaaaa", OLD_SHARD_1_OF_2, renewed=clock.wall)
    ]
    keeper = keepers()
    await keeper.acquire()
    began = clock.mono
    await asyncio.wait_for(keeper.wait_alone(NAME, sharding.WHOLE, strict=True), timeout=5)
    assert clock.mono - began > 15  # it waited out the old holder's lease duration


async def test_leases_of_another_plan_that_do_not_overlap_and_other_operators_are_ignored(
    keepers: Callable[..., LeaseKeeper], api: FakeLeaseApi, clock: FakeTime
) -> None:
    api.name = f"{NAME}-shard-0-of-3"
    api.others = [
        other_lease(f"{NAME}-shard-1-of-2", "old/1/a", OLD_SHARD_1_OF_2, renewed=clock.wall),
        other_lease("someone-else", "x/1/b", None, renewed=clock.wall),
        other_lease(f"{NAME}-ns-0123456789", "ns/1/c", None, renewed=clock.wall),
    ]
    api.on_list = keep_renewing(api, 0)
    keeper = keepers(name=f"{NAME}-shard-0-of-3")
    await keeper.acquire()
    await asyncio.wait_for(
        keeper.wait_alone(NAME, sharding.plan(3, 0).range, strict=True), timeout=5
    )
    assert api.lists == 1  # one look was enough: nothing to wait for


async def test_the_unsharded_lease_counts_as_the_whole_range(
    keepers: Callable[..., LeaseKeeper], api: FakeLeaseApi, clock: FakeTime
) -> None:
    """From 1 to 3 shards: the old single instance's Lease has no range annotation."""
    api.name = f"{NAME}-shard-2-of-3"
    api.others = [other_lease(NAME, "single/1/a", None, renewed=clock.wall)]
    api.on_list = keep_renewing(api, 0)
    keeper = keepers(name=f"{NAME}-shard-2-of-3")
    await keeper.acquire()
    waiting = asyncio.ensure_future(keeper.wait_alone(NAME, sharding.plan(3, 2).range, strict=True))
    await run_until(lambda: api.lists >= 5)
    assert not waiting.done()
    waiting.cancel()
    with pytest.raises(asyncio.CancelledError):
        await waiting


async def test_an_unsharded_instance_waits_for_live_shards(
    keepers: Callable[..., LeaseKeeper], api: FakeLeaseApi, clock: FakeTime
) -> None:
    """From 3 shards back to 1: the single instance waits for the shards still running."""
    api.others = [
        other_lease(
            f"{NAME}-shard-2-of-3", "s2/1/a", str(sharding.plan(3, 2).range), renewed=clock.wall
        )
    ]
    api.on_list = keep_renewing(api, 0)
    keeper = keepers()
    await keeper.acquire()
    waiting = asyncio.ensure_future(keeper.wait_alone(NAME, sharding.WHOLE, strict=False))
    await run_until(lambda: api.lists >= 5)
    assert not waiting.done()
    waiting.cancel()
    with pytest.raises(asyncio.CancelledError):
        await waiting


async def test_without_list_permission_a_shard_waits_and_an_unsharded_instance_goes_on(
    keepers: Callable[..., LeaseKeeper],
    api: FakeLeaseApi,
    clock: FakeTime,
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.WARNING, logger="scp_operator.lease")
    keeper = keepers()
    await keeper.acquire()
    api.errors["list"] = [LeaseError(403, "HTTP 403: forbidden")]
    await asyncio.wait_for(keeper.wait_alone(NAME, sharding.WHOLE, strict=False), timeout=5)
    assert "Cannot list Leases" in caplog.text
    api.errors["list"] = [LeaseError(403, "HTTP 403: forbidden") for _ in range(3)]
    lists = api.lists
    await asyncio.wait_for(keeper.wait_alone(NAME, sharding.WHOLE, strict=True), timeout=5)
    assert api.lists == lists + 4  # three refusals waited out, then a clean answer
    assert "handles nothing until it can" in caplog.text


def test_the_range_annotation_is_written_with_the_lease() -> None:
    write = LeaseWrite(
        namespace=NS,
        name=f"{NAME}-shard-0-of-2",
        resource_version=None,
        holder="me/1/a",
        duration=15,
        acquire_time=T0,
        renew_time=T0,
        transitions=0,
        annotations={lease.RANGE_ANNOTATION: "0x0000000000000000-0x8000000000000000"},
    )
    body = lease.KubeLeaseApi._body(write)
    assert body["metadata"]["annotations"] == {
        lease.RANGE_ANNOTATION: "0x0000000000000000-0x8000000000000000"
    }


def test_a_shard_lease_without_a_readable_range_counts_as_the_whole_space() -> None:
    record = LeaseRecord.from_object(other_lease(f"{NAME}-shard-0-of-2", "h", "junk", renewed=T0))
    assert lease.range_of(record, NAME) == sharding.WHOLE
    assert lease.range_of(record, "another-operator") is None
