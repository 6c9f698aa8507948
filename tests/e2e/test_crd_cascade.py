"""Deleting the VirtualServer CRD deletes every VirtualServer — and must delete no server.

The owner who deletes a CRD removes a type, not a fleet: the operator lets every object go
without calling SCP and says so loudly, with a ``CrdDeleted`` warning event per object (events
are core objects, so they outlive the VirtualServers they describe).

These tests delete the CRD, so they run on a private control plane: the session's CRD, shared by
the other e2e tests, stays untouched. Each test installs a fresh CRD and, whatever happens, ends
with it deleted (finalizers left behind are removed by hand, as an administrator would).
"""

from __future__ import annotations

import functools
import json
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from scp_emulator.config import EmulatorConfig
from scp_emulator.testing import ThreadedEmulator
from scp_operator import constants
from scp_testenv import ControlPlane, wait_for
from scp_testenv.operator_process import OperatorProcess
from tests.e2e import faults_support as fs
from tests.e2e.operator_fixtures import FAST, Cluster

# How the cascade completes: while a CRD terminates, the API server's discovery lists its
# resource without the patch verb (patches still work), and Kopf stops serving it ("Non-patchable
# resources will not be served"); the delete handler never sees the cascade. The operator's
# handler on the CRD itself (handlers.release_on_crd_deletion) then releases every object through
# the decision table's CrdDeleted row, with a JSON patch guarded by the finalizer list, and posts
# one warning per object. Before that handler existed, `kubectl delete crd` hung forever.


@pytest.fixture(scope="module")
def plane() -> Iterator[ControlPlane]:
    with fs.private_control_plane() as cp:
        yield cp


@pytest.fixture
def cluster(plane: ControlPlane) -> Iterator[Cluster]:
    """A fresh CRD and namespace (events outlive objects) for the test; the CRD is deleted
    afterwards, by hand if the operator did not."""
    namespace = f"cascade-{uuid.uuid4().hex[:6]}"
    plane.kubectl("create", "namespace", namespace)
    fs.install_crd(plane)
    yield Cluster(plane, namespace)
    remove_crd(plane, namespace)


def remove_crd(plane: ControlPlane, namespace: str) -> None:
    plane.kubectl("delete", "crd", constants.CRD_NAME, "--wait=false", "--ignore-not-found")
    deadline = time.monotonic() + 60
    while plane.kubectl("get", "crd", constants.CRD_NAME, check=False).returncode == 0:
        names = plane.kubectl(
            "get", "scpvs", "-n", namespace, "-o", "name", check=False
        ).stdout.split()
        for name in names:
            plane.kubectl(
                "patch",
                name,
                "-n",
                namespace,
                "--type=merge",
                "-p",
                json.dumps({"metadata": {"finalizers": None}}),
                check=False,
            )
        if time.monotonic() > deadline:
            raise AssertionError("the CRD did not go even with its objects' finalizers removed")
        time.sleep(0.5)


@pytest.fixture
def emu() -> Iterator[ThreadedEmulator]:
    with ThreadedEmulator(EmulatorConfig(delete_delay=0.5)) as emulator:
        yield emulator


@pytest.fixture
def operator(
    plane: ControlPlane, cluster: Cluster, emu: ThreadedEmulator, tmp_path: Path
) -> Iterator[OperatorProcess]:
    proc = OperatorProcess(
        kubeconfig=plane.kubeconfig,
        log_path=tmp_path / "operator.log",
        namespaces=[cluster.ns],
        env={
            **emu.scp_env(),
            **FAST,
            # a blocked object is not retried during a test: any DELETE seen is the cascade's
            "SCP_OPERATOR_BACKOFF_BASE": "600",
            "SCP_OPERATOR_BACKOFF_CAP": "600",
        },
    )
    proc.start()
    yield proc
    proc.stop()


def fleet(cluster: Cluster, emu: ThreadedEmulator) -> dict[str, str]:
    """A mix of objects (object name -> server id), all held by the operator's finalizer."""
    servers = {name: emu.seed(name=name)["id"] for name in ("web-0", "web-1", "guarded")}
    servers["stuck"] = emu.seed(name="stuck", locked=True)["id"]
    for name, sid in servers.items():
        protected = {constants.PROTECTION_ANNOTATION: "true"} if name == "guarded" else None
        cluster.create_vs(name, sid, annotations=protected)
    cluster.create_vs("web-0-twin", servers["web-0"])  # two objects naming one server
    servers["web-0-twin"] = servers["web-0"]
    cluster.create_vs("orphan", servers["web-1"], deletionPolicy="Orphan")
    servers["orphan"] = servers["web-1"]
    for name in servers:
        wait_for(functools.partial(cluster.has_finalizer, name), what=f"{name} finalizer")
    return servers


def cascade_events(cluster: Cluster, reason: str = "CrdDeleted") -> dict[str, dict[str, Any]]:
    events = json.loads(cluster.cp.kubectl("get", "events", "-n", cluster.ns, "-o", "json").stdout)
    return {e["involvedObject"]["name"]: e for e in events["items"] if e["reason"] == reason}


def gone(cluster: Cluster, name: str) -> bool:
    """The object is gone (or its whole type is)."""
    out = cluster.cp.kubectl("get", "scpvs", name, "-n", cluster.ns, check=False)
    return out.returncode != 0 and (
        "NotFound" in out.stderr or "doesn't have a resource type" in out.stderr
    )


def assert_no_server_deleted(
    emu: ThreadedEmulator, servers: dict[str, str], before: list[Any]
) -> None:
    assert emu.requests(method="DELETE") == before, "SCP saw a DELETE during the CRD cascade"
    for name, sid in servers.items():
        server = emu.server(sid)
        assert server is not None, f"{name}'s server is gone"
        assert server["state"] == "ACTIVE", (name, server["state"])


def test_deleting_the_crd_deletes_no_server_and_the_operator_carries_on(
    plane: ControlPlane, cluster: Cluster, emu: ThreadedEmulator, operator: OperatorProcess
) -> None:
    servers = fleet(cluster, emu)
    cluster.delete("stuck")  # already terminating, blocked by a lock, when the CRD goes
    wait_for(lambda: cluster.reason("stuck") == "ServerLocked", what="stuck is blocked")
    before = emu.requests(method="DELETE")
    assert [c["status"] for c in before] == [409]

    plane.kubectl("delete", "crd", constants.CRD_NAME, "--wait=false")
    deadline = time.monotonic() + 8
    while time.monotonic() < deadline:
        assert_no_server_deleted(emu, servers, before)
        assert operator.running, operator.tail()
        time.sleep(1)
    # every object either still holds its finalizer or went with a CrdDeleted warning
    released = {name for name in servers if gone(cluster, name)}
    assert released <= set(cascade_events(cluster)) | set(cascade_events(cluster, "Orphaned"))

    # an administrator clears what is left; the CRD comes back (a reinstall after a mistaken
    # uninstall): the same operator process serves the new objects
    remove_crd(plane, cluster.ns)
    assert_no_server_deleted(emu, servers, before)
    fs.install_crd(plane)
    # The new object names a server that objects of the old CRD named (web-0 and its twin):
    # nothing but the API server's answer may decide who shares it, or the old objects would
    # linger as phantom holders in this process and hold the new one forever (issue 9, defect 2).
    sid = servers["web-0"]
    cluster.create_vs("again", sid)
    wait_for(lambda: cluster.has_finalizer("again"), within=90, what="finalizer after reinstall")
    cluster.delete("again", wait=True, timeout="90s")
    assert [c["status"] for c in emu.requests(method="DELETE", path_contains=sid)] == [202]
    assert operator.running, operator.tail()


def test_the_crd_cascade_lets_every_object_go_with_a_warning_per_object(
    plane: ControlPlane, cluster: Cluster, emu: ThreadedEmulator, operator: OperatorProcess
) -> None:
    servers = fleet(cluster, emu)
    before = emu.requests(method="DELETE")
    plane.kubectl("delete", "crd", constants.CRD_NAME, "--wait=false")
    try:
        wait_for(
            lambda: plane.kubectl("get", "crd", constants.CRD_NAME, check=False).returncode != 0,
            within=20,
            what="the CRD to finish deleting",
        )
    finally:
        assert_no_server_deleted(emu, servers, before)
    events = cascade_events(cluster)
    assert set(events) == set(servers) - {"orphan"}  # Orphan goes as Orphaned, before the CRD
    for name, event in events.items():
        assert event["type"] == "Warning"
        assert f"WITHOUT deleting server {servers[name]}" in event["message"]
        assert "left running in SCP" in event["message"]
    assert operator.running, operator.tail()


def test_the_crd_cascade_does_not_wait_for_a_blocked_objects_backoff(
    plane: ControlPlane, cluster: Cluster, emu: ThreadedEmulator, operator: OperatorProcess
) -> None:
    sid = emu.seed(name="stuck", locked=True)["id"]
    cluster.create_vs("stuck", sid)
    wait_for(lambda: cluster.has_finalizer("stuck"), what="finalizer")
    cluster.delete("stuck")
    wait_for(lambda: cluster.reason("stuck") == "ServerLocked", what="held, next try in 5-10 min")
    plane.kubectl("delete", "crd", constants.CRD_NAME, "--wait=false")
    wait_for(lambda: gone(cluster, "stuck"), within=15, what="released by the cascade")
    assert "stuck" in cascade_events(cluster)
    assert [c["status"] for c in emu.requests(method="DELETE")] == [409]
    assert emu.server(sid)["state"] == "ACTIVE"  # type: ignore[index]


@pytest.fixture
def operators(cluster: Cluster, emu: ThreadedEmulator) -> Iterator[list[OperatorProcess]]:
    """Operator processes a test starts and stops itself (all stopped at teardown, before the
    emulator and before the cluster fixture removes the CRD)."""
    started: list[OperatorProcess] = []
    yield started
    for proc in started:
        proc.stop()


def start_operator(
    plane: ControlPlane, cluster: Cluster, emu: ThreadedEmulator, log: Path
) -> OperatorProcess:
    proc = OperatorProcess(
        kubeconfig=plane.kubeconfig,
        log_path=log,
        namespaces=[cluster.ns],
        env={**emu.scp_env(), **FAST},
    )
    proc.start()
    return proc


def test_a_crd_deleted_while_the_operator_is_down_finishes_deleting_when_it_starts(
    plane: ControlPlane,
    cluster: Cluster,
    emu: ThreadedEmulator,
    operators: list[OperatorProcess],
    tmp_path: Path,
) -> None:
    log = tmp_path / "operator.log"
    operators.append(start_operator(plane, cluster, emu, log))
    servers = {name: emu.seed(name=name)["id"] for name in ("guarded", "kept", "doomed")}
    cluster.create_vs(
        "guarded", servers["guarded"], annotations={constants.PROTECTION_ANNOTATION: "true"}
    )
    cluster.create_vs("kept", servers["kept"], deletionPolicy="Orphan")
    cluster.create_vs("doomed", servers["doomed"], deletionPolicy="Delete")
    for name in servers:
        wait_for(
            lambda name=name: (
                cluster.has_finalizer(name) and cluster.reason(name, "Ready") == "ServerFound"
            ),
            what=f"{name} held and observed",
        )
    operators[0].stop()

    plane.kubectl("delete", "crd", constants.CRD_NAME, "--wait=false")
    time.sleep(2)
    crd = json.loads(plane.kubectl("get", "crd", constants.CRD_NAME, "-o", "json").stdout)
    assert crd["metadata"].get("deletionTimestamp"), "the CRD should be terminating"
    assert all(not gone(cluster, name) for name in servers), "finalizers hold every object"

    started = time.monotonic()
    operators.append(start_operator(plane, cluster, emu, log))
    try:
        wait_for(
            lambda: plane.kubectl("get", "crd", constants.CRD_NAME, check=False).returncode != 0,
            within=60,
            what="the CRD to finish deleting once the operator runs",
        )
    finally:
        assert emu.requests(method="DELETE") == [], "SCP saw a DELETE during the CRD cascade"
    took = time.monotonic() - started
    assert all(emu.server(sid)["state"] == "ACTIVE" for sid in servers.values())  # type: ignore[index]
    crd_deleted = cascade_events(cluster)
    for name in ("guarded", "doomed"):
        assert name in crd_deleted, f"no CrdDeleted event for {name} ({took:.0f}s)"
        assert crd_deleted[name]["type"] == "Warning"
        assert f"WITHOUT deleting server {servers[name]}" in crd_deleted[name]["message"]
    # the Orphan object goes by its own policy (the table's first row: an "Orphaned" event) or
    # by the cascade; either way its server is kept, and the event says so
    kept = crd_deleted.get("kept") or cascade_events(cluster, "Orphaned").get("kept")
    assert kept is not None, "no event for the Orphan object"
    assert servers["kept"] in kept["message"]
    assert "WITHOUT deleting" in kept["message"] or "kept in SCP" in kept["message"]
    assert operators[-1].running, operators[-1].tail()
