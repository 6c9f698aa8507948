"""Helpers for the chart tests on a cluster: run the operator the way the chart's Deployment
would, read objects and the API server's audit log. (The chart's path, values and rendering:
``tests/chart_support.py``; the control plane and releases the chart tests share:
``tests/e2e/chart_fixtures.py``.)

The operator runs as a local process, not a pod (no kubelet here), but with exactly what the pod
would get: the arguments of the Deployment's container, the environment of its ConfigMap, the
credentials Secret written to a directory the way the kubelet mounts it (the volume's ``items``
included), and a kubeconfig holding a real token of the chart's ServiceAccount (TokenRequest).
"""

from __future__ import annotations

import base64
import contextlib
import json
import os
import subprocess
import sys
import urllib.error
import urllib.request
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from scp_operator import constants
from scp_testenv import ControlPlane, free_port

OPERATOR = Path(sys.executable).parent / "scp-operator"

#: Audit policy: metadata of every request made by any service account (the chart's included).
AUDIT_POLICY = """\
apiVersion: audit.k8s.io/v1
kind: Policy
omitStages: [RequestReceived]
rules:
  - level: Metadata
    userGroups: ["system:serviceaccounts"]
  - level: None
"""


def get_json(cp: ControlPlane, *args: str, kubeconfig: Path | None = None) -> Any:
    return json.loads(cp.kubectl("get", *args, "-o", "json", kubeconfig=kubeconfig).stdout)


def service_account_kubeconfig(cp: ControlPlane, namespace: str, name: str) -> Path:
    """A kubeconfig with a real token (TokenRequest) of an existing ServiceAccount."""
    token = cp.kubectl("create", "token", name, "-n", namespace, "--duration=1h").stdout.strip()
    return cp.kubeconfig_for_token(token, f"{namespace}-{name}")


@dataclass
class OperatorProcess:
    """A running operator started from a release's Deployment."""

    process: subprocess.Popen[bytes]
    log_path: Path
    health_url: str
    metrics_url: str | None
    args: list[str]
    env: dict[str, str]

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")

    def healthy(self) -> bool:
        return fetch(self.health_url) is not None

    def metrics(self) -> str | None:
        return fetch(self.metrics_url) if self.metrics_url else None


def fetch(url: str) -> str | None:
    """The body of a 200 answer from a loopback URL, else None."""
    try:
        with urllib.request.urlopen(url, timeout=2) as response:  # noqa: S310 (loopback)
            return str(response.read().decode()) if response.status == 200 else None
    except (OSError, urllib.error.URLError):
        return None


def _container(deployment: Mapping[str, Any]) -> dict[str, Any]:
    (container,) = deployment["spec"]["template"]["spec"]["containers"]
    result: dict[str, Any] = container
    return result


def mount_credentials(
    cp: ControlPlane, namespace: str, deployment: Mapping[str, Any], target: Path
) -> Path:
    """Write the credentials Secret into ``target`` as the kubelet would mount the volume."""
    container = _container(deployment)
    volumes = {v["name"]: v for v in deployment["spec"]["template"]["spec"]["volumes"]}
    env_dir = None
    for mount in container["volumeMounts"]:
        volume = volumes[mount["name"]]
        if "secret" not in volume:
            continue
        assert "subPath" not in mount, "a subPath mount would never see a rotated Secret"
        env_dir = mount["mountPath"]
        secret = get_json(cp, "secret", volume["secret"]["secretName"], "-n", namespace)
        data = {k: base64.b64decode(v) for k, v in secret["data"].items()}
        items = volume["secret"].get("items") or [{"key": k, "path": k} for k in data]
        target.mkdir(parents=True, exist_ok=True)
        for item in items:
            (target / item["path"]).write_bytes(data[item["key"]])
    assert env_dir is not None, "the Deployment mounts no Secret"
    return Path(env_dir)


@contextlib.contextmanager
def run_operator(
    cp: ControlPlane, namespace: str, fullname: str, kubeconfig: Path, workdir: Path
) -> Iterator[OperatorProcess]:
    """Run ``scp-operator`` with the Deployment's args and env, as ``kubeconfig``'s identity."""
    deployment = get_json(cp, "deployment", fullname, "-n", namespace)
    container = _container(deployment)
    (env_from,) = container["envFrom"]
    config = get_json(cp, "configmap", env_from["configMapRef"]["name"], "-n", namespace)["data"]
    credentials = workdir / "credentials"
    mounted_at = mount_credentials(cp, namespace, deployment, credentials)
    assert config["SCP_CREDENTIALS_DIR"] == str(mounted_at), "settings and mount disagree"

    port = free_port()
    metrics_url = None
    if config.get("SCP_OPERATOR_METRICS_PORT", "0") != "0":
        metrics_port = free_port()  # the pod's port may be taken on this machine
        config = {**config, "SCP_OPERATOR_METRICS_PORT": str(metrics_port)}
        metrics_url = f"http://127.0.0.1:{metrics_port}/metrics"
    args = [
        f"--liveness=http://127.0.0.1:{port}/healthz" if a.startswith("--liveness=") else a
        for a in container["args"]
    ]
    env = {k: v for k, v in os.environ.items() if not k.startswith("SCP_")}
    env.update({e["name"]: e["value"] for e in container.get("env", []) if "value" in e})
    env.update(config)
    env["SCP_CREDENTIALS_DIR"] = str(credentials)
    env["KUBECONFIG"] = str(kubeconfig)
    log_path = workdir / "operator.log"
    with log_path.open("wb") as log:
        process = subprocess.Popen(
            [str(OPERATOR), *args], env=env, stdout=log, stderr=subprocess.STDOUT
        )
    running = OperatorProcess(
        process, log_path, f"http://127.0.0.1:{port}/healthz", metrics_url, args, env
    )
    try:
        yield running
    finally:
        process.terminate()
        try:
            process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(timeout=10)


@dataclass(frozen=True)
class AuditedRequest:
    """One API request as the audit log records it (metadata level)."""

    user: str
    verb: str
    group: str
    resource: str
    namespace: str
    name: str
    code: int
    uri: str

    @property
    def is_resource(self) -> bool:
        return bool(self.resource)


def audited_requests(log: Path, user: str) -> list[AuditedRequest]:
    """The requests ``user`` made, from the API server's JSON-lines audit log.

    A watch is logged at ``ResponseStarted`` and again at ``ResponseComplete`` only when it ends,
    so each request (``auditID``) is taken from its last stage seen so far.
    """
    events: dict[str, dict[str, Any]] = {}
    for line in log.read_text().splitlines():
        event = json.loads(line)
        if event.get("stage") not in ("ResponseStarted", "ResponseComplete"):
            continue
        if event["user"]["username"] == user:
            events[event["auditID"]] = event
    found = []
    for event in events.values():
        ref = event.get("objectRef") or {}
        resource = ref.get("resource", "")
        if ref.get("subresource"):
            resource = f"{resource}/{ref['subresource']}"
        found.append(
            AuditedRequest(
                user=user,
                verb=event["verb"],
                group=ref.get("apiGroup", ""),
                resource=resource,
                namespace=ref.get("namespace", ""),
                name=ref.get("name", ""),
                code=int(event.get("responseStatus", {}).get("code", 0)),
                uri=event["requestURI"],
            )
        )
    return found


# ---- VirtualServers and ScpAccounts -----------------------------------------------------------


def virtual_server(name: str, namespace: str, server_id: str, account: str | None = None) -> str:
    """A VirtualServer manifest (JSON, for ``kubectl apply -f -``)."""
    spec = {"serverId": server_id}
    if account:
        spec["accountRef"] = account
    return json.dumps(
        {
            "apiVersion": constants.API_VERSION,
            "kind": constants.KIND,
            "metadata": {"name": name, "namespace": namespace},
            "spec": spec,
        }
    )


def ready(cp: ControlPlane, name: str, namespace: str) -> dict[str, Any] | None:
    """The object once the operator has observed it (it has a Ready condition), else None."""
    obj = get_json(cp, "virtualserver", name, "-n", namespace)
    for condition in obj.get("status", {}).get("conditions", []):
        if condition["type"] == "Ready":
            return dict(obj)
    return None


def account_ready(cp: ControlPlane, name: str) -> bool:
    """The ScpAccount says Ready=True."""
    obj = get_json(cp, "scpaccount", name)
    return any(
        c["type"] == "Ready" and c["status"] == "True"
        for c in (obj.get("status") or {}).get("conditions") or []
    )


def gone(cp: ControlPlane, name: str, namespace: str) -> bool:
    """The VirtualServer no longer exists."""
    result = cp.kubectl("get", "virtualserver", name, "-n", namespace, check=False)
    return result.returncode != 0 and "NotFound" in result.stderr
