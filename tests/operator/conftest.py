"""The operator tier: the real Kopf operator in-process, kmock as the Kubernetes API, and the
SCP emulator over real HTTP.

kmock's known limits shape these tests (see ../shared kopf notes in the README): it never bumps
``resourceVersion`` and allows what the real API forbids, so anything about scale, schema or
RBAC belongs to the e2e tier on a real kube-apiserver.
"""

from __future__ import annotations

import asyncio
import contextlib
import uuid
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import kmock
import kopf
import pytest
import yaml

import scp_operator.handlers  # noqa: F401  (registers the handlers on Kopf's default registry)
from scp_emulator.config import DEFAULT_ACCESS_KEY, DEFAULT_SECRET_KEY, EmulatorConfig
from scp_emulator.server import EmulatorServer
from scp_operator import constants
from tests.conftest import REPO

pytestmark = pytest.mark.operator

VS = f"{constants.GROUP}/{constants.VERSION}/{constants.PLURAL}"
CRDS = "apiextensions.k8s.io/v1/customresourcedefinitions"
NS = "ns1"

FAST_ENV = {
    "SCP_ACCESS_KEY": DEFAULT_ACCESS_KEY,
    "SCP_SECRET_KEY": DEFAULT_SECRET_KEY,
    "SCP_OPERATOR_BACKOFF_BASE": "1",
    "SCP_OPERATOR_BACKOFF_CAP": "2",
    "SCP_OPERATOR_SLOW_BACKOFF_BASE": "1",
    "SCP_OPERATOR_SLOW_BACKOFF_CAP": "2",
    "SCP_OPERATOR_HOLD_RECHECK_INTERVAL": "1",
    "SCP_OPERATOR_CONFIRM_POLL_INTERVAL": "1",
    "SCP_OPERATOR_EVENT_REPEAT_INTERVAL": "3600",
    "SCP_OPERATOR_METRICS_PORT": "0",
    # kmock serves no coordination.k8s.io Leases, and each test runs one in-process operator.
    "SCP_OPERATOR_LEASE_NAME": "",
}


@pytest.fixture
async def emulator() -> AsyncIterator[EmulatorServer]:
    async with EmulatorServer(EmulatorConfig(delete_delay=0.3)) as emu:
        yield emu


@pytest.fixture
def k8s(kmock: kmock.KubernetesEmulator, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Any:
    """kmock dressed as a cluster with our CRD installed, and a kubeconfig pointing at it."""
    verbs = {"get", "list", "watch", "create", "patch", "update", "delete"}
    kmock.resources["v1/namespaces"] = kmock.ResourceInfo(
        kind="Namespace", namespaced=False, verbs=verbs
    )
    kmock.resources["v1/events"] = kmock.ResourceInfo(kind="Event", namespaced=True, verbs=verbs)
    kmock.resources[CRDS] = kmock.ResourceInfo(
        kind="CustomResourceDefinition", namespaced=False, verbs=verbs
    )
    kmock.resources[VS] = kmock.ResourceInfo(
        kind=constants.KIND,
        namespaced=True,
        subresources={"status"},
        verbs=verbs,
        shortnames={constants.SHORT_NAME},
        categories={constants.CATEGORY},
    )
    kmock.objects["v1/namespaces", None, NS] = {
        "apiVersion": "v1",
        "kind": "Namespace",
        "metadata": {"name": NS, "resourceVersion": "1"},
    }
    crd = yaml.safe_load((REPO / "crds" / f"{constants.CRD_NAME}.yaml").read_text())
    crd["metadata"]["resourceVersion"] = "1"
    kmock.objects[CRDS, None, constants.CRD_NAME] = crd
    kubeconfig = tmp_path / "kubeconfig"
    kubeconfig.write_text(
        yaml.safe_dump(
            {
                "apiVersion": "v1",
                "kind": "Config",
                "current-context": "kmock",
                "clusters": [{"name": "kmock", "cluster": {"server": str(kmock.url).rstrip("/")}}],
                "users": [{"name": "kmock", "user": {"token": "kmock-token"}}],
                "contexts": [{"name": "kmock", "context": {"cluster": "kmock", "user": "kmock"}}],
            }
        )
    )
    monkeypatch.setenv("KUBECONFIG", str(kubeconfig))
    return kmock


@pytest.fixture
def posted(monkeypatch: pytest.MonkeyPatch) -> list[dict[str, Any]]:
    """Every event the operator posts, as it posts it.

    A spy rather than kmock's storage: Kopf names events by ``generateName``, which kmock does
    not implement, so kmock keeps only the first event of a test.
    """
    from scp_operator import events

    log: list[dict[str, Any]] = []
    real = events.kopf.event

    def spy(body: Any, *, type: str, reason: str, message: str) -> None:
        log.append(
            {
                "name": body.get("metadata", {}).get("name"),
                "type": type,
                "reason": reason,
                "message": message,
            }
        )
        real(body, type=type, reason=reason, message=message)

    monkeypatch.setattr(events.kopf, "event", spy)

    # The periodic re-read posts its events itself (scp_operator.handlers.resync), not via Kopf.
    from scp_operator import kube_status

    real_post = kube_status.post_event

    async def post_spy(
        kube: Any, involved: Any, *, warning: bool, reason: str, message: str
    ) -> None:
        log.append(
            {
                "name": (involved.get("metadata") or {}).get("name"),
                "type": "Warning" if warning else "Normal",
                "reason": reason,
                "message": message,
            }
        )
        await real_post(kube, involved, warning=warning, reason=reason, message=message)

    monkeypatch.setattr(kube_status, "post_event", post_spy)
    return log


class Operator:
    """Start and stop the real operator in this event loop (restartable)."""

    def __init__(self) -> None:
        self.task: asyncio.Task[None] | None = None
        self.stop_flag: asyncio.Event | None = None

    async def start(self) -> None:
        self.stop_flag, ready = asyncio.Event(), asyncio.Event()
        self.task = asyncio.create_task(
            kopf.operator(
                registry=kopf.get_default_registry(),
                settings=kopf.OperatorSettings(),
                clusterwide=True,
                standalone=True,
                stop_flag=self.stop_flag,
                ready_flag=ready,
            )
        )
        done, _ = await asyncio.wait(
            {self.task, asyncio.ensure_future(ready.wait())},
            timeout=15,
            return_when=asyncio.FIRST_COMPLETED,
        )
        if self.task in done:
            self.task.result()  # re-raise what stopped it
        assert ready.is_set(), "operator did not become ready"

    async def stop(self) -> None:
        if self.task is not None and self.stop_flag is not None:
            self.stop_flag.set()
            with contextlib.suppress(asyncio.CancelledError):
                await asyncio.wait_for(self.task, timeout=15)
            self.task = None


@contextlib.asynccontextmanager
async def running_operator(
    monkeypatch: pytest.MonkeyPatch, emulator: EmulatorServer, **env: str
) -> AsyncIterator[Operator]:
    """The operator with fast test schedules plus ``env`` overrides (``SCP_...=value``)."""
    for name, value in {**FAST_ENV, "SCP_ENDPOINT": emulator.url, **env}.items():
        monkeypatch.setenv(name, value)
    op = Operator()
    await op.start()
    try:
        yield op
    finally:
        await op.stop()


@pytest.fixture
async def operator(
    k8s: Any, emulator: EmulatorServer, monkeypatch: pytest.MonkeyPatch
) -> AsyncIterator[Operator]:
    async with running_operator(monkeypatch, emulator) as op:
        yield op


def vs_body(name: str, server_id: str, **spec: Any) -> dict[str, Any]:
    annotations = spec.pop("annotations", None)
    meta: dict[str, Any] = {
        "name": name,
        "namespace": NS,
        "uid": str(uuid.uuid4()),
        "resourceVersion": "1",
        "generation": 1,
        "creationTimestamp": "2026-11-26T00:00:00Z",
    }
    if annotations:
        meta["annotations"] = annotations
    return {
        "apiVersion": constants.API_VERSION,
        "kind": constants.KIND,
        "metadata": meta,
        "spec": {"serverId": server_id, "deletionPolicy": "Delete", **spec},
    }
