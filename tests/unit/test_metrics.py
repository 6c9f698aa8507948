"""Metrics: build info, the deletion-duration histogram, the oldest hold, the endpoint."""

from __future__ import annotations

import datetime
import errno
import platform
import socket
import uuid
from importlib.metadata import version

import httpx
import pytest
from prometheus_client import REGISTRY

from scp_operator import metrics
from scp_testenv import free_port

DELETED_AT = "2026-11-26T00:00:00Z"
UTC = datetime.UTC


def _outcome() -> str:
    """A label value no other test uses: the registry is process-wide."""
    return f"Test{uuid.uuid4().hex[:8]}"


def _count(outcome: str) -> float:
    value = REGISTRY.get_sample_value(
        "scp_operator_deletion_duration_seconds_count", {"outcome": outcome}
    )
    return value or 0.0


def _sum(outcome: str) -> float:
    value = REGISTRY.get_sample_value(
        "scp_operator_deletion_duration_seconds_sum", {"outcome": outcome}
    )
    return value or 0.0


def _bucket(outcome: str, le: str) -> float:
    value = REGISTRY.get_sample_value(
        "scp_operator_deletion_duration_seconds_bucket", {"outcome": outcome, "le": le}
    )
    return value or 0.0


def test_build_info_names_the_installed_versions() -> None:
    labels = {
        "version": version("scp-operator"),
        "kopf_version": version("kopf"),
        "python_version": platform.python_version(),
    }
    assert REGISTRY.get_sample_value("scp_operator_build_info", labels) == 1.0


def test_a_release_observes_the_seconds_since_the_deletion_timestamp() -> None:
    outcome = _outcome()
    now = datetime.datetime(2026, 11, 26, 0, 1, 30, tzinfo=UTC)
    metrics.record_release(outcome, DELETED_AT, now=now)
    assert _count(outcome) == 1
    assert _sum(outcome) == 90.0
    assert _bucket(outcome, "60.0") == 0  # 90 s is above the 60 s bucket...
    assert _bucket(outcome, "300.0") == 1  # ...and inside the 5 min one


@pytest.mark.parametrize(
    "stamp",
    [
        "2026-11-26T00:00:00Z",
        "2026-11-26t00:00:00z",
        "2026-11-26T00:00:00.250000Z",
        "2026-11-26T09:00:00+09:00",
        "2026-11-26T00:00:00",  # no zone: UTC, as the API server means it
        " 2026-11-26 00:00:00Z ",
    ],
)
def test_timestamps_are_read_leniently(stamp: str) -> None:
    outcome = _outcome()
    now = datetime.datetime(2026, 11, 26, 0, 0, 10, tzinfo=UTC)
    metrics.record_release(outcome, stamp, now=now)
    assert _count(outcome) == 1
    assert 9.0 <= _sum(outcome) <= 10.0


@pytest.mark.parametrize("stamp", [None, "", "yesterday", "2026-13-45T99:00:00Z", 12345, {}])
def test_a_missing_or_unreadable_timestamp_is_skipped_without_raising(stamp: object) -> None:
    outcome = _outcome()
    metrics.record_release(outcome, stamp, now=datetime.datetime.now(UTC))  # type: ignore[arg-type]
    assert _count(outcome) == 0


def test_a_timestamp_in_the_future_counts_as_zero() -> None:
    """Clock skew between the API server and the operator must not observe a negative span."""
    outcome = _outcome()
    metrics.record_release(
        outcome, DELETED_AT, now=datetime.datetime(2026, 11, 25, 23, 59, tzinfo=UTC)
    )
    assert _count(outcome) == 1
    assert _sum(outcome) == 0.0


def test_a_naive_now_is_taken_as_utc() -> None:
    outcome = _outcome()
    metrics.record_release(outcome, DELETED_AT, now=datetime.datetime(2026, 11, 26, 0, 0, 5))
    assert _sum(outcome) == 5.0


class FakeClock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def test_the_first_hold_time_survives_a_change_of_reason() -> None:
    clock = FakeClock()
    tracker = metrics.BlockedTracker(clock=clock)
    reason_a, reason_b = _outcome(), _outcome()
    tracker.held("u1", reason_a)
    clock.now += 50
    tracker.held("u1", reason_b)  # another reason: still the same hold
    clock.now += 50
    assert tracker.oldest_age() == 100.0
    assert REGISTRY.get_sample_value("scp_operator_blocked_objects", {"reason": reason_a}) == 0
    assert REGISTRY.get_sample_value("scp_operator_blocked_objects", {"reason": reason_b}) == 1
    tracker.released("u1")
    assert tracker.oldest_age() == 0.0
    assert REGISTRY.get_sample_value("scp_operator_blocked_objects", {"reason": reason_b}) == 0


def test_the_oldest_of_several_holds_is_reported_and_a_release_hands_over() -> None:
    clock = FakeClock()
    tracker = metrics.BlockedTracker(clock=clock)
    reason = _outcome()
    tracker.held("old", reason)
    clock.now += 30
    tracker.held("new", reason)
    clock.now += 10
    assert tracker.oldest_age() == 40.0
    tracker.released("old")
    assert tracker.oldest_age() == 10.0
    tracker.released("never-held")  # harmless
    assert tracker.oldest_age() == 10.0


def test_the_gauge_is_computed_from_the_shown_tracker_at_scrape_time() -> None:
    clock = FakeClock()
    tracker = metrics.BlockedTracker(clock=clock)
    tracker.held("u1", _outcome())
    try:
        metrics.show_oldest_blocked(tracker)
        clock.now += 7
        assert REGISTRY.get_sample_value("scp_operator_oldest_blocked_seconds") == 7.0
        clock.now += 5  # no call to the tracker in between: the scrape computes it
        assert REGISTRY.get_sample_value("scp_operator_oldest_blocked_seconds") == 12.0
    finally:
        metrics.show_oldest_blocked(None)
    assert REGISTRY.get_sample_value("scp_operator_oldest_blocked_seconds") == 0.0


async def test_port_zero_serves_nothing() -> None:
    assert await metrics.start_server(0) is None


async def test_the_endpoint_negotiates_format_and_compression() -> None:
    port = free_port()
    runner = await metrics.start_server(port, "127.0.0.1")
    assert runner is not None
    try:
        async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{port}") as http:
            plain = await http.get("/metrics", headers={"Accept-Encoding": "identity"})
            zipped = await http.get("/metrics", headers={"Accept-Encoding": "gzip"})
            om = await http.get(
                "/metrics", headers={"Accept": "application/openmetrics-text; version=1.0.0"}
            )
            only = await http.get("/metrics", params={"name[]": "scp_operator_build_info"})
    finally:
        await runner.cleanup()
    assert plain.status_code == 200
    assert plain.headers["content-type"].startswith("text/plain")
    assert "content-encoding" not in plain.headers
    assert "scp_operator_build_info{" in plain.text
    assert "scp_operator_deletion_duration_seconds" in plain.text
    assert "scp_operator_oldest_blocked_seconds " in plain.text
    assert zipped.headers["content-encoding"] == "gzip"
    assert "scp_operator_build_info{" in zipped.text  # httpx inflated it
    assert om.headers["content-type"].startswith("application/openmetrics-text")
    assert om.text.rstrip().endswith("# EOF")
    assert "scp_operator_build_info{" in only.text
    assert "scp_operator_scp_requests_in_flight" not in only.text


async def test_a_busy_port_raises_oserror_for_the_caller_to_name() -> None:
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        with pytest.raises(OSError, match="in use") as info:
            await metrics.start_server(port, "127.0.0.1")
    assert info.value.errno == errno.EADDRINUSE
