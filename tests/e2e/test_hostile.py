"""Hostile and broken input through the real operator: bad SCP answers, clock skew, and objects
edited by hand in the middle of a deletion.

Each case must end in a clear condition and event, with no crash (the operator process keeps
running and keeps serving other objects) and no finalizer released unless the decision table
says so. Unit-level variants of the SCP answers are in tests/unit/test_hostile_answers.py.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from typing import Any

import pytest

from scp_emulator.testing import ThreadedEmulator
from scp_operator import constants
from scp_testenv import ControlPlane, wait_for
from scp_testenv.operator_process import OperatorProcess
from tests.e2e.operator_fixtures import Cluster

LEGACY_PROGRESS_ANNOTATION = f"{constants.ANNOTATION_PREFIX}/delete-server"


def deletes(emu: ThreadedEmulator, sid: str) -> list[dict[str, Any]]:
    return emu.requests(method="DELETE", path_contains=sid)


def still_held(cluster: Cluster, name: str, seconds: float) -> None:
    """The object stays, with its finalizer, for ``seconds``."""
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        assert cluster.has_finalizer(name), f"{name} lost its finalizer"
        time.sleep(0.5)


def healthy(operator: OperatorProcess) -> None:
    """Running, and never crashed a handler with an unexpected exception."""
    assert operator.running, operator.tail()
    log = operator.log()
    assert "Traceback" not in log, operator.tail(80)
    assert "failed with an exception" not in log, operator.tail(80)


def blocked(cluster: Cluster, emulator: ThreadedEmulator, name: str) -> str:
    """A VirtualServer whose deletion is held by a locked server (409, reason ServerLocked)."""
    sid = str(emulator.seed(name=name, locked=True)["id"])
    cluster.create_vs(name, sid)
    wait_for(lambda: cluster.has_finalizer(name), what=f"{name} finalizer")
    cluster.delete(name)
    wait_for(lambda: cluster.reason(name) == "ServerLocked", what=f"{name} blocked")
    return sid


def kubectl_patch(cp: ControlPlane, ns: str, name: str, patch: Any, *extra: str) -> None:
    cp.kubectl("patch", "scpvs", name, "-n", ns, "--type=merge", "-p", json.dumps(patch), *extra)


# --- SCP answers that are not what SCP documents ----------------------------------------------

BIG = "<html><body>" + "x" * 900_000 + "</body></html>"  # the admin API takes up to 1 MB


@pytest.mark.parametrize(
    ("fault", "reason", "words"),
    [
        (
            {"kind": "html", "status": 502},
            "ScpUnavailable",
            "502 Unavailable: the answer was not JSON",
        ),
        ({"kind": "garbage", "status": 500}, "ScpUnavailable", "the answer was not JSON"),
        ({"kind": "status", "status": 503, "body": BIG}, "ScpUnavailable", "503"),
        ({"kind": "status", "status": 409, "body": "locked, says plain text"}, "Conflict", "409"),
        (
            {"kind": "status", "status": 200, "body": {"id": "not what a DELETE answers"}},
            "Rejected",
            "unexpected answer",
        ),
        (
            {
                "kind": "status",
                "status": 404,
                "body": "<html>404 Not Found</html>",
                "headers": {"Content-Type": "text/html"},
            },
            "",  # a 404 is "gone" by the table, whatever its body: released
            "",
        ),
    ],
    ids=["html-502", "garbage-500", "huge-html-503", "text-plain-409", "200-to-delete", "html-404"],
)
def test_bad_answers_to_delete_hold_with_a_clear_reason_until_scp_recovers(
    cluster: Cluster,
    emulator: ThreadedEmulator,
    operator: OperatorProcess,
    fault: dict[str, Any],
    reason: str,
    words: str,
) -> None:
    sid = emulator.seed(name="bad-answer")["id"]
    cluster.create_vs("bad-answer", sid)
    wait_for(lambda: cluster.has_finalizer("bad-answer"), what="finalizer")
    fault_id = emulator.fault(method="DELETE", path_regex=sid, **fault)
    cluster.delete("bad-answer")
    if not reason:
        wait_for(lambda: cluster.get("bad-answer") is None, what="released on 404")
        healthy(operator)
        return
    wait_for(lambda: cluster.reason("bad-answer") == reason, what=reason)
    cond = cluster.condition("bad-answer", "Deleting")
    assert cond is not None
    assert words in cond["message"]
    assert "<html" not in cond["message"]
    assert len(cond["message"]) < 1000
    warnings = [e for e in cluster.events("bad-answer") if e["reason"] == reason]
    assert warnings
    assert warnings[0]["type"] == "Warning"
    wait_for(lambda: len(deletes(emulator, sid)) >= 2, what="a retry")
    still_held(cluster, "bad-answer", 2)
    assert emulator.server(sid)["state"] == "ACTIVE"  # type: ignore[index]
    healthy(operator)
    emulator.remove_fault(fault_id)
    wait_for(lambda: cluster.get("bad-answer") is None, what="gone once SCP answers 202")
    assert deletes(emulator, sid)[-1]["status"] == 202


def test_a_deeply_nested_json_answer_is_a_clear_condition_not_a_traceback(
    cluster: Cluster, emulator: ThreadedEmulator, operator: OperatorProcess
) -> None:
    sid = emulator.seed(name="nested")["id"]
    cluster.create_vs("nested", sid)
    wait_for(lambda: cluster.has_finalizer("nested"), what="finalizer")
    emulator.fault(method="DELETE", path_regex=sid, kind="status", status=409, body="[" * 50_000)
    cluster.delete("nested")
    wait_for(lambda: deletes(emulator, sid), what="the DELETE")
    wait_for(lambda: cluster.reason("nested") == "Conflict", within=10, what="Conflict")
    cond = cluster.condition("nested", "Deleting")
    assert cond is not None
    assert "the answer was not JSON" in cond["message"]
    still_held(cluster, "nested", 2)
    healthy(operator)


# --- clock skew -------------------------------------------------------------------------------


def test_clock_skew_is_named_as_such_and_holds_until_the_clock_is_right(
    cluster: Cluster, emulator: ThreadedEmulator, operator: OperatorProcess
) -> None:
    """SCP rejects stale timestamps with 401 "Timestamp expired".

    The operator's clock cannot be moved from here, so the emulator's window shrinks to one
    second and every request arrives two seconds late (latency is waited out before the
    signature check): to the gateway, the operator's clock is two seconds behind.
    """
    sid = emulator.seed(name="skewed")["id"]
    emulator.set_config(timestamp_window=1.0)
    emulator.set_latency(2000)
    cluster.create_vs("skewed", sid)
    wait_for(lambda: cluster.reason("skewed", "Ready") == "Unauthorized", what="observe: 401")
    ready = cluster.condition("skewed", "Ready")
    assert ready is not None
    assert "clock is probably skewed" in ready["message"]
    cluster.delete("skewed")
    wait_for(lambda: cluster.reason("skewed") == "Unauthorized", what="delete: 401")
    cond = cluster.condition("skewed", "Deleting")
    assert cond is not None
    assert "Timestamp expired" in cond["message"]
    assert "clock is probably skewed" in cond["message"]
    assert {c["verdict"] for c in deletes(emulator, sid)} == {"stale-timestamp"}
    still_held(cluster, "skewed", 2)
    assert emulator.server(sid)["state"] == "ACTIVE"  # type: ignore[index]
    emulator.set_latency(0)
    emulator.set_config(timestamp_window=300.0)
    wait_for(lambda: cluster.get("skewed") is None, within=30, what="gone once the clock is right")
    healthy(operator)


# --- objects edited by hand mid-deletion ------------------------------------------------------


def test_finalizer_removed_by_hand_lets_the_object_go_and_the_operator_carries_on(
    cluster: Cluster,
    emulator: ThreadedEmulator,
    operator: OperatorProcess,
    control_plane: ControlPlane,
) -> None:
    sid = blocked(cluster, emulator, "by-hand")
    control_plane.kubectl(
        "patch",
        "scpvs",
        "by-hand",
        "-n",
        cluster.ns,
        "--type=json",
        "-p",
        json.dumps([{"op": "remove", "path": "/metadata/finalizers"}]),
    )
    wait_for(lambda: cluster.get("by-hand") is None, what="gone")
    calls = len(deletes(emulator, sid))
    time.sleep(3)
    assert len(deletes(emulator, sid)) <= calls + 1  # at most one call already under way
    assert emulator.server(sid)["locked"] is True  # type: ignore[index]
    # the operator still serves other objects
    other = emulator.seed(name="after-by-hand")["id"]
    cluster.create_vs("after-by-hand", other)
    wait_for(lambda: cluster.has_finalizer("after-by-hand"), what="finalizer")
    cluster.delete("after-by-hand", wait=True)
    assert [c["status"] for c in deletes(emulator, other)] == [202]
    healthy(operator)


@pytest.mark.parametrize(
    "status",
    [
        {
            "conditions": [
                {
                    "type": "Deleting",
                    "status": "False",
                    "reason": "AllFine",
                    "message": "nothing to see",
                    "lastTransitionTime": "2001-01-01T00:00:00Z",
                }
            ],
            "deletion": {
                "attempts": -7,
                "lastHttpStatus": 202,
                "acceptedTime": "2001-01-01T00:00:00Z",
            },
            "server": {"state": "GONE", "locked": False},
        },
        None,
    ],
    ids=["lies", "wiped"],
)
def test_status_overwritten_by_hand_is_rewritten_and_never_taken_for_truth(
    cluster: Cluster,
    emulator: ThreadedEmulator,
    operator: OperatorProcess,
    control_plane: ControlPlane,
    status: dict[str, Any] | None,
) -> None:
    sid = blocked(cluster, emulator, "rewritten")
    kubectl_patch(
        control_plane, cluster.ns, "rewritten", {"status": status}, "--subresource=status"
    )
    if status is not None:
        assert cluster.reason("rewritten") == "AllFine"
    wait_for(lambda: cluster.reason("rewritten") == "ServerLocked", what="Deleting rewritten")
    cond = cluster.condition("rewritten", "Deleting")
    assert cond is not None
    assert cond["status"] == "True"
    still_held(cluster, "rewritten", 2)
    assert emulator.server(sid)["state"] == "ACTIVE"  # type: ignore[index]
    emulator.patch(sid, locked=False)
    wait_for(lambda: cluster.get("rewritten") is None, what="gone once unlocked")
    healthy(operator)


@pytest.mark.parametrize(
    ("patch", "subresource"),
    [
        ({"status": {"kopf": {"progress": {"delete-server": "{not json"}}}}, True),
        (
            {
                "status": {
                    "kopf": {
                        "progress": {
                            "delete-server": {"retries": "many", "delayed": "soon", "started": 5}
                        }
                    }
                }
            },
            True,
        ),
        ({"status": {"kopf": {"progress": [1, 2, 3]}}}, True),
        ({"status": {"kopf": {"last-handled-configuration": "{not json"}}}, True),
        ({"metadata": {"annotations": {LEGACY_PROGRESS_ANNOTATION: "{not json"}}}, False),
    ],
    ids=[
        "progress-not-an-object",
        "progress-wrong-types",
        "progress-not-a-map",
        "diffbase-not-json",
        "legacy-progress-annotation",
    ],
)
def test_garbage_in_kopfs_bookkeeping_neither_crashes_nor_releases(
    cluster: Cluster,
    emulator: ThreadedEmulator,
    operator: OperatorProcess,
    control_plane: ControlPlane,
    patch: dict[str, Any],
    subresource: bool,
) -> None:
    """Kopf keeps its handler progress in ``status.kopf`` (once in annotations): garbage there,
    written by hand, must not crash the operator nor release the object without SCP's word."""
    sid = blocked(cluster, emulator, "garbled")
    extra = ("--subresource=status",) if subresource else ()
    kubectl_patch(control_plane, cluster.ns, "garbled", patch, *extra)
    emulator.patch(sid, locked=False)  # SCP would now accept: only the garbage is in the way
    still_held_or_deleted_properly(cluster, emulator, sid, "garbled", 5)
    assert operator.running, operator.tail()
    if cluster.get("garbled") is not None:  # cleaning up lets the deletion finish
        kubectl_patch(
            control_plane,
            cluster.ns,
            "garbled",
            {"status": {"kopf": None}} if subresource else {"metadata": {"annotations": None}},
            *extra,
        )
        wait_for(lambda: cluster.get("garbled") is None, within=60, what="gone after cleanup")
    assert deletes(emulator, sid)[-1]["status"] in (202, 404)
    assert operator.running, operator.tail()


def still_held_or_deleted_properly(
    cluster: Cluster, emulator: ThreadedEmulator, sid: str, name: str, seconds: float
) -> None:
    """Either the object stays with its finalizer, or it went because SCP accepted a DELETE."""
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        obj = cluster.get(name)
        if obj is None:
            answers = [c["status"] for c in deletes(emulator, sid)]
            assert answers[-1] in (202, 404), f"{name} released without SCP's 202/404: {answers}"
            return
        assert constants.FINALIZER in obj["metadata"].get("finalizers", []), obj["metadata"]
        time.sleep(0.5)


# --- hostile SCP at startup -------------------------------------------------------------------


def test_an_operator_facing_a_broken_scp_root_still_starts(
    cluster: Cluster,
    emulator: ThreadedEmulator,
    make_operator: Callable[..., OperatorProcess],
) -> None:
    """The startup version check reads SCP's root: an HTML page there must not stop the operator."""
    emulator.fault(method="GET", path_regex="^/$", kind="html", status=503)
    proc = make_operator()
    proc.start()
    assert "live version list" in proc.log()
    healthy(proc)
    sid = emulator.seed(name="after-bad-root")["id"]
    cluster.create_vs("after-bad-root", sid)
    wait_for(lambda: cluster.has_finalizer("after-bad-root"), what="finalizer")
    cluster.delete("after-bad-root", wait=True)
    healthy(proc)


def test_an_operator_facing_a_deeply_nested_scp_root_still_starts(
    emulator: ThreadedEmulator, make_operator: Callable[..., OperatorProcess]
) -> None:
    emulator.fault(method="GET", path_regex="^/$", kind="status", status=200, body="[" * 50_000)
    proc = make_operator()
    proc.start(timeout=20)
    assert "live version list" in proc.log()
    healthy(proc)
