"""Status that follows SCP, the blocker a 409 is, and the volumes a deletion leaves behind.

The real operator in-process against kmock and the SCP emulator over HTTP. The periodic re-read
waits ``SCP_OPERATOR_RESYNC_INTERVAL`` times a jitter factor; the tests shrink the factor (not
the setting, whose floor is 30 s) so a re-read comes within a second.
"""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

from scp_emulator.server import EmulatorServer
from scp_operator.handlers import observation
from scp_testenv import eventually
from tests.operator.conftest import running_operator
from tests.operator.kube import condition, create, delete, obj

pytestmark = pytest.mark.operator


def ready(k8s: Any, name: str) -> tuple[str, str] | None:
    cond = condition(k8s, name, "Ready")
    return (cond["status"], cond["reason"]) if cond else None


def gets(emu: EmulatorServer, sid: str) -> int:
    return len(emu.state.find_requests(method="GET", path_contains=sid))


def status_writes(k8s: Any, name: str) -> int:
    """PATCHes of the object or its status (Kopf writes status through the subresource)."""
    return sum(
        1
        for request in list(k8s)
        if request.method == "PATCH"
        and request.url.path.rstrip("/").removesuffix("/status").endswith(f"/{name}")
    )


async def created_and_re_read(k8s: Any, emulator: EmulatorServer, name: str, sid: str) -> None:
    """Create the object, wait until it is found, then for two more reads of its server: kmock
    never bumps resourceVersion, so Kopf runs observe twice, and both must be over before a
    test counts writes."""
    await create(k8s, name, sid)
    await eventually(lambda: ready(k8s, name) == ("True", "ServerFound"), what="found")
    settled = gets(emulator, sid)
    await eventually(lambda: gets(emulator, sid) >= settled + 2, what="re-reads")


@pytest.fixture
def quick_resync(monkeypatch: pytest.MonkeyPatch) -> None:
    """A re-read every 0.3-0.6 s (interval 30 s times 0.01-0.02)."""
    monkeypatch.setattr(observation, "JITTER", (0.01, 0.02))


async def test_ready_and_state_follow_scp_and_an_unchanged_server_costs_no_write(
    k8s: Any,
    emulator: EmulatorServer,
    monkeypatch: pytest.MonkeyPatch,
    quick_resync: None,
    posted: list[dict[str, Any]],
) -> None:
    sid = emulator.state.add_server(name="follow").id
    async with running_operator(monkeypatch, emulator, SCP_OPERATOR_RESYNC_INTERVAL="30"):
        await created_and_re_read(k8s, emulator, "follow", sid)

        # Steady: re-reads go on, but nothing is written (status or events).
        writes, events, reads = status_writes(k8s, "follow"), len(posted), gets(emulator, sid)
        await eventually(lambda: gets(emulator, sid) >= reads + 3, what="three re-reads")
        assert status_writes(k8s, "follow") == writes
        assert len(posted) == events

        # Locked in SCP's console: still Ready, but the status says a deletion would wait.
        emulator.state.update_server(sid, locked=True)
        await eventually(lambda: ready(k8s, "follow") == ("True", "ServerLocked"), what="locked")
        assert obj(k8s, "follow")["status"]["server"]["locked"] is True  # type: ignore[index]

        # Failed in SCP: Ready False with a Warning event.
        emulator.state.update_server(sid, locked=False, state="ERROR")
        await eventually(lambda: ready(k8s, "follow") == ("False", "ServerError"), what="error")
        assert obj(k8s, "follow")["status"]["server"]["state"] == "ERROR"  # type: ignore[index]
        assert any(e["reason"] == "ServerError" and e["type"] == "Warning" for e in posted)

        # Deleted in SCP's console: the object says so.
        assert emulator.state.remove_server(sid)
        await eventually(
            lambda: ready(k8s, "follow") == ("False", "ServerNotFound"), what="gone in SCP"
        )


async def test_an_outage_during_a_re_read_keeps_the_status(
    k8s: Any, emulator: EmulatorServer, monkeypatch: pytest.MonkeyPatch, quick_resync: None
) -> None:
    sid = emulator.state.add_server(name="calm").id
    async with running_operator(monkeypatch, emulator, SCP_OPERATOR_RESYNC_INTERVAL="30"):
        await created_and_re_read(k8s, emulator, "calm", sid)
        writes = status_writes(k8s, "calm")
        emulator.state.add_fault(method="GET", path_regex=sid, kind="status", status=503)
        reads = gets(emulator, sid)
        await eventually(lambda: gets(emulator, sid) >= reads + 3, what="re-reads during outage")
        # An answer that says nothing about the server changes nothing (no Unknown flapping).
        assert ready(k8s, "calm") == ("True", "ServerFound")
        assert status_writes(k8s, "calm") == writes


async def test_interval_zero_turns_the_re_read_off(
    k8s: Any, emulator: EmulatorServer, monkeypatch: pytest.MonkeyPatch, quick_resync: None
) -> None:
    sid = emulator.state.add_server(name="still").id
    async with running_operator(monkeypatch, emulator, SCP_OPERATOR_RESYNC_INTERVAL="0"):
        await create(k8s, "still", sid)
        await eventually(lambda: ready(k8s, "still") == ("True", "ServerFound"), what="found")
        await asyncio.sleep(1)  # kmock makes Kopf run observe twice: let the second one finish
        reads = gets(emulator, sid)
        emulator.state.update_server(sid, locked=True)
        # with the factor shrunk a re-read would come every half second: give it several
        await asyncio.sleep(3)
        assert gets(emulator, sid) == reads
        assert ready(k8s, "still") == ("True", "ServerFound")


async def test_after_a_deletion_the_volumes_that_stay_are_named_in_a_warning(
    k8s: Any, emulator: EmulatorServer, operator: Any, posted: list[dict[str, Any]]
) -> None:
    keep, go = "3f1c0a52-0000-4000-8000-00000000keep", "3f1c0a52-0000-4000-8000-0000000000go"
    sid = emulator.state.add_server(
        name="disks",
        volumes=[
            {"id": keep, "delete_on_termination": False},
            {"id": go, "delete_on_termination": True},
        ],
    ).id
    await create(k8s, "disks", sid)
    await eventually(lambda: ready(k8s, "disks") == ("True", "ServerFound"), what="found")
    stored = obj(k8s, "disks")["status"]["server"]["volumes"]  # type: ignore[index]
    assert stored == [
        {"id": keep, "deleteOnTermination": False},
        {"id": go, "deleteOnTermination": True},
    ]
    await delete(k8s, "disks")
    await eventually(lambda: obj(k8s, "disks") is None, what="object gone")
    (kept,) = [e for e in posted if e["name"] == "disks" and e["reason"] == "VolumesRetained"]
    assert kept["type"] == "Warning"
    assert keep in kept["message"]
    assert go not in kept["message"]
    assert sid in kept["message"]


async def test_no_volume_event_when_every_volume_dies_with_the_server(
    k8s: Any, emulator: EmulatorServer, operator: Any, posted: list[dict[str, Any]]
) -> None:
    sid = emulator.state.add_server(name="clean").id  # one volume, delete_on_termination true
    await create(k8s, "clean", sid)
    await eventually(lambda: ready(k8s, "clean") == ("True", "ServerFound"), what="found")
    await delete(k8s, "clean")
    await eventually(lambda: obj(k8s, "clean") is None, what="object gone")
    names = [e["reason"] for e in posted if e["name"] == "clean"]
    assert "DeleteAccepted" in names
    assert not {"VolumesRetained", "VolumesUnknown"} & set(names)


async def test_a_409_reads_the_server_on_the_first_try_and_then_only_every_fourth(
    k8s: Any, emulator: EmulatorServer, operator: Any
) -> None:
    sid = emulator.state.add_server(name="backup", backup=True).id
    await create(k8s, "backup", sid)
    await eventually(lambda: ready(k8s, "backup") == ("True", "ServerFound"), what="found")
    await asyncio.sleep(1)  # kmock makes Kopf run observe twice: let the second one finish
    before = gets(emulator, sid)
    await delete(k8s, "backup")
    deletes = lambda: len(emulator.state.find_requests(method="DELETE", path_contains=sid))  # noqa: E731
    await eventually(lambda: deletes() >= 6, what="six refused DELETEs", within=60)
    cond = condition(k8s, "backup", "Deleting")
    assert cond is not None
    assert cond["reason"] == "Conflict"
    assert "The server is not locked" in cond["message"]
    rereads = gets(emulator, sid) - before
    refused = deletes()  # counted after the reads: never fewer than when the reads were
    # retries 0, 4, 8... read the server; the others use status.server.locked (the exact
    # cadence: tests/unit/test_facts.py). kmock never bumps resourceVersion, so Kopf runs the
    # first attempt twice: one read more than on a real API server.
    assert 1 <= rereads <= (refused + 3) // 4 + 1, (rereads, refused)
    assert rereads < refused
