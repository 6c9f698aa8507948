"""The Helm chart on a real API server: lint, render, validate, install, and least privilege.

This module runs its own control plane (not the session one) because it needs the API server's
audit log: every request the operator makes under the chart's ServiceAccount is recorded, so the
tests prove both directions of least privilege — nothing the operator did was denied, and every
permission the chart grants was actually used. ``kubectl auth can-i`` then shows what the
ServiceAccount cannot do.

The chart is installed with ``helm install --no-hooks`` and no ``--wait`` (no kubelet runs pods
here); the operator runs as a local process with the Deployment's own arguments, ConfigMap and
mounted Secret (see ``tests/e2e/charts.py``), authenticated with a real token of the chart's
ServiceAccount.
"""

from __future__ import annotations

import json
import subprocess
import textwrap
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from scp_emulator.testing import ThreadedEmulator
from scp_operator import constants
from scp_operator.lease import effective_lease_name
from scp_testenv import ControlPlane, resolve_binaries
from tests.conftest import REPO
from tests.e2e import charts

pytestmark = pytest.mark.e2e

#: Every documented option combination (docs/install.md, "Tested value combinations").
COMBINATIONS: dict[str, dict[str, Any]] = {
    "defaults": {},
    "created-secret": {"credentials": {"accessKey": "AK-test", "secretKey": "SK-test"}},
    "existing-secret-custom-keys": {
        "credentials": {
            "existingSecret": "my-scp-keys",
            "existingSecretKeys": {"accessKey": "ak", "secretKey": "sk"},
        }
    },
    "watch-namespaces": {"watchNamespaces": ["team-a", "team-b"]},
    "service-monitor": {
        "metrics": {
            "serviceMonitor": {
                "enabled": True,
                "labels": {"release": "prom"},
                "scrapeTimeout": "10s",
            }
        }
    },
    "no-metrics-no-guard": {"metrics": {"enabled": False}, "uninstallGuard": {"enabled": False}},
    "no-admission-policies": {"admission": {"enabled": False}},
    "accounts": {
        "accounts": [
            {
                "name": "team-a-prod",
                "credentialsSecretRef": {"name": "team-a-prod-keys"},
                "namespaces": ["team-a"],
            },
            {
                "name": "shared",
                "credentialsSecretRef": {"namespace": "team-b", "name": "shared-keys"},
                "namespaceSelector": {},
            },
        ],
        "accountSecrets": [{"namespace": "team-c", "name": "gitops-account-keys"}],
    },
    "own-service-account-and-rbac": {
        "serviceAccount": {"create": False, "name": "platform-robot"},
        "rbac": {"create": False},
    },
    "everything-set": {
        "image": {
            "repository": "registry.example.com:5000/platform/scp-operator",
            "digest": "sha256:" + "a" * 64,
            "pullPolicy": "Always",
        },
        "imagePullSecrets": ["regcred"],
        "fullnameOverride": "vs-operator",
        "watchNamespaces": ["team-a"],
        "scp": {
            "region": "kr-east1",
            "environment": "s",
            "endpoint": "https://virtualserver.internal.example.com",
            "apiVersion": "1.2",
            "accountId": "acc-123",
            "language": "ko-KR",
            "caBundle": {"configMapName": "corp-ca", "key": "bundle.pem"},
        },
        "operator": {
            "confirmDeletion": True,
            "confirmPollInterval": 5,
            "httpTimeout": 10.5,
            "maxConnections": 4,
            "backoffBase": 2,
            "backoffCap": 600,
            "slowBackoffBase": 30,
            "slowBackoffCap": 900,
            "holdRecheckInterval": 30,
            "eventRepeatInterval": 0,
            "checkVersions": False,
            "maxConcurrentRequests": 8,
            "maxRequestsPerSecond": 2.5,
            "dryRun": True,
            "maxDeletionsPerWindow": 5,
            "deletionWindow": 600,
            "accountRecheckInterval": 60,
            "logFormat": "json",
            "logLevel": "debug",
        },
        "accounts": [
            {
                "name": "team-a.prod",
                "credentialsSecretRef": {
                    "namespace": "team-b",
                    "name": "team-a-keys",
                    "accessKeyKey": "ak",
                    "secretKeyKey": "sk",
                },
                "endpoint": "https://virtualserver.team-a.example.com/base",
                "region": "kr-east1",
                "environment": "s",
                "accountId": "acc-456",
                "apiVersion": "1.2",
                "namespaces": ["team-a"],
                "namespaceSelector": {
                    "matchLabels": {"scp.dev/tenant": "team-a"},
                    "matchExpressions": [
                        {"key": "scp.dev/tier", "operator": "In", "values": ["prod"]},
                        {"key": "scp.dev/frozen", "operator": "DoesNotExist"},
                    ],
                },
            }
        ],
        "accountSecrets": [{"namespace": "team-c", "name": "gitops-account-keys"}],
        "admission": {
            "enabled": True,
            "addFinalizer": False,
            "requireFinalizer": False,
            "accountRef": True,
        },
        "extraEnv": [{"name": "HTTPS_PROXY", "value": "http://proxy.example.com:3128"}],
        "extraArgs": ["--log-refkey=scp"],
        "metrics": {"port": 9100, "service": {"annotations": {"a": "b"}}},
        "healthPort": 8081,
        "podAnnotations": {"example.com/owner": "platform"},
        "podLabels": {"team": "platform"},
        "priorityClassName": "scp-operator-test",
        "nodeSelector": {"kubernetes.io/os": "linux"},
        "tolerations": [{"key": "infra", "operator": "Exists", "effect": "NoSchedule"}],
        "affinity": {
            "nodeAffinity": {
                "requiredDuringSchedulingIgnoredDuringExecution": {
                    "nodeSelectorTerms": [
                        {
                            "matchExpressions": [
                                {"key": "kubernetes.io/arch", "operator": "In", "values": ["amd64"]}
                            ]
                        }
                    ]
                }
            }
        },
        "resources": {
            "requests": {"cpu": "100m", "memory": "192Mi"},
            "limits": {"memory": "384Mi"},
        },
        "uninstallGuard": {"activeDeadlineSeconds": 60},
        "lease": {"name": "vs-operator", "namespace": "team-c", "durationSeconds": 30},
    },
}

RELEASE_NAMESPACE = "scp-system"
ACCOUNT_CRD = "scpaccounts.virtualserver.scp.dev"
ACCOUNT_CRD_FILE = REPO / "crds" / f"{ACCOUNT_CRD}.yaml"
EXTRA_NAMESPACES = ("team-a", "team-b", "team-c")
#: Where the chart puts the operator's Lease (and the Role for it) by default.
LEASE_NAMESPACE = "kube-system"
#: The Leases of the two installed releases: all namespaces, and team-a + team-b.
CLUSTER_LEASE = "scp-operator"
TEAMS_LEASE = effective_lease_name("scp-operator", ["team-a", "team-b"])

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
def emulator() -> Iterator[ThreadedEmulator]:
    with ThreadedEmulator() as emu:
        yield emu


# ---- lint, render, validate ----------------------------------------------------------------


@pytest.mark.parametrize("combination", list(COMBINATIONS))
def test_chart_lints_strictly(audited: Audited, tmp_path: Path, combination: str) -> None:
    values = charts.values_file(tmp_path, combination, COMBINATIONS[combination])
    result = audited.cp.helm("lint", "--strict", str(charts.CHART), "-f", str(values))
    assert "0 chart(s) failed" in result.stdout


@pytest.mark.parametrize("combination", list(COMBINATIONS))
def test_rendered_manifests_pass_server_side_dry_run(
    audited: Audited, tmp_path: Path, combination: str
) -> None:
    values = charts.values_file(tmp_path, combination, COMBINATIONS[combination])
    manifests = charts.render(
        audited.cp, values, namespace=RELEASE_NAMESPACE, extra=charts.WITH_MUTATING_POLICY
    )
    document = "\n---\n".join(json.dumps(m) for m in manifests)
    result = audited.cp.kubectl("apply", "--dry-run=server", "-f", "-", input=document)
    applied = [line for line in result.stdout.splitlines() if "(server dry run)" in line]
    assert len(applied) == len(manifests), result.stdout


@pytest.mark.parametrize("combination", list(COMBINATIONS))
def test_operator_pod_is_locked_down(audited: Audited, tmp_path: Path, combination: str) -> None:
    values = charts.values_file(tmp_path, combination, COMBINATIONS[combination])
    manifests = charts.render(audited.cp, values)
    deployment = charts.find(manifests, "Deployment")
    spec = deployment["spec"]
    assert spec["replicas"] == 1
    assert spec["strategy"] == {"type": "Recreate"}
    pod = spec["template"]["spec"]
    assert pod["securityContext"]["runAsNonRoot"] is True
    assert pod["securityContext"]["runAsUser"] == 65532
    assert pod["securityContext"]["seccompProfile"] == {"type": "RuntimeDefault"}
    (container,) = pod["containers"]
    security = container["securityContext"]
    assert security["allowPrivilegeEscalation"] is False
    assert security["readOnlyRootFilesystem"] is True
    assert security["capabilities"] == {"drop": ["ALL"]}
    assert container["args"][:2] == ["run", "--standalone"]
    health_port = COMBINATIONS[combination].get("healthPort", 8080)
    assert f"--liveness=http://0.0.0.0:{health_port}/healthz" in container["args"]
    for probe in ("livenessProbe", "readinessProbe"):
        assert container[probe]["httpGet"] == {"path": "/healthz", "port": "health"}
    ports = {p["name"]: p["containerPort"] for p in container["ports"]}
    assert ports["health"] == health_port
    assert container["resources"]["limits"]["memory"]
    volumes = {v["name"]: v for v in pod["volumes"]}
    mounts = {m["mountPath"]: m for m in container["volumeMounts"]}
    assert "emptyDir" in volumes[mounts["/tmp"]["name"]]  # noqa: S108 (the pod's /tmp)
    credentials = mounts["/var/run/secrets/scp"]
    assert credentials["readOnly"] is True
    assert "subPath" not in credentials
    assert "secret" in volumes[credentials["name"]]
    # The keys are files, never environment variables.
    names = {e["name"] for e in container.get("env", [])}
    assert not names & {"SCP_ACCESS_KEY", "SCP_SECRET_KEY"}
    assert all("secretKeyRef" not in e.get("valueFrom", {}) for e in container.get("env", []))
    assert "checksum/config" in spec["template"]["metadata"]["annotations"]


def test_a_settings_change_rolls_the_pod_but_a_key_rotation_does_not(
    audited: Audited, tmp_path: Path
) -> None:
    def checksum(name: str, values: dict[str, Any]) -> str:
        manifests = charts.render(audited.cp, charts.values_file(tmp_path, name, values))
        deployment = charts.find(manifests, "Deployment")
        value: str = deployment["spec"]["template"]["metadata"]["annotations"]["checksum/config"]
        return value

    keys = {"credentials": {"accessKey": "AK1", "secretKey": "SK1"}}
    base = checksum("base", keys)
    assert checksum("region", {**keys, "scp": {"region": "kr-east1"}}) != base
    assert checksum("knob", {**keys, "operator": {"backoffCap": 60}}) != base
    assert checksum("rotated", {"credentials": {"accessKey": "AK2", "secretKey": "SK2"}}) == base


def test_metrics_off_means_port_zero_and_no_service(audited: Audited, tmp_path: Path) -> None:
    values = {"metrics": {"enabled": False}}
    manifests = charts.render(audited.cp, charts.values_file(tmp_path, "m", values))
    assert charts.find(manifests, "ConfigMap")["data"]["SCP_OPERATOR_METRICS_PORT"] == "0"
    assert [m for m in manifests if m["kind"] in ("Service", "ServiceMonitor")] == []
    on = charts.render(audited.cp, charts.values_file(tmp_path, "on", {}))
    assert charts.find(on, "ConfigMap")["data"]["SCP_OPERATOR_METRICS_PORT"] == "9090"
    assert charts.find(on, "Service")["spec"]["ports"][0]["port"] == 9090


def _lease_rbac(manifests: list[dict[str, Any]]) -> tuple[str, list[str]]:
    """The lease Role's namespace and the Lease names it may get/update (its binding checked)."""
    role = charts.find(manifests, "Role", "scp-scp-operator-lease")
    binding = charts.find(manifests, "RoleBinding", "scp-scp-operator-lease")
    assert binding["metadata"]["namespace"] == role["metadata"]["namespace"]
    assert binding["roleRef"]["name"] == role["metadata"]["name"]
    (named,) = [r for r in role["rules"] if "resourceNames" in r]
    assert sorted(named["verbs"]) == ["get", "update"]
    (create,) = [r for r in role["rules"] if "resourceNames" not in r]
    assert create["verbs"] == ["create"]
    return role["metadata"]["namespace"], named["resourceNames"]


def _lease_env(manifests: list[dict[str, Any]]) -> dict[str, str]:
    data: dict[str, str] = charts.find(manifests, "ConfigMap")["data"]
    return {k: v for k, v in data.items() if k.startswith("SCP_OPERATOR_LEASE_")}


def test_the_lease_role_grants_exactly_the_lease_the_operator_derives(
    audited: Audited, tmp_path: Path
) -> None:
    """The chart computes the namespaced Lease name in a template; it must be the operator's."""
    cluster = charts.render(audited.cp, charts.values_file(tmp_path, "c", {}))
    assert _lease_rbac(cluster) == (LEASE_NAMESPACE, [CLUSTER_LEASE])
    assert _lease_env(cluster) == {
        "SCP_OPERATOR_LEASE_NAME": "scp-operator",
        "SCP_OPERATOR_LEASE_NAMESPACE": LEASE_NAMESPACE,
        "SCP_OPERATOR_LEASE_DURATION": "15",
    }
    values = {
        "watchNamespaces": ["team-b", "team-a"],  # the operator sorts them too
        "lease": {"name": "vs", "namespace": "team-c", "durationSeconds": 30},
    }
    namespaced = charts.render(audited.cp, charts.values_file(tmp_path, "n", values))
    assert _lease_rbac(namespaced) == ("team-c", [effective_lease_name("vs", ["team-a", "team-b"])])
    assert _lease_env(namespaced) == {
        "SCP_OPERATOR_LEASE_NAME": "vs",
        "SCP_OPERATOR_LEASE_NAMESPACE": "team-c",
        "SCP_OPERATOR_LEASE_DURATION": "30",
    }


def test_rbac_follows_watch_namespaces(audited: Audited, tmp_path: Path) -> None:
    cluster = charts.render(audited.cp, charts.values_file(tmp_path, "c", {}))
    namespaced_kinds = [
        m["kind"]
        for m in cluster
        if m["kind"] in ("Role", "RoleBinding") and not m["metadata"]["name"].endswith("-lease")
    ]
    assert namespaced_kinds == []
    cluster_rules = charts.granted(charts.find(cluster, "ClusterRole")["rules"])
    assert ("virtualserver.scp.dev", "virtualservers", "patch") in cluster_rules

    namespaced = charts.render(
        audited.cp, charts.values_file(tmp_path, "n", {"watchNamespaces": ["team-a", "team-b"]})
    )
    roles = [m for m in namespaced if m["kind"] == "Role"]
    assert sorted(r["metadata"]["namespace"] for r in roles) == [
        LEASE_NAMESPACE,
        "team-a",
        "team-b",
    ]
    bindings = [m for m in namespaced if m["kind"] == "RoleBinding"]
    assert sorted(b["metadata"]["namespace"] for b in bindings) == [
        LEASE_NAMESPACE,
        "team-a",
        "team-b",
    ]
    cluster_only = charts.granted(charts.find(namespaced, "ClusterRole")["rules"])
    assert {resource for _, resource, _ in cluster_only} == {
        "customresourcedefinitions",
        "namespaces",
        "virtualservers",  # list only: the shared-server check asks across all namespaces
        "scpaccounts",  # cluster-scoped, in both modes
        "scpaccounts/status",
    }
    assert {verb for _, resource, verb in cluster_only if resource == "virtualservers"} == {"list"}
    # get: one namespace's labels for an account's selector; list: the admitted ones, counted
    assert {verb for _, resource, verb in cluster_rules if resource == "namespaces"} == {
        "get",
        "list",
    }
    args = charts.find(namespaced, "Deployment")["spec"]["template"]["spec"]["containers"][0]
    assert "--namespace=team-a" in args["args"]
    assert "--namespace=team-b" in args["args"]


def _documented_permissions() -> dict[str, set[tuple[str, str, str]]]:
    """The Permissions table of docs/install.md as (group, resource, verb) sets per object."""
    text = (REPO / "docs" / "install.md").read_text()
    section = text[text.index("## Permissions") :]
    found: dict[str, set[tuple[str, str, str]]] = {
        "cluster/ClusterRole": set(),
        "namespaced/ClusterRole": set(),
        "namespaced/Role": set(),
        "lease/Role": set(),
        "secret/Role": set(),
    }
    for line in section.splitlines():
        cells = [c.strip() for c in line.strip().strip("|").split("|")]
        if len(cells) != 6 or not cells[2].startswith("`"):
            continue
        mode, kind, group, resource, verbs = cells[:5]
        group = group.strip("`").replace('""', "")
        resource = resource.split("`")[1]
        triples = {(group, resource, v.strip("` ")) for v in verbs.split(",")}
        if kind == "Role in the lease namespace":  # in both modes, a Role of its own
            found["lease/Role"] |= triples
            continue
        if kind == "Role per account Secret":  # in both modes, one per Secret
            found["secret/Role"] |= triples
            continue
        kind = "Role" if kind.startswith("Role") else "ClusterRole"
        if mode in ("all namespaces", "both"):
            found["cluster/ClusterRole"] |= triples
        if mode in ("watchNamespaces", "both"):
            found[f"namespaced/{kind}"] |= triples
    return found


def test_install_doc_lists_exactly_the_granted_permissions(
    audited: Audited, tmp_path: Path
) -> None:
    documented = _documented_permissions()
    cluster = charts.render(audited.cp, charts.values_file(tmp_path, "c", ACCOUNTS))
    namespaced = charts.render(
        audited.cp, charts.values_file(tmp_path, "n", {"watchNamespaces": ["team-a"]})
    )
    assert documented["cluster/ClusterRole"] == charts.granted(
        charts.find(cluster, "ClusterRole")["rules"]
    )
    assert documented["namespaced/ClusterRole"] == charts.granted(
        charts.find(namespaced, "ClusterRole")["rules"]
    )
    assert documented["namespaced/Role"] == charts.granted(
        charts.find(namespaced, "Role", "scp-scp-operator")["rules"]
    )
    for manifests in (cluster, namespaced):
        lease_role = charts.find(manifests, "Role", "scp-scp-operator-lease")
        assert documented["lease/Role"] == charts.granted(lease_role["rules"])
    secret_roles = [
        m for m in cluster if m["metadata"]["name"].startswith("scp-scp-operator-secret-")
    ]
    assert secret_roles
    for role in secret_roles:
        if role["kind"] == "Role":
            assert documented["secret/Role"] == charts.granted(role["rules"])


def test_crds_are_shipped_but_not_templated(audited: Audited, tmp_path: Path) -> None:
    values = charts.values_file(tmp_path, "d", {})
    assert [
        m for m in charts.render(audited.cp, values) if m["kind"] == "CustomResourceDefinition"
    ] == []
    shown = audited.cp.helm("show", "crds", str(charts.CHART)).stdout
    assert f"name: {constants.CRD_NAME}" in shown
    assert f"name: {ACCOUNT_CRD}" in shown


# ---- accounts, admission policies ------------------------------------------------------------

#: Two accounts (one Secret in the release namespace by default, one shared by a second
#: account) and one Secret of an account created outside the chart.
ACCOUNTS: dict[str, Any] = {
    "accounts": [
        {
            "name": "team-a",
            "credentialsSecretRef": {"name": "team-a-keys"},
            "namespaces": ["team-a"],
            "region": "kr-east1",
            "apiVersion": "1.2",
        },
        {
            "name": "shared-all",
            "credentialsSecretRef": {
                "namespace": "vault",
                "name": "shared-keys",
                "accessKeyKey": "ak",
                "secretKeyKey": "sk",
            },
            "namespaceSelector": {},  # kept: {} admits every namespace
        },
        {
            "name": "shared-prod",
            "credentialsSecretRef": {"namespace": "vault", "name": "shared-keys"},
            "namespaceSelector": {
                "matchExpressions": [{"key": "tier", "operator": "In", "values": ["prod"]}]
            },
        },
    ],
    "accountSecrets": [
        {"namespace": "gitops", "name": "outside-keys"},
        {"name": "team-a-keys"},  # the same Secret as team-a's: one Role
    ],
}


def _kinds(manifests: list[dict[str, Any]], *kinds: str) -> list[str]:
    return sorted(m["metadata"]["name"] for m in manifests if m["kind"] in kinds)


def test_accounts_render_scpaccounts_and_a_role_per_secret(
    audited: Audited, tmp_path: Path
) -> None:
    manifests = charts.render(audited.cp, charts.values_file(tmp_path, "a", ACCOUNTS))
    accounts = {m["metadata"]["name"]: m for m in manifests if m["kind"] == "ScpAccount"}
    assert sorted(accounts) == ["shared-all", "shared-prod", "team-a"]
    assert accounts["team-a"]["apiVersion"] == "virtualserver.scp.dev/v1alpha1"
    assert accounts["team-a"]["metadata"]["labels"]["app.kubernetes.io/instance"] == "scp"
    assert "namespace" not in accounts["team-a"]["metadata"]  # cluster-scoped
    assert accounts["team-a"]["spec"] == {
        "credentialsSecretRef": {
            "namespace": "scp-system",  # the release namespace by default
            "name": "team-a-keys",
            "accessKeyKey": "access-key",
            "secretKeyKey": "secret-key",
        },
        "region": "kr-east1",
        "apiVersion": "1.2",
        "namespaces": ["team-a"],
    }
    assert accounts["shared-all"]["spec"]["namespaceSelector"] == {}
    assert accounts["shared-all"]["spec"]["credentialsSecretRef"]["accessKeyKey"] == "ak"
    assert "namespaces" not in accounts["shared-all"]["spec"]
    selector = accounts["shared-prod"]["spec"]["namespaceSelector"]
    assert selector == {"matchExpressions": [{"key": "tier", "operator": "In", "values": ["prod"]}]}

    # One Role and RoleBinding per Secret, each granting get on exactly that Secret.
    roles = {
        (m["metadata"]["namespace"], m["metadata"]["name"]): m
        for m in manifests
        if m["kind"] == "Role" and "-secret-" in m["metadata"]["name"]
    }
    assert sorted(roles) == [
        ("gitops", "scp-scp-operator-secret-outside-keys"),
        ("scp-system", "scp-scp-operator-secret-team-a-keys"),
        ("vault", "scp-scp-operator-secret-shared-keys"),
    ]
    for (namespace, name), role in roles.items():
        secret = name.removeprefix("scp-scp-operator-secret-")
        assert role["rules"] == [
            {
                "apiGroups": [""],
                "resources": ["secrets"],
                "resourceNames": [secret],
                "verbs": ["get"],
            }
        ]
        binding = charts.find(manifests, "RoleBinding", name)
        assert binding["metadata"]["namespace"] == namespace
        assert binding["roleRef"] == {
            "apiGroup": "rbac.authorization.k8s.io",
            "kind": "Role",
            "name": name,
        }
        assert binding["subjects"] == [
            {"kind": "ServiceAccount", "name": "scp-scp-operator", "namespace": "scp-system"}
        ]
    # The operator's ClusterRole still grants no Secret anywhere.
    cluster_rules = charts.granted(charts.find(manifests, "ClusterRole")["rules"])
    assert {r for _, r, _ in cluster_rules} & {"secrets"} == set()

    # rbac.create=false: the accounts, but no Role (your own RBAC must grant the Secrets).
    own = {
        **ACCOUNTS,
        "serviceAccount": {"create": False, "name": "robot"},
        "rbac": {"create": False},
    }
    manifests = charts.render(audited.cp, charts.values_file(tmp_path, "own", own))
    assert _kinds(manifests, "ScpAccount") == ["shared-all", "shared-prod", "team-a"]
    assert _kinds(manifests, "Role", "RoleBinding", "ClusterRole", "ClusterRoleBinding") == []


def test_default_values_render_no_account(audited: Audited, tmp_path: Path) -> None:
    manifests = charts.render(audited.cp, charts.values_file(tmp_path, "d", {}))
    assert _kinds(manifests, "ScpAccount") == []
    assert [m for m in manifests if "-secret-" in m["metadata"]["name"]] == []
    config = charts.find(manifests, "ConfigMap")["data"]
    assert config["SCP_OPERATOR_ACCOUNT_RECHECK_INTERVAL"] == "300"
    values = {"operator": {"accountRecheckInterval": 45}}
    manifests = charts.render(audited.cp, charts.values_file(tmp_path, "r", values))
    config = charts.find(manifests, "ConfigMap")["data"]
    assert config["SCP_OPERATOR_ACCOUNT_RECHECK_INTERVAL"] == "45"


MUTATING = ("MutatingAdmissionPolicy", "MutatingAdmissionPolicyBinding")
VALIDATING = ("ValidatingAdmissionPolicy", "ValidatingAdmissionPolicyBinding")


@pytest.mark.parametrize(
    ("admission", "mutating_served", "expected"),
    [
        ({}, True, ["add-finalizer", "require-finalizer", "account-ref"]),
        # helm template without the kind in its capabilities, or an API server without it
        ({}, False, ["require-finalizer", "account-ref"]),
        ({"enabled": False}, True, []),
        ({"addFinalizer": False}, True, ["require-finalizer", "account-ref"]),
        ({"requireFinalizer": False}, True, ["add-finalizer", "account-ref"]),
        ({"accountRef": False}, True, ["add-finalizer", "require-finalizer"]),
        (
            {"addFinalizer": False, "requireFinalizer": False, "accountRef": False},
            True,
            [],
        ),
    ],
    ids=lambda v: json.dumps(v, sort_keys=True) if isinstance(v, dict) else str(v),
)
def test_admission_policies_follow_their_switches(
    audited: Audited,
    tmp_path: Path,
    admission: dict[str, bool],
    mutating_served: bool,
    expected: list[str],
) -> None:
    path = charts.values_file(tmp_path, "a", {"admission": admission})
    extra = charts.WITH_MUTATING_POLICY if mutating_served else ()
    manifests = charts.render(audited.cp, path, extra=extra)
    names = sorted(f"scp-scp-operator-{name}" for name in expected)
    policies = _kinds(manifests, "MutatingAdmissionPolicy", "ValidatingAdmissionPolicy")
    bindings = _kinds(manifests, MUTATING[1], VALIDATING[1])
    assert policies == names
    assert bindings == names
    for policy in [m for m in manifests if m["kind"] in (MUTATING[0], VALIDATING[0])]:
        assert policy["spec"]["failurePolicy"] == "Fail"
        (rule,) = policy["spec"]["matchConstraints"]["resourceRules"]
        # CREATE only: an UPDATE rule could refuse the operator's own finalizer removal.
        assert rule["operations"] == ["CREATE"]
        assert (rule["apiGroups"], rule["resources"]) == ([constants.GROUP], [constants.PLURAL])
        assert policy["metadata"]["labels"]["app.kubernetes.io/instance"] == "scp"
    for binding in [m for m in manifests if m["kind"] in (MUTATING[1], VALIDATING[1])]:
        assert binding["spec"]["policyName"] == binding["metadata"]["name"]
        assert "matchResources" not in binding["spec"]  # all namespaces
        if binding["kind"] == VALIDATING[1]:
            assert binding["spec"]["validationActions"] == ["Deny"]


def test_admission_policies_are_named_per_release_and_follow_watch_namespaces(
    audited: Audited, tmp_path: Path
) -> None:
    path = charts.values_file(tmp_path, "n", {"watchNamespaces": ["team-b", "team-a"]})
    one = charts.render(audited.cp, path, release="one", extra=charts.WITH_MUTATING_POLICY)
    two = charts.render(audited.cp, path, release="two", extra=charts.WITH_MUTATING_POLICY)
    kinds = (*MUTATING, *VALIDATING)
    assert set(_kinds(one, *kinds)).isdisjoint(_kinds(two, *kinds))
    assert len(_kinds(one, *kinds)) == 6
    for binding in [m for m in one if m["kind"] in (MUTATING[1], VALIDATING[1])]:
        assert binding["spec"]["matchResources"] == {
            "namespaceSelector": {
                "matchExpressions": [
                    {
                        "key": "kubernetes.io/metadata.name",
                        "operator": "In",
                        "values": ["team-a", "team-b"],
                    }
                ]
            }
        }
    account = charts.find(one, VALIDATING[0], "one-scp-operator-account-ref")["spec"]
    assert account["paramKind"] == {"apiVersion": constants.API_VERSION, "kind": "ScpAccount"}
    account_binding = charts.find(one, VALIDATING[1], "one-scp-operator-account-ref")["spec"]
    # Allow: with Deny and no ScpAccount at all, every create was refused (see
    # test_no_scpaccount_in_the_cluster_refuses_nothing).
    assert account_binding["paramRef"] == {"selector": {}, "parameterNotFoundAction": "Allow"}


def test_admission_policies_need_kubernetes_1_30(audited: Audited, tmp_path: Path) -> None:
    path = charts.values_file(tmp_path, "d", {})
    old = audited.cp.helm(
        "template", "scp", str(charts.CHART), "-f", str(path), "--kube-version=1.29.4", check=False
    )
    assert old.returncode != 0
    assert "admission policies need Kubernetes 1.30 or newer" in old.stderr, old.stderr
    assert "admission.enabled=false" in old.stderr
    off = charts.values_file(tmp_path, "off", {"admission": {"enabled": False}})
    audited.cp.helm("template", "scp", str(charts.CHART), "-f", str(off), "--kube-version=1.29.4")


@pytest.mark.parametrize(
    ("values", "message"),
    [
        ({"watchNamespace": ["a"]}, "additional properties 'watchNamespace' not allowed"),
        ({"watchNamespaces": ["Team_A"]}, "at '/watchNamespaces/0': 'Team_A' does not match"),
        ({"scp": {"environment": "x"}}, "at '/scp/environment': value must be one of"),
        ({"scp": {"apiVersion": 1.3}}, "at '/scp/apiVersion': got number, want string"),
        ({"scp": {"region": "Seoul"}}, "at '/scp/region': 'Seoul' does not match"),
        ({"image": {"digest": "latest"}}, "at '/image/digest': 'latest' does not match"),
        ({"image": {"pullPolicy": "Sometimes"}}, "at '/image/pullPolicy': value must be one of"),
        ({"operator": {"maxConnections": 0}}, "at '/operator/maxConnections': minimum: got 0"),
        ({"operator": {"httpTimeout": "30s"}}, "at '/operator/httpTimeout': got string, want"),
        ({"operator": {"logLevel": "trace"}}, "at '/operator/logLevel': value must be one of"),
        ({"podSecurityContext": {"runAsUser": 0}}, "at '/podSecurityContext/runAsUser': minimum"),
        ({"securityContext": {"privileged": True}}, "at '/securityContext/privileged'"),
        ({"metrics": {"port": 70000}}, "at '/metrics/port': maximum: got 70,000"),
        ({"credentials": {"accesKey": "x"}}, "additional properties 'accesKey' not allowed"),
        (
            {"credentials": {"accessKey": "AK"}},
            "credentials.accessKey and credentials.secretKey must be set together",
        ),
        (
            {"credentials": {"existingSecret": ""}},
            "credentials: set credentials.existingSecret to the name of a Secret",
        ),
        (
            {"metrics": {"enabled": False, "serviceMonitor": {"enabled": True}}},
            "metrics.serviceMonitor.enabled needs metrics.enabled: true",
        ),
        (
            {"extraEnv": [{"name": "SCP_SECRET_KEY", "value": "x"}]},
            "extraEnv: SCP_SECRET_KEY must not be an environment variable",
        ),
        (
            {"operator": {"backoffBase": 100, "backoffCap": 10}},
            "operator.backoffCap (10) must not be below operator.backoffBase (100)",
        ),
        (
            {"serviceAccount": {"create": False}},
            "serviceAccount.name is required when serviceAccount.create is false",
        ),
        ({"admission": {"enable": True}}, "additional properties 'enable' not allowed"),
        ({"admission": {"enabled": "yes"}}, "at '/admission/enabled': got string, want boolean"),
        ({"operator": {"accountRecheckInterval": 1}}, "at '/operator/accountRecheckInterval'"),
        (
            {"accounts": [{"name": "a", "namespaces": ["x"]}]},
            "missing property 'credentialsSecretRef'",
        ),
        (
            {"accounts": [{"name": "a", "credentialsSecretRef": {"name": "s"}}]},
            "missing property 'namespaceSelector'",
        ),
        (
            {
                "accounts": [
                    {"name": "Team_A", "credentialsSecretRef": {"name": "s"}, "namespaces": []}
                ]
            },
            "at '/accounts/0/name': 'Team_A' does not match",
        ),
        (
            {
                "accounts": [
                    {
                        "name": "a",
                        "credentialsSecretRef": {"name": "s"},
                        "namespaces": [],
                        "endpoint": "http://scp.example.com",
                    }
                ]
            },
            "at '/accounts/0/endpoint'",
        ),
        (
            {
                "accounts": [
                    {
                        "name": "a",
                        "credentialsSecretRef": {"name": "s"},
                        "namespaceSelector": {"matchExpressions": [{"key": "k", "operator": "Gt"}]},
                    }
                ]
            },
            "at '/accounts/0/namespaceSelector/matchExpressions/0/operator'",
        ),
        (
            {
                "accounts": [
                    {"name": "a", "credentialsSecretRef": {"name": "s"}, "namespace": ["x"]}
                ]
            },
            "additional properties 'namespace' not allowed",
        ),
        (
            {
                "accounts": [
                    {"name": "a", "credentialsSecretRef": {"name": "s"}, "namespaces": ["x"]},
                    {"name": "a", "credentialsSecretRef": {"name": "t"}, "namespaces": ["z"]},
                ]
            },
            'accounts: the account name "a" is used twice',
        ),
        ({"accountSecrets": [{"namespace": "vault"}]}, "missing property 'name'"),
    ],
    ids=lambda v: v if isinstance(v, str) else json.dumps(v, sort_keys=True)[:60],
)
def test_bad_values_are_rejected_with_a_clear_message(
    audited: Audited, tmp_path: Path, values: dict[str, Any], message: str
) -> None:
    path = charts.values_file(tmp_path, "bad", values)
    result = audited.cp.helm("template", "scp", str(charts.CHART), "-f", str(path), check=False)
    assert result.returncode != 0
    assert message in result.stderr, result.stderr


# ---- installed releases and the operator under their RBAC ------------------------------------


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
        return charts.granted(rules)


FAST = {
    "backoffBase": 1,
    "backoffCap": 2,
    "slowBackoffBase": 1,
    "slowBackoffCap": 2,
    "holdRecheckInterval": 1,
}


@pytest.fixture(scope="module")
def cluster_release(
    audited: Audited, emulator: ThreadedEmulator, tmp_path_factory: pytest.TempPathFactory
) -> Release:
    """Default RBAC (all namespaces); keys created by the chart from values. No admission
    policies: acting in every namespace, their finalizer would hold objects that tests here
    create in team-c and delete with no operator running (tests/e2e/test_admission.py covers
    them; the namespaced release keeps them, acting in team-a and team-b only)."""
    values = {
        "credentials": {"accessKey": emulator.access_key, "secretKey": emulator.secret_key},
        "scp": {"endpoint": emulator.url},
        "operator": FAST,
        "admission": {"enabled": False},
        "accounts": [_audit_account("audit-cluster", emulator, "audit-keys", ["team-c"])],
        # an all-namespaces operator looks after every account, the teams release's too
        "accountSecrets": [{"namespace": TEAMS_NAMESPACE, "name": "team-scp-keys"}],
    }
    _account_secret(audited.cp, RELEASE_NAMESPACE, "audit-keys", emulator)
    _ensure_namespace(audited.cp, TEAMS_NAMESPACE)  # for the Role on the teams' Secret
    path = charts.values_file(tmp_path_factory.mktemp("cluster"), "values", values)
    audited.cp.helm(
        "install", "scp", str(charts.CHART), "-n", RELEASE_NAMESPACE, "--no-hooks", "-f", str(path)
    )
    return Release("scp", RELEASE_NAMESPACE, "scp-scp-operator", ())


@pytest.fixture(scope="module")
def namespaced_release(
    audited: Audited, emulator: ThreadedEmulator, tmp_path_factory: pytest.TempPathFactory
) -> Release:
    """watchNamespaces team-a and team-b; keys in an existing Secret under custom key names."""
    namespace = TEAMS_NAMESPACE
    _ensure_namespace(audited.cp, namespace)  # the cluster release may have made it
    audited.cp.kubectl(
        "create",
        "secret",
        "generic",
        "team-scp-keys",
        "-n",
        namespace,
        f"--from-literal=ak={emulator.access_key}",
        f"--from-literal=sk={emulator.secret_key}",
    )
    values = {
        "watchNamespaces": ["team-a", "team-b"],
        "credentials": {
            "existingSecret": "team-scp-keys",
            "existingSecretKeys": {"accessKey": "ak", "secretKey": "sk"},
        },
        "scp": {"endpoint": emulator.url},
        "operator": FAST,
        "accounts": [
            _audit_account("audit-teams", emulator, "team-scp-keys", ["team-a"], "ak", "sk")
        ],
    }
    path = charts.values_file(tmp_path_factory.mktemp("namespaced"), "values", values)
    audited.cp.helm(
        "install", "teams", str(charts.CHART), "-n", namespace, "--no-hooks", "-f", str(path)
    )
    return Release("teams", namespace, "teams-scp-operator", ("team-a", "team-b"))


def _audit_account(
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


TEAMS_NAMESPACE = "scp-teams"


def _ensure_namespace(cp: ControlPlane, name: str) -> None:
    manifest = cp.kubectl("create", "namespace", name, "--dry-run=client", "-o", "json").stdout
    cp.kubectl("apply", "-f", "-", input=manifest)


def _account_secret(
    cp: ControlPlane, namespace: str, name: str, emulator: ThreadedEmulator
) -> None:
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


def _virtual_server(name: str, namespace: str, server_id: str, account: str | None = None) -> str:
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


def _ready(cp: ControlPlane, name: str, namespace: str) -> dict[str, Any] | None:
    obj = charts.get_json(cp, "virtualserver", name, "-n", namespace)
    for condition in obj.get("status", {}).get("conditions", []):
        if condition["type"] == "Ready":
            return dict(obj)
    return None


def _account_ready(cp: ControlPlane, name: str) -> bool:
    obj = charts.get_json(cp, "scpaccount", name)
    return any(
        c["type"] == "Ready" and c["status"] == "True"
        for c in (obj.get("status") or {}).get("conditions") or []
    )


def _gone(cp: ControlPlane, name: str, namespace: str) -> bool:
    result = cp.kubectl("get", "virtualserver", name, "-n", namespace, check=False)
    return result.returncode != 0 and "NotFound" in result.stderr


@pytest.mark.parametrize("release_fixture", ["cluster_release", "namespaced_release"])
def test_operator_deletes_a_server_with_exactly_the_charts_permissions(
    audited: Audited,
    emulator: ThreadedEmulator,
    tmp_path: Path,
    request: pytest.FixtureRequest,
    release_fixture: str,
) -> None:
    release: Release = request.getfixturevalue(release_fixture)
    cp = audited.cp
    namespace = release.watched[0] if release.watched else "team-c"
    name = f"vs-{uuid.uuid4().hex[:6]}"
    server = emulator.seed(name=name)
    kubeconfig = release.kubeconfig(cp)
    with charts.run_operator(cp, release.namespace, release.fullname, kubeconfig, tmp_path) as op:
        charts.wait_for("the operator's /healthz (the chart's probes)", op.healthy)
        cp.kubectl("apply", "-f", "-", input=_virtual_server(name, namespace, server["id"]))
        observed = charts.wait_for("the Ready condition", lambda: _ready(cp, name, namespace))
        assert observed["metadata"]["finalizers"] == [constants.FINALIZER]
        (ready,) = [c for c in observed["status"]["conditions"] if c["type"] == "Ready"]
        assert (ready["status"], ready["reason"]) == ("True", "ServerFound")
        cp.kubectl("delete", "virtualserver", name, "-n", namespace, "--wait=false")
        charts.wait_for("the object to go", lambda: _gone(cp, name, namespace))
        deletes = emulator.requests(method="DELETE", path_contains=server["id"])
        assert [d["status"] for d in deletes] == [202]
        events = cp.kubectl("get", "events", "-n", namespace, "-o", "json").stdout
        assert "DeleteAccepted" in events
        scraped = op.metrics()
        assert scraped is not None, "the chart's metrics port serves nothing"
        assert "scp_operator" in scraped

        # the same through the release's ScpAccount: its Secret, the namespace's labels, status
        account = "audit-cluster" if release.fullname == "scp-scp-operator" else "audit-teams"
        charts.wait_for(
            "the account's Ready condition",
            lambda: _account_ready(cp, account),
        )
        via = f"{name}-acct"
        server = emulator.seed(name=via)
        cp.kubectl("apply", "-f", "-", input=_virtual_server(via, namespace, server["id"], account))
        charts.wait_for("Ready via the account", lambda: _ready(cp, via, namespace))
        cp.kubectl("delete", "virtualserver", via, "-n", namespace, "--wait=false")
        charts.wait_for("the account's object to go", lambda: _gone(cp, via, namespace))
        deletes = emulator.requests(method="DELETE", path_contains=server["id"])
        assert [d["status"] for d in deletes] == [202]
    log = op.log()
    assert "Forbidden" not in log, log
    assert " 403" not in log, log

    requests = charts.audited_requests(audited.audit_log, release.user)
    denied = [r for r in requests if r.code == 403]
    assert denied == [], denied
    used = {(r.group, r.resource, r.verb) for r in requests if r.is_resource}
    # Sufficient (nothing denied) and necessary (every granted permission was used).
    granted = release.rules(cp)
    assert used <= granted, used - granted
    assert granted == used, granted - used
    crd_gets = {
        r.name for r in requests if r.resource == "customresourcedefinitions" and r.verb == "get"
    }
    assert crd_gets == {constants.CRD_NAME}


def test_namespaced_operator_leaves_other_namespaces_alone(
    audited: Audited,
    emulator: ThreadedEmulator,
    namespaced_release: Release,
    tmp_path: Path,
) -> None:
    cp = audited.cp
    server = emulator.seed(name="outside")
    kubeconfig = namespaced_release.kubeconfig(cp)
    with charts.run_operator(
        cp, namespaced_release.namespace, namespaced_release.fullname, kubeconfig, tmp_path
    ) as op:
        charts.wait_for("the operator's /healthz", op.healthy)
        cp.kubectl("apply", "-f", "-", input=_virtual_server("outside", "team-c", server["id"]))
        inside = emulator.seed(name="inside")
        cp.kubectl("apply", "-f", "-", input=_virtual_server("inside", "team-b", inside["id"]))
        charts.wait_for("team-b's object to be observed", lambda: _ready(cp, "inside", "team-b"))
        outside = charts.get_json(cp, "virtualserver", "outside", "-n", "team-c")
        assert "finalizers" not in outside["metadata"]
        assert "status" not in outside
        cp.kubectl("delete", "virtualserver", "outside", "-n", "team-c")
        cp.kubectl("delete", "virtualserver", "inside", "-n", "team-b", "--wait=false")
        charts.wait_for("team-b's object to go", lambda: _gone(cp, "inside", "team-b"))
    assert emulator.server(server["id"]) is not None, "a server outside the watch was touched"


def _dry_run_create(cp: ControlPlane, manifest: dict[str, Any]) -> subprocess.CompletedProcess[str]:
    return cp.kubectl(
        "create",
        "--dry-run=server",
        "-o",
        "json",
        "-f",
        "-",
        input=json.dumps(manifest),
        check=False,
    )


def test_no_matching_scpaccount_refuses_nothing(
    audited: Audited, namespaced_release: Release
) -> None:
    """Objects without accountRef, or naming an account that does not exist, pass the account
    policy. (The API server resolves the policy's parameters before its matchConditions: with
    parameterNotFoundAction Deny a cluster without any ScpAccount refused every create; the
    rendered binding says Allow, checked in test_admission_policies_follow_their_switches.)"""
    cp = audited.cp
    plain = json.loads(_virtual_server("plain", "team-a", str(uuid.uuid4())))

    def mutated() -> bool:  # the policies act once the finalizer policy does
        result = _dry_run_create(cp, plain)
        assert result.returncode == 0, result.stderr
        return constants.FINALIZER in json.loads(result.stdout)["metadata"].get("finalizers", [])

    charts.wait_for("the release's admission policies to act", mutated)
    named = {**plain, "spec": {**plain["spec"], "accountRef": "no-such-account"}}
    for manifest in (plain, named):
        result = _dry_run_create(cp, manifest)
        assert result.returncode == 0, result.stderr


LEASES = "leases.coordination.k8s.io"
SCPACCOUNTS = "scpaccounts.virtualserver.scp.dev"

#: One ``kubectl auth can-i`` question: (verb, resource, namespace: "own" for the release's,
#: "*" for all, "" for cluster-scoped; then an object name and/or extra kubectl flags).
Check = tuple[str, str, str, tuple[str, ...]]

# What the chart's ServiceAccount must not be able to do, whatever the mode.
DENIED: list[Check] = [
    ("get", "secrets", "own", ()),
    ("list", "secrets", "own", ()),
    ("get", "secrets", "team-a", ()),
    ("list", "secrets", "*", ()),
    ("get", "configmaps", "own", ()),
    ("delete", "virtualservers.virtualserver.scp.dev", "team-a", ()),
    ("deletecollection", "virtualservers.virtualserver.scp.dev", "team-a", ()),
    ("create", "virtualservers.virtualserver.scp.dev", "team-a", ()),
    ("update", "virtualservers.virtualserver.scp.dev", "team-a", ()),
    ("get", "virtualservers.virtualserver.scp.dev", "team-a", ()),
    ("update", "virtualservers.virtualserver.scp.dev", "team-a", ("--subresource=status",)),
    ("create", "pods", "own", ()),
    ("create", "pods", "team-a", ()),
    ("create", "deployments.apps", "own", ()),
    ("create", "jobs.batch", "own", ()),
    ("create", "serviceaccounts", "own", ("--subresource=token",)),
    ("impersonate", "serviceaccounts", "own", ()),
    ("patch", "events", "team-a", ()),
    ("delete", "events", "team-a", ()),
    (
        "get",
        "customresourcedefinitions.apiextensions.k8s.io",
        "",
        ("servicemonitors.monitoring.coreos.com",),
    ),
    ("update", "customresourcedefinitions.apiextensions.k8s.io", "", (constants.CRD_NAME,)),
    ("patch", "customresourcedefinitions.apiextensions.k8s.io", "", (constants.CRD_NAME,)),
    ("delete", "customresourcedefinitions.apiextensions.k8s.io", "", (constants.CRD_NAME,)),
    ("create", "customresourcedefinitions.apiextensions.k8s.io", "", ()),
    ("create", "clusterrolebindings.rbac.authorization.k8s.io", "", ()),
    ("escalate", "clusterroles.rbac.authorization.k8s.io", "", ()),
    ("bind", "clusterroles.rbac.authorization.k8s.io", "", ()),
    ("create", "namespaces", "", ()),
    ("delete", "namespaces", "", ("team-a",)),
    ("get", "nodes", "", ()),
    ("create", "kopfpeerings.kopf.dev", "own", ()),
    # ScpAccounts: read them and write their status, nothing else; no account Secret here
    ("create", SCPACCOUNTS, "", ()),
    ("update", SCPACCOUNTS, "", ("any-account",)),
    ("patch", SCPACCOUNTS, "", ("any-account",)),
    ("delete", SCPACCOUNTS, "", ("any-account",)),
    ("update", SCPACCOUNTS, "", ("any-account", "--subresource=status")),
    ("get", "secrets", "team-a", ("any-account-keys",)),
    ("update", "namespaces", "", ("team-a",)),
    # the Lease: only its own, only get/update/create, only in the lease namespace
    ("list", LEASES, LEASE_NAMESPACE, ()),
    ("watch", LEASES, LEASE_NAMESPACE, ()),
    ("delete", LEASES, LEASE_NAMESPACE, (CLUSTER_LEASE,)),
    ("patch", LEASES, LEASE_NAMESPACE, (CLUSTER_LEASE,)),
    ("update", LEASES, LEASE_NAMESPACE, ("kube-scheduler",)),
    ("get", LEASES, "kube-node-lease", ()),
    ("create", LEASES, "own", ()),
]

ALLOWED_CLUSTER: list[Check] = [
    ("list", "virtualservers.virtualserver.scp.dev", "*", ()),
    ("watch", "virtualservers.virtualserver.scp.dev", "team-c", ()),
    ("patch", "virtualservers.virtualserver.scp.dev", "team-c", ()),
    ("patch", "virtualservers.virtualserver.scp.dev", "team-a", ("--subresource=status",)),
    ("create", "events", "team-c", ()),
    ("get", "customresourcedefinitions.apiextensions.k8s.io", "", (constants.CRD_NAME,)),
    ("list", "customresourcedefinitions.apiextensions.k8s.io", "", ()),
    ("watch", "customresourcedefinitions.apiextensions.k8s.io", "", ()),
    ("get", LEASES, LEASE_NAMESPACE, (CLUSTER_LEASE,)),
    ("update", LEASES, LEASE_NAMESPACE, (CLUSTER_LEASE,)),
    ("create", LEASES, LEASE_NAMESPACE, ()),
]

ALLOWED_NAMESPACED: list[Check] = [
    ("list", "virtualservers.virtualserver.scp.dev", "team-a", ()),
    ("patch", "virtualservers.virtualserver.scp.dev", "team-b", ()),
    ("patch", "virtualservers.virtualserver.scp.dev", "team-b", ("--subresource=status",)),
    ("create", "events", "team-a", ()),
    ("list", "namespaces", "", ()),
    ("get", "customresourcedefinitions.apiextensions.k8s.io", "", (constants.CRD_NAME,)),
    ("get", LEASES, LEASE_NAMESPACE, (TEAMS_LEASE,)),
    ("update", LEASES, LEASE_NAMESPACE, (TEAMS_LEASE,)),
    ("create", LEASES, LEASE_NAMESPACE, ()),
    # the shared-server check asks across every namespace (list only)
    ("list", "virtualservers.virtualserver.scp.dev", "*", ()),
    ("list", "virtualservers.virtualserver.scp.dev", "team-c", ()),
]

#: What both modes allow on ScpAccounts and namespaces (for the account paths).
ALLOWED_ACCOUNTS: list[Check] = [
    ("get", SCPACCOUNTS, "", ("any-account",)),
    ("list", SCPACCOUNTS, "", ()),
    ("watch", SCPACCOUNTS, "", ()),
    ("patch", SCPACCOUNTS, "", ("any-account", "--subresource=status")),
    ("get", "namespaces", "", ("team-a",)),
    ("list", "namespaces", "", ()),
]

DENIED_NAMESPACED: list[Check] = [
    ("watch", "virtualservers.virtualserver.scp.dev", "team-c", ()),
    ("patch", "virtualservers.virtualserver.scp.dev", "team-c", ()),
    ("patch", "virtualservers.virtualserver.scp.dev", "team-c", ("--subresource=status",)),
    ("create", "events", "team-c", ()),
    ("create", "events", "own", ()),
    ("update", LEASES, LEASE_NAMESPACE, (CLUSTER_LEASE,)),  # the all-namespaces instance's
]

DENIED_CLUSTER: list[Check] = [
    ("watch", "namespaces", "", ()),
    ("get", "events", "team-a", ()),
    ("update", LEASES, LEASE_NAMESPACE, (TEAMS_LEASE,)),
]


def _can_i(
    cp: ControlPlane,
    kubeconfig: Path,
    release: Release,
    check: Check,
) -> str:
    verb, resource, namespace, extra = check
    names = [e for e in extra if not e.startswith("--")]
    flags = [e for e in extra if e.startswith("--")]
    args = ["auth", "can-i", verb, "/".join([resource, *names]), *flags]
    if namespace == "*":
        args.append("--all-namespaces")
    elif namespace:
        args += ["-n", release.namespace if namespace == "own" else namespace]
    return cp.kubectl(*args, kubeconfig=kubeconfig, check=False).stdout.strip()


@pytest.mark.parametrize("release_fixture", ["cluster_release", "namespaced_release"])
def test_service_account_can_do_only_what_the_operator_needs(
    audited: Audited, request: pytest.FixtureRequest, release_fixture: str
) -> None:
    release: Release = request.getfixturevalue(release_fixture)
    kubeconfig = release.kubeconfig(audited.cp)
    if release.watched:
        allowed, denied = ALLOWED_NAMESPACED + ALLOWED_ACCOUNTS, DENIED + DENIED_NAMESPACED
    else:
        allowed, denied = ALLOWED_CLUSTER + ALLOWED_ACCOUNTS, DENIED + DENIED_CLUSTER
    answers = {check: _can_i(audited.cp, kubeconfig, release, check) for check in allowed + denied}
    wrong = {c: a for c, a in answers.items() if a != ("yes" if c in allowed else "no")}
    assert wrong == {}, wrong


def test_uninstall_is_held_by_the_guard_until_it_passes(audited: Audited, tmp_path: Path) -> None:
    """helm uninstall runs the pre-delete check first and does not remove anything while the
    check has not passed (here it never runs: no kubelet); --no-hooks is the way around."""
    cp = audited.cp
    namespace = "scp-guarded"
    cp.kubectl("create", "namespace", namespace)
    # No admission policies: they would act in every namespace (see cluster_release).
    values = {"uninstallGuard": {"activeDeadlineSeconds": 30}, "admission": {"enabled": False}}
    path = charts.values_file(tmp_path, "v", values)
    cp.helm("install", "guarded", str(charts.CHART), "-n", namespace, "--no-hooks", "-f", str(path))
    held = cp.helm("uninstall", "guarded", "-n", namespace, "--timeout=8s", check=False)
    assert held.returncode != 0
    assert "Job/scp-guarded/guarded-scp-operator-uninstall-check" in held.stderr, held.stderr
    job = charts.get_json(cp, "job", "guarded-scp-operator-uninstall-check", "-n", namespace)
    pod = job["spec"]["template"]["spec"]
    assert pod["serviceAccountName"] == "guarded-scp-operator"
    assert pod["containers"][0]["args"] == ["uninstall-check"]
    assert job["metadata"]["annotations"]["helm.sh/hook"] == "pre-delete"
    # Nothing was removed while the check had not passed.
    cp.kubectl("get", "deployment", "guarded-scp-operator", "-n", namespace)
    cp.kubectl("get", "clusterrole", "guarded-scp-operator")

    cp.helm("uninstall", "guarded", "-n", namespace, "--no-hooks")
    assert cp.kubectl("get", "clusterrole", "guarded-scp-operator", check=False).returncode != 0
    # Helm never deletes CRDs from crds/: the VirtualServers (and their finalizers) stay.
    cp.kubectl("get", "crd", constants.CRD_NAME)


def test_uninstall_check_refuses_while_virtualservers_exist(
    audited: Audited, cluster_release: Release, emulator: ThreadedEmulator
) -> None:
    cp = audited.cp
    kubeconfig = cluster_release.kubeconfig(cp)
    env = {"KUBECONFIG": str(kubeconfig), "PATH": "/usr/bin:/bin"}
    server = emulator.seed(name="guarded")
    cp.kubectl("apply", "-f", "-", input=_virtual_server("guarded", "team-c", server["id"]))
    refused = subprocess.run(
        [str(charts.OPERATOR), "uninstall-check"],
        env=env,
        capture_output=True,
        text=True,
        check=False,
    )
    assert refused.returncode == 1
    assert "team-c/guarded" in refused.stderr
    assert "--no-hooks" in refused.stderr
    cp.kubectl("delete", "virtualserver", "guarded", "-n", "team-c")  # no operator: no finalizer
    allowed = subprocess.run(
        [str(charts.OPERATOR), "uninstall-check"],
        env=env,
        capture_output=True,
        text=True,
        check=False,
    )
    assert allowed.returncode == 0, allowed.stderr


def test_notes_say_what_to_do_next(audited: Audited, tmp_path: Path) -> None:
    path = charts.values_file(tmp_path, "v", {})
    notes = audited.cp.helm(
        "install", "notes", str(charts.CHART), "-n", "team-c", "--dry-run=client", "-f", str(path)
    ).stdout
    notes = notes[notes.index("NOTES:") :]
    expected = textwrap.dedent(
        """\
        kubectl -n team-c create secret generic scp-credentials \\
               --from-literal=access-key=<ACCESS_KEY> --from-literal=secret-key=<SECRET_KEY>"""
    )
    assert " ".join(expected.split()) in " ".join(notes.split())
    assert "helm uninstall --no-hooks" in notes
    assert "deletionPolicy: Orphan" in notes
