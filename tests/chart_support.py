"""The Helm chart ``helm/scp-operator`` as tests of every tier see it.

Where it is, the documented value combinations, values files, rendering with the real helm —
:func:`offline_helm` for tests without a cluster (``tests/packaging/test_chart_render.py``), or
a control plane's ``ControlPlane.helm`` (``tests/e2e/test_chart_*.py``, ``test_admission.py``)
— and reading the rendered manifests (:func:`find`, :func:`granted`). The cluster side (running
the operator the way the chart's Deployment would, the audit log) is ``tests/e2e/charts.py``.

helm is the pinned one ``tools/controlplane/build.sh`` builds (``scp_testenv.resolve_binaries``;
``HELM_BINARY`` or ``TEST_ASSET_HELM`` name another).
"""

from __future__ import annotations

import os
import subprocess
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any, Protocol

import yaml

from scp_operator.lease import effective_lease_name
from scp_testenv import KubectlError
from tests.conftest import REPO

CHART = REPO / "helm" / "scp-operator"
RELEASE_NAMESPACE = "scp-system"
ACCOUNT_CRD = "scpaccounts.virtualserver.scp.dev"
ACCOUNT_CRD_FILE = REPO / "crds" / f"{ACCOUNT_CRD}.yaml"
#: Where the chart puts the operator's Lease (and the Role for it) by default.
LEASE_NAMESPACE = "kube-system"
#: The Leases of the two releases the e2e chart tests install: all namespaces, and team-a +
#: team-b.
CLUSTER_LEASE = "scp-operator"
TEAMS_LEASE = effective_lease_name("scp-operator", ["team-a", "team-b"])

#: What ``helm template`` must be told to render the MutatingAdmissionPolicy (Helm's offline
#: capabilities name API groups, not kinds; a real install reads the API server's discovery).
WITH_MUTATING_POLICY = ("--api-versions", "admissionregistration.k8s.io/v1/MutatingAdmissionPolicy")

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
    "day-2": {
        "grafanaDashboard": {
            "enabled": True,
            "namespace": "team-c",
            "labels": {"grafana_dashboard": "1", "team": "platform"},
            "annotations": {"grafana_folder": "Platform"},
        },
        "extraVolumes": [{"name": "corp-ca", "configMap": {"name": "corp-ca", "optional": True}}],
        "extraVolumeMounts": [{"name": "corp-ca", "mountPath": "/etc/corp-ca", "readOnly": True}],
        "startupProbe": {
            "initialDelaySeconds": 5,
            "periodSeconds": 15,
            "timeoutSeconds": 3,
            "failureThreshold": 80,
        },
        "operator": {"resyncInterval": 300},
        "rbac": {"aggregatedRoles": False},
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


class HelmFn(Protocol):
    """The signature of ``ControlPlane.helm`` and of :func:`offline_helm`'s result."""

    def __call__(
        self,
        *args: str,
        check: bool = ...,
        input: str | None = ...,
        timeout: float = ...,
    ) -> subprocess.CompletedProcess[str]: ...


def offline_helm(binary: Path, home: Path) -> HelmFn:
    """helm with no cluster: its own ``HOME`` and config/cache/data directories under ``home``,
    and a kubeconfig that names no cluster (``template``, ``lint``, ``show`` and ``install
    --dry-run=client`` never connect). Raises ``scp_testenv.KubectlError`` like
    ``ControlPlane.helm`` unless ``check=False``."""
    kubeconfig = home / "kubeconfig"
    home.mkdir(parents=True, exist_ok=True)
    kubeconfig.write_text("apiVersion: v1\nkind: Config\nclusters: []\ncontexts: []\n")
    env = {
        "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
        "HOME": str(home),
        "KUBECONFIG": str(kubeconfig),
        "HELM_CONFIG_HOME": str(home / "config"),
        "HELM_CACHE_HOME": str(home / "cache"),
        "HELM_DATA_HOME": str(home / "data"),
    }

    def helm(
        *args: str, check: bool = True, input: str | None = None, timeout: float = 300.0
    ) -> subprocess.CompletedProcess[str]:
        command = [str(binary), *args]
        result = subprocess.run(
            command,
            input=input,
            capture_output=True,
            text=True,
            timeout=timeout,
            env=env,
            check=False,
        )
        if check and result.returncode != 0:
            raise KubectlError(result.returncode, command, result.stdout, result.stderr)
        return result

    return helm


def values_file(directory: Path, name: str, values: Mapping[str, Any]) -> Path:
    """Write Helm values to ``directory/name.yaml``."""
    directory.mkdir(parents=True, exist_ok=True)
    path = directory / f"{name}.yaml"
    path.write_text(yaml.safe_dump(dict(values), sort_keys=True))
    return path


def render(
    helm: HelmFn,
    values: Path,
    *,
    release: str = "scp",
    namespace: str = "scp-system",
    extra: Sequence[str] = (),
) -> list[dict[str, Any]]:
    """``helm template`` with a values file (and ``extra`` flags); the manifests as dicts (hooks
    included)."""
    out = helm("template", release, str(CHART), "-n", namespace, "-f", str(values), *extra).stdout
    return [doc for doc in yaml.safe_load_all(out) if doc]


def find(manifests: list[dict[str, Any]], kind: str, name: str | None = None) -> dict[str, Any]:
    """The one manifest of ``kind`` (and ``name``); fails the test if there is not exactly one."""
    found = [
        m
        for m in manifests
        if m["kind"] == kind and (name is None or m["metadata"]["name"] == name)
    ]
    assert len(found) == 1, f"expected one {kind} {name or ''}, got {len(found)}"
    return found[0]


def granted(rules: list[dict[str, Any]]) -> set[tuple[str, str, str]]:
    """(group, resource, verb) triples a list of RBAC rules grants (no wildcards expected)."""
    triples = set()
    for rule in rules:
        for group in rule.get("apiGroups", []):
            for resource in rule.get("resources", []):
                for verb in rule["verbs"]:
                    assert "*" not in (group, resource, verb), f"wildcard in {rule}"
                    triples.add((group, resource, verb))
    return triples
