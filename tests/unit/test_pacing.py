"""The time of a held deletion's next attempt (handlers/pacing.py) and the Orphan wake-up
(orphan_watch.py), as units; the whole path runs in tests/operator/test_pacing.py."""

from __future__ import annotations

import asyncio
import datetime
from typing import Any

import pytest

from scp_operator.handlers import pacing
from scp_operator.orphan_watch import OrphanWatch

NOW = datetime.datetime(2027, 6, 1, 10, 0, 0, tzinfo=datetime.UTC)


def test_the_next_attempt_is_written_as_a_utc_time_and_read_back_as_seconds() -> None:
    written = pacing.when(90.5, NOW)
    assert written == "2027-06-01T10:01:30.500+00:00"
    assert pacing.seconds_left({"deletion": {"nextAttemptTime": written}}, NOW) == 90.5


@pytest.mark.parametrize(
    "status",
    [
        {},
        {"deletion": {}},
        {"deletion": {"nextAttemptTime": "2027-06-01T09:59:00Z"}},  # past: act now
        {"deletion": {"nextAttemptTime": "soon"}},  # unreadable: act now, never wait forever
        {"deletion": {"nextAttemptTime": 5}},
    ],
)
def test_no_wait_without_a_readable_future_time(status: dict[str, Any]) -> None:
    assert pacing.seconds_left(status, NOW) == 0.0


def test_a_time_without_zone_is_utc() -> None:
    assert pacing.seconds_left({"deletion": {"nextAttemptTime": "2027-06-01T10:00:10"}}, NOW) == 10


def orphan(uid: str, *, terminating: bool = True, policy: str = "Orphan") -> dict[str, Any]:
    meta: dict[str, Any] = {"uid": uid}
    if terminating:
        meta["deletionTimestamp"] = "2027-06-01T10:00:00Z"
    return {"metadata": meta, "spec": {"deletionPolicy": policy}}


async def test_a_wait_ends_early_only_for_its_own_terminating_orphan() -> None:
    watch = OrphanWatch(enabled=False)  # no API server: objects are handed in by the test
    waiting = asyncio.create_task(watch.wait("a", 30))
    await asyncio.sleep(0.01)
    watch.saw(orphan("b"))  # another object
    watch.saw(orphan("a", terminating=False))  # Orphan, but not being deleted
    watch.saw(orphan("a", policy="Delete"))  # a selector the API server ignored
    await asyncio.sleep(0.01)
    assert not waiting.done()
    watch.saw(orphan("a"))
    assert await asyncio.wait_for(waiting, 1) is True


async def test_a_wait_runs_out_when_nothing_turns_orphan() -> None:
    watch = OrphanWatch(enabled=False)
    assert await watch.wait("a", 0.05) is False


async def test_an_orphan_seen_just_before_the_wait_still_ends_it() -> None:
    clock = [100.0]
    watch = OrphanWatch(enabled=False, clock=lambda: clock[0])
    watch.saw(orphan("a"))
    assert await watch.wait("a", 30) is True
    clock[0] += 61  # remembered for a minute only
    assert await watch.wait("a", 0.01) is False


def test_the_wait_is_never_longer_than_the_longest_delay_a_schedule_gives() -> None:
    from scp_operator.backoff import Schedule
    from scp_operator.decision import Timing

    timing = Timing(fast=Schedule(5, 900), slow=Schedule(60, 1800), hold_recheck=60)
    # a time written by an instance whose clock ran hours ahead
    ahead = {"deletion": {"nextAttemptTime": pacing.when(6 * 3600, NOW)}}
    assert pacing.seconds_left(ahead, NOW) == 6 * 3600
    assert pacing.longest_wait(timing) == 1800
