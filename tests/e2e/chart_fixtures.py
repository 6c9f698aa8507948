"""Fixtures the chart tests on a cluster share (``tests/e2e/test_chart_*.py``): a control plane
of their own with an audit log, an SCP emulator, and two installed releases.

Registered in ``tests/conftest.py`` (``pytest_plugins``). Every fixture here is module-scoped:
each chart test module gets its own control plane — not the session one — because it needs the
API server's audit log (every request the operator makes under the chart's ServiceAccount is
recorded, so the tests prove both directions of least privilege) and installs cluster-wide
objects (ClusterRoles, admission policies) the other e2e tests must not see.

The releases are installed with ``helm install --no-hooks`` and no ``--wait`` (no kubelet runs
pods here); ``tests/e2e/charts.py`` runs the operator as a local process with the Deployment's
own arguments, ConfigMap and mounted Secret, authenticated with a real token of the chart's
ServiceAccount.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from scp_emulator.testing import ThreadedEmulator
from scp_testenv import ControlPlane, resolve_binaries
from tests.chart_support import (
    ACCOUNT_CRD,
    ACCOUNT_CRD_FILE,
    CHART,
    LEASE_NAMESPACE,
    RELEASE_NAMESPACE,
    granted,
    values_file,
)
from tests.e2e import charts

#: Namespaces the audited control plane has from the start (besides the release namespace).
EXTRA_NAMESPACES = ("team-a", "team-b", "team-c")
#: The namespaced release's namespace (its Secret lives there).
TEAMS_NAMESPACE = "scp-teams"

#: Prometheus-Operator's duration pattern.
DURATION = (
    "^(0|(([0-9]+)y)?(([0-9]+)w)?(([0-9]+)d)?(([0-9]+)h)?(([0-9]+)m)?(([0-9]+)s)?(([0-9]+)ms)?)$"
)

#: A minimal ServiceMonitor CRD (the fields the chart uses, typed as upstream types them), so
#: server-side dry-run can validate the optional ServiceMonitor too.
SERVICE_MONITOR_CRD = """
apiVersion: apiextensions.k8s.io/v1
kind: CustomResourceDefinition
metadata:
  name: servicemonitors.monitoring.coreos.com
spec:
  group: monitoring.coreos.com
  scope: Namespaced
  names: {plural: servicemonitors, singular: servicemonitor, kind: ServiceMonitor,
          listKind: ServiceMonitorList}
  versions:
    - name: v1
      served: true
      storage: true
      schema:
        openAPIV3Schema:
          type: object
          required: [spec]
          properties:
            spec:
              type: object
              required: [selector]
              properties:
                namespaceSelector:
                  type: object
                  properties:
                    any: {type: boolean}
                    matchNames: {type: array, items: {type: string}}
                selector:
                  type: object
                  properties:
                    matchLabels: {type: object, additionalProperties: {type: string}}
                endpoints:
                  type: array
                  items:
                    type: object
                    properties:
                      port: {type: string}
                      path: {type: string}
                      interval: {type: string, pattern: 'DURATION'}
                      scrapeTimeout: {type: string, pattern: 'DURATION'}
""".replace("DURATION", DURATION)


@dataclass
class Audited:
    """The module's control plane and its audit log."""

    cp: ControlPlane
    audit_log: Path


@pytest.fixture(scope="module")
def audited(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Audited]:
    """A control plane of our own, with an audit log of all service-account requests."""
    directory = tmp_path_factory.mktemp("audit")
    policy = directory / "policy.yaml"
    policy.write_text(charts.AUDIT_POLICY)
    log = directory / "audit.log"
    cp = ControlPlane(
        resolve_binaries(),
        extra_apiserver_args=[
            f"--audit-policy-file={policy}",
            f"--audit-log-path={log}",
            "--audit-log-mode=blocking",
        ],
    )
    with cp:
        for namespace in (RELEASE_NAMESPACE, *EXTRA_NAMESPACES):
            cp.kubectl("create", "namespace", namespace)
        cp.kubectl("apply", "-f", "-", input=SERVICE_MONITOR_CRD)
        # The chart's accounts value renders ScpAccounts: the dry runs need their CRD (helm
        # install skips a CRD of crds/ that exists).
        cp.kubectl("apply", "-f", str(ACCOUNT_CRD_FILE))
        cp.kubectl(
            "create", "priorityclass", "scp-operator-test", "--value=1000", "--description=test"
        )
        cp.kubectl(
            "wait",
            "--for=condition=Established",
            "crd/servicemonitors.monitoring.coreos.com",
            f"crd/{ACCOUNT_CRD}",
            "--timeout=60s",
        )
        yield Audited(cp, log)


@pytest.fixture(scope="module")
def chart_emulator() -> Iterator[ThreadedEmulator]:
    """The SCP emulator of one chart test module (its releases' endpoint)."""
    with ThreadedEmulator() as emu:
        yield emu


@dataclass
class Release:
    """An installed release and the identity of its ServiceAccount."""

    name: str
    namespace: str
    fullname: str
    watched: tuple[str, ...]  # empty: all namespaces

    @property
    def user(self) -> str:
        return f"system:serviceaccount:{self.namespace}:{self.fullname}"

    def kubeconfig(self, cp: ControlPlane) -> Path:
        return charts.service_account_kubeconfig(cp, self.namespace, self.fullname)

    def rules(self, cp: ControlPlane) -> set[tuple[str, str, str]]:
        """What its ClusterRole and Roles (the lease Role included) grant, read back."""
        rules = charts.get_json(cp, "clusterrole", self.fullname)["rules"]
        lease_role = f"{self.fullname}-lease"
        rules += charts.get_json(cp, "role", lease_role, "-n", LEASE_NAMESPACE)["rules"]
        for namespace in self.watched:
            rules += charts.get_json(cp, "role", self.fullname, "-n", namespace)["rules"]
        for role in charts.get_json(cp, "roles", "-A")["items"]:  # the account Secrets' Roles
            if role["metadata"]["name"].startswith(f"{self.fullname}-secret-"):
                rules += role["rules"]
        return granted(rules)


#: Fast retries for the releases' operators (chart values).
FAST = {
    "backoffBase": 1,
    "backoffCap": 2,
    "slowBackoffBase": 1,
    "slowBackoffCap": 2,
    "holdRecheckInterval": 1,
}


@pytest.fixture(scope="module")
def cluster_release(
    audited: Audited, chart_emulator: ThreadedEmulator, tmp_path_factory: pytest.TempPathFactory
) -> Release:
    """Default RBAC (all namespaces); keys created by the chart from values. No admission
    policies: acting in every namespace, their finalizer would hold objects that tests here
    create in team-c and delete with no operator running (tests/e2e/test_admission.py covers
    them; the namespaced release keeps them, acting in team-a and team-b only)."""
    values = {
        "credentials": {
            "accessKey": chart_emulator.access_key,
            "secretKey": chart_emulator.secret_key,
        },
        "scp": {"endpoint": chart_emulator.url},
        "operator": FAST,
        "admission": {"enabled": False},
        "accounts": [audit_account("audit-cluster", chart_emulator, "audit-keys", ["team-c"])],
        # an all-namespaces operator looks after every account, the teams release's too
        "accountSecrets": [{"namespace": TEAMS_NAMESPACE, "name": "team-scp-keys"}],
    }
    account_secret(audited.cp, RELEASE_NAMESPACE, "audit-keys", chart_emulator)
    ensure_namespace(audited.cp, TEAMS_NAMESPACE)  # for the Role on the teams' Secret
    path = values_file(tmp_path_factory.mktemp("cluster"), "values", values)
    audited.cp.helm(
        "install", "scp", str(CHART), "-n", RELEASE_NAMESPACE, "--no-hooks", "-f", str(path)
    )
    return Release("scp", RELEASE_NAMESPACE, "scp-scp-operator", ())


@pytest.fixture(scope="module")
def namespaced_release(
    audited: Audited, chart_emulator: ThreadedEmulator, tmp_path_factory: pytest.TempPathFactory
) -> Release:
    """watchNamespaces team-a and team-b; keys in an existing Secret under custom key names."""
    namespace = TEAMS_NAMESPACE
    ensure_namespace(audited.cp, namespace)  # the cluster release may have made it
    audited.cp.kubectl(
        "create",
        "secret",
        "generic",
        "team-scp-keys",
        "-n",
        namespace,
        f"--from-literal=ak={chart_emulator.access_key}",
        f"--from-literal=sk={chart_emulator.secret_key}",
    )
    values = {
        "watchNamespaces": ["team-a", "team-b"],
        "credentials": {
            "existingSecret": "team-scp-keys",
            "existingSecretKeys": {"accessKey": "ak", "secretKey": "sk"},
        },
        "scp": {"endpoint": chart_emulator.url},
        "operator": FAST,
        "accounts": [
            audit_account("audit-teams", chart_emulator, "team-scp-keys", ["team-a"], "ak", "sk")
        ],
    }
    path = values_file(tmp_path_factory.mktemp("namespaced"), "values", values)
    audited.cp.helm("install", "teams", str(CHART), "-n", namespace, "--no-hooks", "-f", str(path))
    return Release("teams", namespace, "teams-scp-operator", ("team-a", "team-b"))


def audit_account(
    name: str,
    emulator: ThreadedEmulator,
    secret: str,
    admitted: list[str],
    access_key_key: str = "access-key",
    secret_key_key: str = "secret-key",  # noqa: S107 (a key name)
) -> dict[str, Any]:
    """An ScpAccount (rendered by the chart) for the audited flow: its Secret in the release
    namespace, admitting the test namespaces by a selector (so namespace labels are read)."""
    return {
        "name": name,
        "credentialsSecretRef": {
            "name": secret,
            "accessKeyKey": access_key_key,
            "secretKeyKey": secret_key_key,
        },
        "endpoint": emulator.url,
        "namespaceSelector": {
            "matchExpressions": [
                {
                    "key": "kubernetes.io/metadata.name",
                    "operator": "In",
                    "values": admitted,
                }
            ]
        },
    }


def ensure_namespace(cp: ControlPlane, name: str) -> None:
    manifest = cp.kubectl("create", "namespace", name, "--dry-run=client", "-o", "json").stdout
    cp.kubectl("apply", "-f", "-", input=manifest)


def account_secret(cp: ControlPlane, namespace: str, name: str, emulator: ThreadedEmulator) -> None:
    manifest = cp.kubectl(
        "create",
        "secret",
        "generic",
        name,
        "-n",
        namespace,
        f"--from-literal=access-key={emulator.access_key}",
        f"--from-literal=secret-key={emulator.secret_key}",
        "--dry-run=client",
        "-o",
        "json",
    ).stdout
    cp.kubectl("apply", "-f", "-", input=manifest)
