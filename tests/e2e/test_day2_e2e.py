"""Day-2 behaviour on a real kube-apiserver: status that follows SCP, the blocker a 409 is, the
volumes a deletion leaves behind, and how a blocked object reads in ``kubectl``.

The operator runs as a process with ``SCP_OPERATOR_RESYNC_INTERVAL=30`` (the floor), so a
re-read comes 22-38 s after the last one.
"""

from __future__ import annotations

from typing import Any

from scp_emulator.testing import ThreadedEmulator
from scp_testenv import ControlPlane, wait_for
from scp_testenv.operator_process import OperatorProcess
from tests.e2e.operator_fixtures import Cluster

KEEP = "9d1e0a52-0000-4000-8000-00000000keep"


def ready(cluster: Cluster, name: str) -> tuple[Any, Any, Any] | None:
    cond = cluster.condition(name, "Ready")
    return (cond["status"], cond["reason"], cond.get("observedGeneration")) if cond else None


def test_status_follows_scp_and_a_blocked_object_says_why_in_kubectl(
    cluster: Cluster,
    control_plane: ControlPlane,
    emulator: ThreadedEmulator,
    make_operator: Any,
    capsys: Any,
) -> None:
    operator: OperatorProcess = make_operator(SCP_OPERATOR_RESYNC_INTERVAL="30")
    operator.start()
    sid = emulator.seed(
        name="db-1",
        volumes=[
            {"id": KEEP, "delete_on_termination": False},
            {"id": "9d1e0a52-0000-4000-8000-0000000000go", "delete_on_termination": True},
        ],
    )["id"]
    cluster.create_vs("db-1", sid)
    wait_for(lambda: ready(cluster, "db-1") == ("True", "ServerFound", 1), what="observed")

    # Someone locks the server in SCP's console: the periodic re-read notices.
    emulator.patch(sid, locked=True)
    wait_for(
        lambda: ready(cluster, "db-1") == ("True", "ServerLocked", 1), within=90, what="re-read"
    )

    # A spec change is observed again at once: Ready describes the new generation.
    control_plane.kubectl(
        "annotate", "scpvs", "db-1", "-n", cluster.ns, "team=storage", "--overwrite"
    )  # metadata only: not a new generation, nothing to observe
    control_plane.kubectl(
        "patch", "scpvs", "db-1", "-n", cluster.ns, "--type=merge",
        "-p", '{"spec":{"region":"kr-west1"}}',
    )  # fmt: skip
    wait_for(lambda: ready(cluster, "db-1") == ("True", "ServerLocked", 2), what="generation 2")

    # Deleted while locked: held, and the reason says it is the lock.
    cluster.delete("db-1")
    wait_for(lambda: cluster.reason("db-1") == "ServerLocked", what="held")
    wide = control_plane.kubectl("get", "scpvs", "-n", cluster.ns, "-o", "wide").stdout
    described = control_plane.kubectl("describe", "scpvs", "db-1", "-n", cluster.ns).stdout
    with capsys.disabled():  # the transcript a person sees (kept in the test log)
        print(f"\n$ kubectl get scpvs -o wide\n{wide}\n$ kubectl describe scpvs db-1\n{described}")
    header, row = wide.splitlines()[:2]
    assert header.split()[:7] == ["NAME", "SERVER-ID", "POLICY", "STATE", "READY", "REASON", "AGE"]
    assert "ServerLocked" in row
    assert f"POST /v1/servers/{sid}/unlock" in row  # the Message column (-o wide)
    assert "Warning  ServerLocked" in " ".join(described.split("\n"))
    events = [e for e in cluster.events("db-1") if e["reason"] == "ServerLocked"]
    assert events
    assert events[0]["type"] == "Warning"
    assert events[0]["source"]["component"] == "scp-operator"

    # Unlocked: deleted, and the volume that stays is named.
    emulator.patch(sid, locked=False)
    wait_for(lambda: cluster.get("db-1") is None, what="deleted after unlock")
    (kept,) = [e for e in cluster.events("db-1") if e["reason"] == "VolumesRetained"]
    assert kept["type"] == "Warning"
    assert KEEP in kept["message"]
    assert "0000000000go" not in kept["message"]


def test_a_held_deletion_waits_with_one_write_per_retry_and_orphan_ends_the_wait(
    cluster: Cluster, control_plane: ControlPlane, emulator: ThreadedEmulator, make_operator: Any
) -> None:
    """On the real API server: the hold shows when it tries again (status.deletion
    .nextAttemptTime), and switching to Orphan releases it at once — through the watch of
    ``fieldSelector=spec.deletionPolicy=Orphan`` (a CRD selectableField), not after the delay."""
    slow = {
        "SCP_OPERATOR_BACKOFF_BASE": "600",
        "SCP_OPERATOR_BACKOFF_CAP": "600",
        "SCP_OPERATOR_SLOW_BACKOFF_BASE": "600",
        "SCP_OPERATOR_SLOW_BACKOFF_CAP": "600",
    }
    operator: OperatorProcess = make_operator(**slow)
    operator.start()
    sid = emulator.seed(name="waits", locked=True)["id"]
    cluster.create_vs("waits", sid)
    wait_for(lambda: ready(cluster, "waits") is not None, what="observed")
    cluster.delete("waits")
    wait_for(lambda: cluster.reason("waits") == "ServerLocked", what="held")
    stored = cluster.get("waits")
    assert stored is not None
    assert stored["status"]["deletion"]["nextAttemptTime"]  # minutes away: 300-600 s
    assert len(emulator.requests(method="DELETE", path_contains=sid)) == 1
    control_plane.kubectl(
        "patch", "scpvs", "waits", "-n", cluster.ns, "--type=merge",
        "-p", '{"spec":{"deletionPolicy":"Orphan"}}',
    )  # fmt: skip
    wait_for(lambda: cluster.get("waits") is None, within=60, what="released long before 300 s")
    assert len(emulator.requests(method="DELETE", path_contains=sid)) == 1  # the server stays
    assert emulator.server(sid) is not None  # still in SCP
