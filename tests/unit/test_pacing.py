"""The time of a held deletion's next attempt (handlers/pacing.py) and the Orphan wake-up
(orphan_watch.py), as units; the whole path runs in tests/operator/test_pacing.py."""

from __future__ import annotations

import asyncio
import datetime
import json
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


# ---- the watch itself, against a local HTTP server -----------------------------------------


class FakeWatchServer:
    def __init__(self, *, refuse: bool = False) -> None:
        self.refuse = refuse
        self.lists = 0
        self.watches: list[dict[str, str]] = []

    async def handle(self, request: Any) -> Any:
        from aiohttp import web

        if self.refuse:
            self.lists += 1
            body = {
                "kind": "Status",
                "reason": "BadRequest",
                "message": "field label not supported",
            }
            return web.json_response(body, status=400)
        if request.query.get("watch") != "true":
            self.lists += 1
            return web.json_response({"metadata": {"resourceVersion": "42"}, "items": []})
        self.watches.append(dict(request.query))
        response = web.StreamResponse()
        await response.prepare(request)
        event = {"type": "MODIFIED", "object": orphan("waiting-uid")}
        await response.write(json.dumps(event).encode() + b"\n")
        await asyncio.sleep(0.2)
        return response


async def serve(fake: FakeWatchServer) -> Any:
    from aiohttp import web
    from aiohttp.test_utils import TestServer

    app = web.Application()
    app.router.add_route("*", "/{tail:.*}", fake.handle)
    server = TestServer(app, host="127.0.0.1")
    await server.start_server()
    return server


def connect_to(server: Any) -> Any:
    import kopf

    from scp_operator.kube_http import Connection

    async def login() -> kopf.ConnectionInfo:
        return kopf.ConnectionInfo(server=str(server.make_url("")).rstrip("/"))

    return lambda: Connection(connections=1, login=login)


async def test_the_watch_asks_for_orphans_from_now_on_and_wakes_the_wait() -> None:
    fake = FakeWatchServer()
    server = await serve(fake)
    watch = OrphanWatch(connect_to(server), namespaces=("team-a",))
    try:
        assert await watch.wait("waiting-uid", 10) is True
    finally:
        await watch.aclose()
        await server.close()
    assert fake.watches[0]["fieldSelector"] == "spec.deletionPolicy=Orphan"
    assert fake.watches[0]["resourceVersion"] == "42"  # not replaying existing Orphan objects


async def test_an_old_crd_without_the_selectable_field_is_named_once_and_retried_slowly(
    caplog: pytest.LogCaptureFixture, monkeypatch: pytest.MonkeyPatch
) -> None:
    from scp_operator import orphan_watch

    monkeypatch.setattr(orphan_watch, "RETRY_SECONDS", 0.1)
    fake = FakeWatchServer(refuse=True)
    server = await serve(fake)
    watch = OrphanWatch(connect_to(server), namespaces=("team-a",))
    try:
        assert await watch.wait("waiting-uid", 0.65) is False
    finally:
        await watch.aclose()
        await server.close()
    warnings = [r for r in caplog.records if "selectable field spec.deletionPolicy" in r.message]
    assert len(warnings) == 1
    assert 2 <= fake.lists <= 4  # at 0, 0.1, 0.3 s (doubling), not every few milliseconds
