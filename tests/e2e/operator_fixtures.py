"""Fixtures for the e2e tier: CRD installed, an SCP emulator, the operator as a real process."""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from scp_emulator.config import EmulatorConfig
from scp_emulator.testing import ThreadedEmulator
from scp_operator import constants
from scp_testenv import ControlPlane
from scp_testenv.operator_process import OperatorProcess
from tests.conftest import REPO

CRD_FILE = REPO / "crds" / f"{constants.CRD_NAME}.yaml"
ACCOUNT_CRD_FILE = REPO / "crds" / "scpaccounts.virtualserver.scp.dev.yaml"
FAST = {
    "SCP_OPERATOR_BACKOFF_BASE": "1",
    "SCP_OPERATOR_BACKOFF_CAP": "2",
    "SCP_OPERATOR_SLOW_BACKOFF_BASE": "1",
    "SCP_OPERATOR_SLOW_BACKOFF_CAP": "2",
    "SCP_OPERATOR_HOLD_RECHECK_INTERVAL": "1",
    "SCP_OPERATOR_CONFIRM_POLL_INTERVAL": "1",
    "SCP_OPERATOR_METRICS_PORT": "0",
    # Each operator serves only its test's namespace, so its Lease (kube-system, named after that
    # namespace) is its own; a short one lets a restart after SIGKILL take over within seconds.
    "SCP_OPERATOR_LEASE_DURATION": "3",
}


@pytest.fixture(scope="session")
def crd(control_plane: ControlPlane) -> None:
    control_plane.kubectl("apply", "-f", str(CRD_FILE), "-f", str(ACCOUNT_CRD_FILE))
    control_plane.kubectl(
        "wait",
        "--for=condition=Established",
        f"crd/{constants.CRD_NAME}",
        "crd/scpaccounts.virtualserver.scp.dev",
        "--timeout=60s",
    )


@pytest.fixture
def emulator() -> Iterator[ThreadedEmulator]:
    with ThreadedEmulator(EmulatorConfig(delete_delay=0.5)) as emu:
        yield emu


class Cluster:
    """kubectl shortcuts for one test namespace."""

    def __init__(self, cp: ControlPlane, namespace: str) -> None:
        self.cp = cp
        self.ns = namespace

    def apply(self, manifest: dict[str, Any]) -> None:
        self.cp.kubectl("apply", "-n", self.ns, "-f", "-", input=json.dumps(manifest))

    def create_vs(self, name: str, server_id: str, **spec: Any) -> None:
        annotations = spec.pop("annotations", None)
        meta: dict[str, Any] = {"name": name}
        if annotations:
            meta["annotations"] = annotations
        self.apply(
            {
                "apiVersion": constants.API_VERSION,
                "kind": constants.KIND,
                "metadata": meta,
                "spec": {"serverId": server_id, **spec},
            }
        )

    def get(self, name: str) -> dict[str, Any] | None:
        out = self.cp.kubectl("get", "scpvs", name, "-n", self.ns, "-o", "json", check=False)
        if out.returncode != 0:
            if "NotFound" in out.stderr:
                return None
            raise AssertionError(out.stderr)
        result: dict[str, Any] = json.loads(out.stdout)
        return result

    def has_finalizer(self, name: str) -> bool:
        obj = self.get(name) or {}
        return constants.FINALIZER in obj.get("metadata", {}).get("finalizers", [])

    def condition(self, name: str, type_: str) -> dict[str, Any] | None:
        for cond in ((self.get(name) or {}).get("status") or {}).get("conditions") or []:
            if cond.get("type") == type_:
                return cond  # type: ignore[no-any-return]
        return None

    def reason(self, name: str, type_: str = "Deleting") -> str | None:
        return (self.condition(name, type_) or {}).get("reason")

    def delete(self, *names: str, wait: bool = False, timeout: str = "60s") -> Any:
        return self.cp.kubectl(
            "delete",
            "scpvs",
            *names,
            "-n",
            self.ns,
            f"--wait={str(wait).lower()}",
            f"--timeout={timeout}",
        )

    def events(self, name: str) -> list[dict[str, Any]]:
        out = self.cp.kubectl(
            "get",
            "events",
            "-n",
            self.ns,
            "-o",
            "json",
            f"--field-selector=involvedObject.name={name}",
        )
        items: list[dict[str, Any]] = json.loads(out.stdout)["items"]
        return items


@pytest.fixture
def cluster(control_plane: ControlPlane, namespace: str, crd: None) -> Cluster:
    return Cluster(control_plane, namespace)


@pytest.fixture
def make_operator(
    control_plane: ControlPlane,
    namespace: str,
    emulator: ThreadedEmulator,
    tmp_path: Path,
    crd: None,
) -> Iterator[Callable[..., OperatorProcess]]:
    """Factory: an operator process watching the test's namespace (stopped at teardown)."""
    started: list[OperatorProcess] = []

    def make(**env: str) -> OperatorProcess:
        proc = OperatorProcess(
            kubeconfig=control_plane.kubeconfig,
            log_path=tmp_path / "operator.log",
            namespaces=[namespace],
            env={
                **emulator.scp_env(),
                **FAST,
                **env,
            },
        )
        started.append(proc)
        return proc

    yield make
    for proc in started:
        proc.stop()


@pytest.fixture
def operator(make_operator: Callable[..., OperatorProcess]) -> OperatorProcess:
    proc = make_operator()
    proc.start()
    return proc
