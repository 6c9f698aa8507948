"""One operator instance at a time, on a real API server: the second one waits for the Lease.

Two ``scp-operator run`` processes serve the same namespace (the second as someone would start a
copy by hand). The second must not become ready nor touch anything while the first holds the
Lease, must say which instance it waits for, and must take over promptly when the first stops:
at once after a clean stop (the Lease is handed back), within about one lease duration after a
SIGKILL. The e2e FAST settings use a 3-second Lease; each test's operators serve only the test's
namespace, so their Lease (in kube-system, named after that namespace) is the test's own.
"""

from __future__ import annotations

import json
import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from scp_emulator.testing import ThreadedEmulator
from scp_operator.lease import WHY_WAITING, effective_lease_name
from scp_testenv import ControlPlane, wait_for
from scp_testenv.operator_process import READY_LINE, OperatorProcess
from tests.e2e.operator_fixtures import FAST, Cluster

pytestmark = pytest.mark.e2e

LEASE_NAMESPACE = "kube-system"
DURATION = float(FAST["SCP_OPERATOR_LEASE_DURATION"])


@pytest.fixture
def instances(
    control_plane: ControlPlane,
    namespace: str,
    emulator: ThreadedEmulator,
    tmp_path: Path,
    crd: None,
) -> Iterator[Callable[[str], OperatorProcess]]:
    """Factory: operator processes serving the test's namespace, each with its own log."""
    made: list[OperatorProcess] = []

    def make(tag: str) -> OperatorProcess:
        proc = OperatorProcess(
            kubeconfig=control_plane.kubeconfig,
            log_path=tmp_path / f"operator-{tag}.log",
            namespaces=[namespace],
            env={**emulator.scp_env(), **FAST},
        )
        made.append(proc)
        return proc

    yield make
    for proc in made:
        proc.stop()


def lease(control_plane: ControlPlane, namespace: str) -> dict[str, Any] | None:
    """The Lease the test's operators compete for, or None."""
    name = effective_lease_name("scp-operator", [namespace])
    out = control_plane.kubectl(
        "get", "lease", name, "-n", LEASE_NAMESPACE, "-o", "json", check=False
    )
    if out.returncode != 0:
        assert "NotFound" in out.stderr, out.stderr
        return None
    result: dict[str, Any] = json.loads(out.stdout)
    return result


def holder(control_plane: ControlPlane, namespace: str) -> str:
    return str(((lease(control_plane, namespace) or {}).get("spec") or {}).get("holderIdentity"))


def deleted_once_by_the_holder(
    cluster: Cluster, emulator: ThreadedEmulator, name: str
) -> list[dict[str, Any]]:
    """Create a VirtualServer, delete it, and return SCP's DELETE requests for its server."""
    sid = emulator.seed(name=name)["id"]
    cluster.create_vs(name, sid)
    wait_for(lambda: cluster.has_finalizer(name), what=f"{name}: the operator's finalizer")
    cluster.delete(name)
    wait_for(lambda: cluster.get(name) is None, what=f"{name}: deleted and released")
    requests: list[dict[str, Any]] = emulator.requests(method="DELETE", path_contains=sid)
    return requests


def waiting(proc: OperatorProcess) -> bool:
    return WHY_WAITING in proc.log()


def test_a_second_instance_waits_says_for_whom_and_does_not_act(
    control_plane: ControlPlane,
    namespace: str,
    cluster: Cluster,
    emulator: ThreadedEmulator,
    instances: Callable[[str], OperatorProcess],
) -> None:
    first = instances("first")
    first.start()
    assert first.proc is not None
    held_by = holder(control_plane, namespace)
    assert f"/{first.proc.pid}/" in held_by, held_by

    second = instances("second")
    second.spawn()
    wait_for(lambda: waiting(second), within=30, what="the second instance to say why it waits")
    said = next(line for line in second.log().splitlines() if WHY_WAITING in line)
    lease_name = effective_lease_name("scp-operator", [namespace])
    assert f"Lease {LEASE_NAMESPACE}/{lease_name} is held by {held_by}" in said, said

    name = f"once-{uuid.uuid4().hex[:6]}"
    requests = deleted_once_by_the_holder(cluster, emulator, name)
    assert [r["status"] for r in requests] == [202]
    assert second.running
    assert READY_LINE not in second.log()
    assert name not in second.log()
    assert holder(control_plane, namespace) == held_by

    # A waiting instance stops at once when asked (it holds nothing to hand back).
    began = time.monotonic()
    second.stop(grace=10)
    assert second.proc is not None
    assert second.proc.returncode is not None
    assert time.monotonic() - began < 10


def test_a_clean_stop_hands_the_lease_over_at_once(
    control_plane: ControlPlane,
    namespace: str,
    cluster: Cluster,
    emulator: ThreadedEmulator,
    instances: Callable[[str], OperatorProcess],
) -> None:
    first = instances("first")
    first.start()
    second = instances("second")
    second.spawn()
    wait_for(lambda: waiting(second), within=30, what="the second instance to wait")

    first.stop()
    stopped = time.monotonic()
    second.wait_ready(timeout=30)
    took = time.monotonic() - stopped
    assert took < DURATION + 2, f"took over {took:.1f}s after a clean stop"
    assert second.proc is not None
    assert f"/{second.proc.pid}/" in holder(control_plane, namespace)
    requests = deleted_once_by_the_holder(cluster, emulator, f"after-{uuid.uuid4().hex[:6]}")
    assert [r["status"] for r in requests] == [202]


def test_after_a_sigkill_the_waiting_instance_takes_over_within_the_lease_duration(
    control_plane: ControlPlane,
    namespace: str,
    cluster: Cluster,
    emulator: ThreadedEmulator,
    instances: Callable[[str], OperatorProcess],
) -> None:
    first = instances("first")
    first.start()
    killed_holder = holder(control_plane, namespace)
    second = instances("second")
    second.spawn()
    wait_for(lambda: waiting(second), within=30, what="the second instance to wait")

    first.kill()  # no cleanup: the Lease is not handed back and must expire
    killed = time.monotonic()
    second.wait_ready(timeout=30)
    took = time.monotonic() - killed
    # Not before the Lease expired (it was renewed at most a third of it before the kill), and
    # soon after: one duration, one poll, and the operator's own start.
    assert DURATION * 2 / 3 - 0.5 < took < DURATION + 6, f"took over {took:.1f}s after SIGKILL"
    assert f"taken over from {killed_holder} (expired)" in second.log()
    requests = deleted_once_by_the_holder(cluster, emulator, f"killed-{uuid.uuid4().hex[:6]}")
    assert [r["status"] for r in requests] == [202]
