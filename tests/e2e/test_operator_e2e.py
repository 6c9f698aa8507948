"""The operator as a real process against a real kube-apiserver + etcd and the SCP emulator."""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

import pytest

from scp_emulator.testing import ThreadedEmulator
from scp_operator import constants
from scp_testenv import ControlPlane, KubectlError, wait_for
from scp_testenv.operator_process import OperatorProcess
from tests.e2e.operator_fixtures import Cluster

SID = "2a9be312-5d4b-4bc8-b2ae-35100fa9241f"


def deletes(emu: ThreadedEmulator, sid: str) -> list[dict[str, Any]]:
    return emu.requests(method="DELETE", path_contains=sid)


# --- the API server's schema rejects bad resources ------------------------------------------


@pytest.mark.parametrize(
    ("spec", "words"),
    [
        ({"serverId": "not-a-uuid"}, "spec.serverId"),
        ({}, "serverId: Required value"),
        ({"serverId": SID, "deletionPolicy": "Destroy"}, "Unsupported value"),
        ({"serverId": SID, "region": "Mars"}, "spec.region"),
    ],
)
def test_api_server_rejects_invalid_resources(
    cluster: Cluster, spec: dict[str, Any], words: str
) -> None:
    with pytest.raises(KubectlError) as info:
        cluster.apply(
            {
                "apiVersion": constants.API_VERSION,
                "kind": constants.KIND,
                "metadata": {"name": "bad"},
                "spec": spec,
            }
        )
    assert words in info.value.stderr
    assert cluster.get("bad") is None


def test_server_id_is_immutable_and_defaults_apply(cluster: Cluster) -> None:
    cluster.create_vs("imm", SID)
    assert cluster.get("imm")["spec"]["deletionPolicy"] == "Delete"  # type: ignore[index]
    with pytest.raises(KubectlError) as info:
        cluster.create_vs("imm", "3b9be312-5d4b-4bc8-b2ae-35100fa9241f")
    assert "serverId is immutable" in info.value.stderr


def test_kubectl_explain_and_printer_columns(cluster: Cluster, control_plane: ControlPlane) -> None:
    out = control_plane.kubectl("explain", "virtualservers.spec.deletionPolicy").stdout
    assert "Orphan" in out
    cluster.create_vs("cols", SID)
    table = control_plane.kubectl("get", "scpvs", "-n", cluster.ns).stdout
    header = ["NAME", "SERVER-ID", "POLICY", "STATE", "READY", "REASON", "AGE"]
    assert table.split("\n")[0].split() == header
    wide = control_plane.kubectl("get", "scpvs", "-n", cluster.ns, "-o", "wide").stdout
    assert wide.split("\n")[0].split() == [*header, "MESSAGE"]
    assert "scpvs" in control_plane.kubectl("api-resources", "--categories=scp").stdout


# --- the deletion flows ----------------------------------------------------------------------


def test_kubectl_delete_wait_returns_after_exactly_one_signed_delete(
    cluster: Cluster, emulator: ThreadedEmulator, operator: OperatorProcess
) -> None:
    sid = emulator.seed(name="web-1")["id"]
    cluster.create_vs("web-1", sid)
    wait_for(lambda: cluster.reason("web-1", "Ready") == "ServerFound", what="observed")
    assert cluster.get("web-1")["status"]["server"]["state"] == "ACTIVE"  # type: ignore[index]
    cluster.delete("web-1", wait=True)
    assert cluster.get("web-1") is None
    calls = deletes(emulator, sid)
    assert len(calls) == 1
    assert calls[0]["status"] == 202
    assert calls[0]["signature_valid"] is True
    assert calls[0]["verdict"] == "ok"
    assert calls[0]["api_version"] == "virtualserver 1.3"
    reasons = [e["reason"] for e in cluster.events("web-1")]
    assert "DeleteAccepted" in reasons


def test_409_keeps_it_terminating_and_says_why_until_unlocked(
    cluster: Cluster, emulator: ThreadedEmulator, operator: OperatorProcess
) -> None:
    sid = emulator.seed(name="locked", locked=True)["id"]
    cluster.create_vs("locked", sid)
    wait_for(lambda: cluster.has_finalizer("locked"), what="finalizer")
    cluster.delete("locked")
    wait_for(lambda: cluster.reason("locked") == "ServerLocked", what="ServerLocked condition")
    cond = cluster.condition("locked", "Deleting")
    assert cond is not None
    assert "locked" in cond["message"]
    obj = cluster.get("locked")
    assert obj is not None
    assert obj["metadata"].get("deletionTimestamp")
    warnings = [e for e in cluster.events("locked") if e["reason"] == "ServerLocked"]
    assert warnings
    assert warnings[0]["type"] == "Warning"
    assert "locked" in warnings[0]["message"]
    wait_for(lambda: len(deletes(emulator, sid)) >= 2, what="a retry")
    emulator.patch(sid, locked=False)
    wait_for(lambda: cluster.get("locked") is None, what="gone after unlock")
    statuses = [c["status"] for c in deletes(emulator, sid)]
    assert statuses[-1] == 202
    assert set(statuses[:-1]) == {409}


def test_404_releases(
    cluster: Cluster, emulator: ThreadedEmulator, operator: OperatorProcess
) -> None:
    sid = "00000000-0000-4000-8000-000000000404"
    cluster.create_vs("typo", sid)
    wait_for(lambda: cluster.reason("typo", "Ready") == "ServerNotFound", what="reported")
    cluster.delete("typo", wait=True)
    assert [c["status"] for c in deletes(emulator, sid)] == [404]


@pytest.mark.parametrize("case", ["401", "403"])
def test_auth_errors_never_release(
    cluster: Cluster,
    emulator: ThreadedEmulator,
    make_operator: Callable[..., OperatorProcess],
    case: str,
) -> None:
    if case == "401":
        env = {"SCP_SECRET_KEY": "not-the-secret"}
    else:
        emulator.set_credentials("RO", "RO-SECRET", allowed_actions=["GET", "LIST"])
        env = {"SCP_ACCESS_KEY": "RO", "SCP_SECRET_KEY": "RO-SECRET"}
    make_operator(**env).start()
    sid = emulator.seed(name="auth")["id"]
    cluster.create_vs("auth", sid)
    wait_for(lambda: cluster.has_finalizer("auth"), what="finalizer")
    cluster.delete("auth")
    reason = {"401": "Unauthorized", "403": "Forbidden"}[case]
    wait_for(lambda: cluster.reason("auth") == reason, what=reason)
    wait_for(lambda: len(deletes(emulator, sid)) >= 3, what="retries")
    assert cluster.get("auth") is not None
    assert emulator.server(sid) is not None
    assert {c["status"] for c in deletes(emulator, sid)} == {int(case)}


def test_orphan_patched_onto_a_terminating_object_releases_it_without_a_call(
    cluster: Cluster,
    emulator: ThreadedEmulator,
    make_operator: Callable[..., OperatorProcess],
    control_plane: ControlPlane,
) -> None:
    make_operator(SCP_OPERATOR_BACKOFF_BASE="600", SCP_OPERATOR_BACKOFF_CAP="600").start()
    sid = emulator.seed(name="stuck", locked=True)["id"]
    cluster.create_vs("stuck", sid)
    wait_for(lambda: cluster.has_finalizer("stuck"), what="finalizer")
    cluster.delete("stuck")
    wait_for(lambda: cluster.reason("stuck") == "ServerLocked", what="ServerLocked")
    assert len(deletes(emulator, sid)) == 1
    control_plane.kubectl(
        "patch",
        "scpvs",
        "stuck",
        "-n",
        cluster.ns,
        "--type=merge",
        "-p",
        json.dumps({"spec": {"deletionPolicy": "Orphan"}}),
    )
    wait_for(lambda: cluster.get("stuck") is None, within=20, what="released")
    assert len(deletes(emulator, sid)) == 1
    assert emulator.server(sid) is not None


def test_deletions_made_while_the_operator_is_down_complete_when_it_starts(
    cluster: Cluster,
    emulator: ThreadedEmulator,
    make_operator: Callable[..., OperatorProcess],
) -> None:
    first = make_operator()
    first.start()
    sids = [emulator.seed(name=f"down-{i}")["id"] for i in range(3)]
    for i, sid in enumerate(sids):
        cluster.create_vs(f"down-{i}", sid)
    for i in range(3):
        wait_for(lambda i=i: cluster.has_finalizer(f"down-{i}"), what="finalizers")
    first.stop()
    cluster.delete("down-0", "down-1", "down-2")
    assert all(cluster.get(f"down-{i}") is not None for i in range(3))
    assert all(deletes(emulator, sid) == [] for sid in sids)
    make_operator().start()
    for i in range(3):
        wait_for(lambda i=i: cluster.get(f"down-{i}") is None, what=f"down-{i} gone")
    assert [len(deletes(emulator, sid)) for sid in sids] == [1, 1, 1]


def test_sigkill_after_scp_accepted_and_before_release_loses_nothing(
    cluster: Cluster,
    emulator: ThreadedEmulator,
    make_operator: Callable[..., OperatorProcess],
) -> None:
    first = make_operator()
    first.start()
    sid = emulator.seed(name="crash")["id"]
    cluster.create_vs("crash", sid)
    wait_for(lambda: cluster.has_finalizer("crash"), what="finalizer")
    # SCP accepts the DELETE, but its answer never arrives: the operator is killed meanwhile.
    emulator.fault(method="DELETE", kind="timeout", process_first=True, times=1)
    cluster.delete("crash")
    wait_for(lambda: deletes(emulator, sid), what="the DELETE reached SCP")
    wait_for(
        lambda: (emulator.server(sid) or {}).get("state") in ("DELETING", None),
        what="SCP accepted it",
    )
    first.kill()
    assert cluster.get("crash") is not None  # the finalizer is still held
    make_operator().start()
    wait_for(lambda: cluster.get("crash") is None, what="completed after restart")
    statuses = [c["status"] for c in deletes(emulator, sid)]
    assert 1 < len(statuses) <= 3
    assert statuses[-1] in (202, 404)
    assert emulator.server(sid) is None or emulator.server(sid)["state"] == "DELETING"  # type: ignore[index]


def test_two_hundred_objects_deleted_at_once_each_get_one_accepted_delete(
    cluster: Cluster,
    emulator: ThreadedEmulator,
    operator: OperatorProcess,
    control_plane: ControlPlane,
) -> None:
    n = 200
    sids = [emulator.seed(name=f"bulk-{i}")["id"] for i in range(n)]
    items = [
        {
            "apiVersion": constants.API_VERSION,
            "kind": constants.KIND,
            "metadata": {"name": f"bulk-{i}"},
            "spec": {"serverId": sid},
        }
        for i, sid in enumerate(sids)
    ]
    cluster.apply({"apiVersion": "v1", "kind": "List", "items": items})

    def finalized() -> bool:
        out = control_plane.kubectl("get", "scpvs", "-n", cluster.ns, "-o", "json").stdout
        objs = json.loads(out)["items"]
        return len(objs) == n and all(
            constants.FINALIZER in o["metadata"].get("finalizers", []) for o in objs
        )

    wait_for(finalized, within=180, what="all finalizers")
    control_plane.kubectl("delete", "scpvs", "--all", "-n", cluster.ns, "--wait=false")

    def remaining() -> int:
        out = control_plane.kubectl("get", "scpvs", "-n", cluster.ns, "-o", "name").stdout
        return len(out.split())

    wait_for(lambda: remaining() == 0, within=300, what="all 200 gone")
    accepted = emulator.requests(method="DELETE")
    per_server: dict[str, list[int]] = {}
    for call in accepted:
        per_server.setdefault(call["server_id"], []).append(call["status"])
    assert set(per_server) == set(sids)
    assert all(statuses == [202] for statuses in per_server.values())


def test_finalizer_in_the_manifest_covers_objects_the_operator_never_saw_alive(
    cluster: Cluster,
    emulator: ThreadedEmulator,
    make_operator: Callable[..., OperatorProcess],
) -> None:
    sid = emulator.seed(name="unseen")["id"]
    cluster.apply(
        {
            "apiVersion": constants.API_VERSION,
            "kind": constants.KIND,
            "metadata": {"name": "unseen", "finalizers": [constants.FINALIZER]},
            "spec": {"serverId": sid},
        }
    )
    cluster.delete("unseen")  # the operator is not running yet
    assert cluster.get("unseen") is not None
    make_operator().start()
    wait_for(lambda: cluster.get("unseen") is None, what="deleted once the operator runs")
    assert [c["status"] for c in deletes(emulator, sid)] == [202]
