"""The Helm chart rendered with the real helm, no cluster: lint, the rendered objects, RBAC and
admission policies per value, values the schema refuses, and the notes.

What needs an API server (server-side validation, installs, the operator under the chart's
RBAC, uninstall) is in ``tests/e2e/test_chart_*.py``. helm is the pinned one the e2e tier builds
(``make controlplane``; ``HELM_BINARY`` names another); without it these tests are skipped.
"""

from __future__ import annotations

import json
import textwrap
from pathlib import Path
from typing import Any

import pytest

from scp_operator import constants
from scp_operator.lease import effective_lease_name
from tests.chart_support import (
    ACCOUNT_CRD,
    CHART,
    CLUSTER_LEASE,
    COMBINATIONS,
    LEASE_NAMESPACE,
    WITH_MUTATING_POLICY,
    HelmFn,
    find,
    granted,
    render,
    values_file,
)
from tests.conftest import REPO

#: The operator's own ClusterRole (release "scp"); the chart also renders the user roles
#: <fullname>-view and <fullname>-edit (rbac.aggregatedRoles).
OPERATOR_ROLE = "scp-scp-operator"


@pytest.mark.parametrize("combination", list(COMBINATIONS))
def test_chart_lints_strictly(helm: HelmFn, tmp_path: Path, combination: str) -> None:
    values = values_file(tmp_path, combination, COMBINATIONS[combination])
    result = helm("lint", "--strict", str(CHART), "-f", str(values))
    assert "0 chart(s) failed" in result.stdout


@pytest.mark.parametrize("combination", list(COMBINATIONS))
def test_operator_pod_is_locked_down(helm: HelmFn, tmp_path: Path, combination: str) -> None:
    values = values_file(tmp_path, combination, COMBINATIONS[combination])
    manifests = render(helm, values)
    deployment = find(manifests, "Deployment")
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
    assert container["args"][0] == "run"
    assert "--standalone" not in container["args"]  # set in the startup hook, not as a flag
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
    helm: HelmFn, tmp_path: Path
) -> None:
    def checksum(name: str, values: dict[str, Any]) -> str:
        manifests = render(helm, values_file(tmp_path, name, values))
        deployment = find(manifests, "Deployment")
        value: str = deployment["spec"]["template"]["metadata"]["annotations"]["checksum/config"]
        return value

    keys = {"credentials": {"accessKey": "AK1", "secretKey": "SK1"}}
    base = checksum("base", keys)
    assert checksum("region", {**keys, "scp": {"region": "kr-east1"}}) != base
    assert checksum("knob", {**keys, "operator": {"backoffCap": 60}}) != base
    assert checksum("rotated", {"credentials": {"accessKey": "AK2", "secretKey": "SK2"}}) == base


def test_metrics_off_means_port_zero_and_no_service(helm: HelmFn, tmp_path: Path) -> None:
    values = {"metrics": {"enabled": False}}
    manifests = render(helm, values_file(tmp_path, "m", values))
    assert find(manifests, "ConfigMap")["data"]["SCP_OPERATOR_METRICS_PORT"] == "0"
    assert [m for m in manifests if m["kind"] in ("Service", "ServiceMonitor")] == []
    on = render(helm, values_file(tmp_path, "on", {}))
    assert find(on, "ConfigMap")["data"]["SCP_OPERATOR_METRICS_PORT"] == "9090"
    assert find(on, "Service")["spec"]["ports"][0]["port"] == 9090


def _lease_rbac(manifests: list[dict[str, Any]]) -> tuple[str, list[str]]:
    """The lease Role's namespace and the Lease names it may get/update (its binding checked)."""
    role = find(manifests, "Role", "scp-scp-operator-lease")
    binding = find(manifests, "RoleBinding", "scp-scp-operator-lease")
    assert binding["metadata"]["namespace"] == role["metadata"]["namespace"]
    assert binding["roleRef"]["name"] == role["metadata"]["name"]
    (named,) = [r for r in role["rules"] if "resourceNames" in r]
    assert sorted(named["verbs"]) == ["get", "update"]
    (create,) = [r for r in role["rules"] if "resourceNames" not in r]
    assert create["verbs"] == ["create", "list"]  # list: other shard plans (docs/scaling.md)
    return role["metadata"]["namespace"], named["resourceNames"]


def _lease_env(manifests: list[dict[str, Any]]) -> dict[str, str]:
    data: dict[str, str] = find(manifests, "ConfigMap")["data"]
    return {k: v for k, v in data.items() if k.startswith("SCP_OPERATOR_LEASE_")}


def test_the_lease_role_grants_exactly_the_lease_the_operator_derives(
    helm: HelmFn, tmp_path: Path
) -> None:
    """The chart computes the namespaced Lease name in a template; it must be the operator's."""
    cluster = render(helm, values_file(tmp_path, "c", {}))
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
    namespaced = render(helm, values_file(tmp_path, "n", values))
    assert _lease_rbac(namespaced) == ("team-c", [effective_lease_name("vs", ["team-a", "team-b"])])
    assert _lease_env(namespaced) == {
        "SCP_OPERATOR_LEASE_NAME": "vs",
        "SCP_OPERATOR_LEASE_NAMESPACE": "team-c",
        "SCP_OPERATOR_LEASE_DURATION": "30",
    }


def test_rbac_follows_watch_namespaces(helm: HelmFn, tmp_path: Path) -> None:
    cluster = render(helm, values_file(tmp_path, "c", {}))
    namespaced_kinds = [
        m["kind"]
        for m in cluster
        if m["kind"] in ("Role", "RoleBinding") and not m["metadata"]["name"].endswith("-lease")
    ]
    assert namespaced_kinds == []
    cluster_rules = granted(find(cluster, "ClusterRole", OPERATOR_ROLE)["rules"])
    assert ("virtualserver.scp.dev", "virtualservers", "patch") in cluster_rules

    namespaced = render(helm, values_file(tmp_path, "n", {"watchNamespaces": ["team-a", "team-b"]}))
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
    cluster_only = granted(find(namespaced, "ClusterRole", OPERATOR_ROLE)["rules"])
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
    args = find(namespaced, "Deployment")["spec"]["template"]["spec"]["containers"][0]
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


def test_install_doc_lists_exactly_the_granted_permissions(helm: HelmFn, tmp_path: Path) -> None:
    documented = _documented_permissions()
    cluster = render(helm, values_file(tmp_path, "c", ACCOUNTS))
    namespaced = render(helm, values_file(tmp_path, "n", {"watchNamespaces": ["team-a"]}))
    assert documented["cluster/ClusterRole"] == granted(
        find(cluster, "ClusterRole", OPERATOR_ROLE)["rules"]
    )
    assert documented["namespaced/ClusterRole"] == granted(
        find(namespaced, "ClusterRole", OPERATOR_ROLE)["rules"]
    )
    assert documented["namespaced/Role"] == granted(
        find(namespaced, "Role", "scp-scp-operator")["rules"]
    )
    for manifests in (cluster, namespaced):
        lease_role = find(manifests, "Role", "scp-scp-operator-lease")
        assert documented["lease/Role"] == granted(lease_role["rules"])
    secret_roles = [
        m for m in cluster if m["metadata"]["name"].startswith("scp-scp-operator-secret-")
    ]
    assert secret_roles
    for role in secret_roles:
        if role["kind"] == "Role":
            assert documented["secret/Role"] == granted(role["rules"])


def test_crds_are_shipped_but_not_templated(helm: HelmFn, tmp_path: Path) -> None:
    values = values_file(tmp_path, "d", {})
    assert [m for m in render(helm, values) if m["kind"] == "CustomResourceDefinition"] == []
    shown = helm("show", "crds", str(CHART)).stdout
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


def test_accounts_render_scpaccounts_and_a_role_per_secret(helm: HelmFn, tmp_path: Path) -> None:
    manifests = render(helm, values_file(tmp_path, "a", ACCOUNTS))
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
        binding = find(manifests, "RoleBinding", name)
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
    cluster_rules = granted(find(manifests, "ClusterRole", OPERATOR_ROLE)["rules"])
    assert {r for _, r, _ in cluster_rules} & {"secrets"} == set()

    # rbac.create=false: the accounts, but no Role (your own RBAC must grant the Secrets).
    own = {
        **ACCOUNTS,
        "serviceAccount": {"create": False, "name": "robot"},
        "rbac": {"create": False},
    }
    manifests = render(helm, values_file(tmp_path, "own", own))
    assert _kinds(manifests, "ScpAccount") == ["shared-all", "shared-prod", "team-a"]
    assert _kinds(manifests, "Role", "RoleBinding", "ClusterRole", "ClusterRoleBinding") == []


def test_default_values_render_no_account(helm: HelmFn, tmp_path: Path) -> None:
    manifests = render(helm, values_file(tmp_path, "d", {}))
    assert _kinds(manifests, "ScpAccount") == []
    assert [m for m in manifests if "-secret-" in m["metadata"]["name"]] == []
    config = find(manifests, "ConfigMap")["data"]
    assert config["SCP_OPERATOR_ACCOUNT_RECHECK_INTERVAL"] == "300"
    values = {"operator": {"accountRecheckInterval": 45}}
    manifests = render(helm, values_file(tmp_path, "r", values))
    config = find(manifests, "ConfigMap")["data"]
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
    helm: HelmFn,
    tmp_path: Path,
    admission: dict[str, bool],
    mutating_served: bool,
    expected: list[str],
) -> None:
    path = values_file(tmp_path, "a", {"admission": admission})
    extra = WITH_MUTATING_POLICY if mutating_served else ()
    manifests = render(helm, path, extra=extra)
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
    helm: HelmFn, tmp_path: Path
) -> None:
    path = values_file(tmp_path, "n", {"watchNamespaces": ["team-b", "team-a"]})
    one = render(helm, path, release="one", extra=WITH_MUTATING_POLICY)
    two = render(helm, path, release="two", extra=WITH_MUTATING_POLICY)
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
    account = find(one, VALIDATING[0], "one-scp-operator-account-ref")["spec"]
    assert account["paramKind"] == {"apiVersion": constants.API_VERSION, "kind": "ScpAccount"}
    account_binding = find(one, VALIDATING[1], "one-scp-operator-account-ref")["spec"]
    # Allow: with Deny and no ScpAccount at all, every create was refused (see
    # test_no_scpaccount_in_the_cluster_refuses_nothing).
    assert account_binding["paramRef"] == {"selector": {}, "parameterNotFoundAction": "Allow"}


def test_admission_policies_need_kubernetes_1_30(helm: HelmFn, tmp_path: Path) -> None:
    path = values_file(tmp_path, "d", {})
    old = helm("template", "scp", str(CHART), "-f", str(path), "--kube-version=1.29.4", check=False)
    assert old.returncode != 0
    assert "admission policies need Kubernetes 1.30 or newer" in old.stderr, old.stderr
    assert "admission.enabled=false" in old.stderr
    off = values_file(tmp_path, "off", {"admission": {"enabled": False}})
    helm("template", "scp", str(CHART), "-f", str(off), "--kube-version=1.29.4")


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
        ({"prometheusRule": {"enabled": "yes"}}, "at '/prometheusRule/enabled': got string"),
        ({"prometheusRule": {"blockedSeconds": "30m"}}, "at '/prometheusRule/blockedSeconds'"),
        ({"prometheusRule": {"scpErrorRatio": 20}}, "at '/prometheusRule/scpErrorRatio': maximum"),
        ({"prometheusRule": {"treshold": 1}}, "additional properties 'treshold' not allowed"),
        ({"prometheusRule": {"alertLabels": {"team": 1}}}, "at '/prometheusRule/alertLabels/team'"),
        ({"grafanaDashboard": {"enabled": 1}}, "at '/grafanaDashboard/enabled': got number"),
        ({"grafanaDashboard": {"labels": {"grafana_dashboard": 1}}}, "grafana_dashboard"),
        ({"rbac": {"aggregatedRoles": "true"}}, "at '/rbac/aggregatedRoles': got string"),
        ({"startupProbe": {"failureThreshold": 0}}, "at '/startupProbe/failureThreshold': minimum"),
        (
            {"startupProbe": {"httpGet": {"path": "/"}}},
            "additional properties 'httpGet' not allowed",
        ),
        ({"operator": {"resyncInterval": "10m"}}, "at '/operator/resyncInterval': got string"),
        ({"operator": {"resyncInterval": 10}}, "at '/operator/resyncInterval'"),
        ({"operator": {"resyncInterval": 90000}}, "at '/operator/resyncInterval': maximum"),
        ({"extraVolumes": {"name": "x"}}, "at '/extraVolumes': got object, want array"),
        ({"extraVolumes": [{"emptyDir": {}}]}, "missing property 'name'"),
        ({"extraVolumeMounts": [{"name": "x"}]}, "missing property 'mountPath'"),
        ({"extraVolumeMounts": [{"name": "x", "mountPath": "rel"}]}, "at '/extraVolumeMounts/0/"),
        (
            {"extraVolumes": [{"name": "tmp", "emptyDir": {}}]},
            "extraVolumes: the volume name tmp is the chart's own",
        ),
        (
            {"extraVolumeMounts": [{"name": "x", "mountPath": "/var/run/secrets/scp/"}]},
            "extraVolumeMounts: /var/run/secrets/scp/ is mounted by the chart",
        ),
    ],
    ids=lambda v: v if isinstance(v, str) else json.dumps(v, sort_keys=True)[:60],
)
def test_bad_values_are_rejected_with_a_clear_message(
    helm: HelmFn, tmp_path: Path, values: dict[str, Any], message: str
) -> None:
    path = values_file(tmp_path, "bad", values)
    result = helm("template", "scp", str(CHART), "-f", str(path), check=False)
    assert result.returncode != 0
    assert message in result.stderr, result.stderr


def test_notes_say_what_to_do_next(helm: HelmFn, tmp_path: Path) -> None:
    path = values_file(tmp_path, "v", {})
    notes = helm(
        "install", "notes", str(CHART), "-n", "team-c", "--dry-run=client", "-f", str(path)
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


# ---- day 2: user roles, startup probe, extra volumes, resync -------------------------------

#: Kubernetes' aggregation labels (the built-in view, edit and admin ClusterRoles select them).
AGGREGATE = "rbac.authorization.k8s.io/aggregate-to-"


def _aggregated_into(role: dict[str, Any]) -> set[str]:
    labels = role["metadata"]["labels"]
    return {k.removeprefix(AGGREGATE) for k, v in labels.items() if k.startswith(AGGREGATE)}


def test_user_roles_aggregate_into_view_edit_and_admin(helm: HelmFn, tmp_path: Path) -> None:
    manifests = render(helm, values_file(tmp_path, "d", {}))
    view = find(manifests, "ClusterRole", "scp-scp-operator-view")
    edit = find(manifests, "ClusterRole", "scp-scp-operator-edit")
    for role in (view, edit):
        assert all(v == "true" for k, v in role["metadata"]["labels"].items() if AGGREGATE in k)
    assert _aggregated_into(view) == {"view", "edit", "admin"}
    assert _aggregated_into(edit) == {"edit", "admin"}
    group = constants.GROUP
    assert granted(view["rules"]) == {
        (group, resource, verb)
        for resource in (constants.PLURAL, "scpaccounts")
        for verb in ("get", "list", "watch")
    }
    # ScpAccounts are never writable through edit/admin, nor is any status.
    assert granted(edit["rules"]) == {
        (group, constants.PLURAL, verb)
        for verb in ("create", "update", "patch", "delete", "deletecollection")
    }
    # Bound to nobody by the chart: only through the built-in roles.
    bound = {
        m["roleRef"]["name"]
        for m in manifests
        if m["kind"] in ("ClusterRoleBinding", "RoleBinding")
    }
    assert bound.isdisjoint({"scp-scp-operator-view", "scp-scp-operator-edit"})


@pytest.mark.parametrize(
    "rbac", [{"aggregatedRoles": False}, {"create": False, "aggregatedRoles": True}]
)
def test_user_roles_can_be_left_out(helm: HelmFn, tmp_path: Path, rbac: dict[str, bool]) -> None:
    values: dict[str, Any] = {"rbac": rbac}
    if rbac.get("create") is False:
        values["serviceAccount"] = {"create": False, "name": "robot"}
    manifests = render(helm, values_file(tmp_path, "off", values))
    names = _kinds(manifests, "ClusterRole")
    assert "scp-scp-operator-view" not in names
    assert "scp-scp-operator-edit" not in names
    assert [m for m in manifests if AGGREGATE in json.dumps(m)] == []


def _container(manifests: list[dict[str, Any]]) -> dict[str, Any]:
    deployment = find(manifests, "Deployment")
    (container,) = deployment["spec"]["template"]["spec"]["containers"]
    result: dict[str, Any] = container
    return result


def test_startup_probe_gives_a_long_start_ten_minutes_on_the_liveness_endpoint(
    helm: HelmFn, tmp_path: Path
) -> None:
    container = _container(render(helm, values_file(tmp_path, "d", {})))
    startup = container["startupProbe"]
    assert startup["httpGet"] == container["livenessProbe"]["httpGet"]
    assert startup["failureThreshold"] * startup["periodSeconds"] >= 600
    assert "enabled" not in startup  # the switch is not a probe field

    values = {"startupProbe": {"periodSeconds": 5, "failureThreshold": 240}, "healthPort": 8081}
    container = _container(render(helm, values_file(tmp_path, "t", values)))
    assert (
        container["startupProbe"]["periodSeconds"],
        container["startupProbe"]["failureThreshold"],
    ) == (
        5,
        240,
    )
    assert container["startupProbe"]["httpGet"] == {"path": "/healthz", "port": "health"}
    off = _container(render(helm, values_file(tmp_path, "o", {"startupProbe": {"enabled": False}})))
    assert "startupProbe" not in off
    assert off["livenessProbe"]["httpGet"] == {"path": "/healthz", "port": "health"}


def test_extra_volumes_are_mounted_next_to_the_charts_own(helm: HelmFn, tmp_path: Path) -> None:
    default = find(render(helm, values_file(tmp_path, "d", {})), "Deployment")
    default_volumes = [v["name"] for v in default["spec"]["template"]["spec"]["volumes"]]
    assert default_volumes == ["scp-credentials", "tmp"]
    values: dict[str, list[dict[str, Any]]] = {
        "extraVolumes": [
            {"name": "corp-ca", "configMap": {"name": "corp-ca"}},
            {"name": "token", "projected": {"sources": [{"serviceAccountToken": {"path": "t"}}]}},
        ],
        "extraVolumeMounts": [
            {"name": "corp-ca", "mountPath": "/etc/corp-ca", "readOnly": True},
            {"name": "token", "mountPath": "/var/run/secrets/tokens"},
        ],
    }
    manifests = render(helm, values_file(tmp_path, "x", values))
    pod = find(manifests, "Deployment")["spec"]["template"]["spec"]
    volumes = {v["name"]: v for v in pod["volumes"]}
    assert list(volumes) == ["scp-credentials", "tmp", "corp-ca", "token"]
    assert volumes["corp-ca"] == values["extraVolumes"][0]
    mounts = pod["containers"][0]["volumeMounts"]
    assert [m["mountPath"] for m in mounts] == [
        "/var/run/secrets/scp",
        "/tmp",  # noqa: S108 (the pod's /tmp)
        "/etc/corp-ca",
        "/var/run/secrets/tokens",
    ]
    assert mounts[2] == values["extraVolumeMounts"][0]


def test_resync_interval_reaches_the_operator(helm: HelmFn, tmp_path: Path) -> None:
    config = find(render(helm, values_file(tmp_path, "d", {})), "ConfigMap")["data"]
    assert config["SCP_OPERATOR_RESYNC_INTERVAL"] == "600"
    off = render(helm, values_file(tmp_path, "off", {"operator": {"resyncInterval": 0}}))
    assert find(off, "ConfigMap")["data"]["SCP_OPERATOR_RESYNC_INTERVAL"] == "0"
    values = {"operator": {"resyncInterval": 120}}
    manifests = render(helm, values_file(tmp_path, "r", values))
    assert (
        find(manifests, "ConfigMap", "scp-scp-operator")["data"]["SCP_OPERATOR_RESYNC_INTERVAL"]
        == "120"
    )


# ---- sharding (docs/scaling.md) -----------------------------------------------------------------

SHARD_LABEL = "virtualserver.scp.dev/shard"


def _deployments(manifests: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return [m for m in manifests if m["kind"] == "Deployment"]


def _selects(selector: dict[str, str], labels: dict[str, str]) -> bool:
    return all(labels.get(k) == v for k, v in selector.items())


def test_one_shard_renders_the_single_deployment_as_before(helm: HelmFn, tmp_path: Path) -> None:
    manifests = render(helm, values_file(tmp_path, "one", {}))
    (deployment,) = _deployments(manifests)
    assert deployment["metadata"]["name"] == "scp-scp-operator"
    assert SHARD_LABEL not in deployment["spec"]["selector"]["matchLabels"]
    env = {e["name"] for e in _container(manifests)["env"]}
    assert "SCP_OPERATOR_SHARD_INDEX" not in env
    data = find(manifests, "ConfigMap")["data"]
    assert (data["SCP_OPERATOR_SHARDS"], data["SCP_OPERATOR_SHARD_RANGES"]) == ("1", "")


def test_shards_render_one_deployment_each_selecting_only_its_own_pods(
    helm: HelmFn, tmp_path: Path
) -> None:
    manifests = render(helm, values_file(tmp_path, "three", {"sharding": {"shards": 3}}))
    deployments = _deployments(manifests)
    assert [d["metadata"]["name"] for d in deployments] == [
        f"scp-scp-operator-shard-{i}" for i in range(3)
    ]
    pods = [d["spec"]["template"]["metadata"]["labels"] for d in deployments]
    for index, deployment in enumerate(deployments):
        spec = deployment["spec"]
        assert spec["replicas"] == 1
        assert spec["strategy"] == {"type": "Recreate"}
        selector = spec["selector"]["matchLabels"]
        assert selector[SHARD_LABEL] == str(index)
        # Each Deployment owns exactly its own shard's pods.
        assert [_selects(selector, labels) for labels in pods] == [i == index for i in range(3)]
        (container,) = spec["template"]["spec"]["containers"]
        env = {e["name"]: e.get("value") for e in container["env"]}
        assert env["SCP_OPERATOR_SHARD_INDEX"] == str(index)
    # The metrics Service (and so the ServiceMonitor) reaches every shard's pod.
    service = find(manifests, "Service")
    assert all(_selects(service["spec"]["selector"], labels) for labels in pods)
    data = find(manifests, "ConfigMap")["data"]
    assert data["SCP_OPERATOR_SHARDS"] == "3"
    # Each shard may get and renew its own Lease.
    _, names = _lease_rbac(manifests)
    assert names == [f"{CLUSTER_LEASE}-shard-{i}-of-3" for i in range(3)]


@pytest.mark.parametrize(("budget", "shards", "each"), [(10, 3, "4"), (9, 3, "3"), (0, 4, "0")])
def test_the_deletion_budget_is_divided_among_shards_rounded_up(
    helm: HelmFn, tmp_path: Path, budget: int, shards: int, each: str
) -> None:
    values = {"sharding": {"shards": shards}, "operator": {"maxDeletionsPerWindow": budget}}
    data = find(render(helm, values_file(tmp_path, "b", values)), "ConfigMap")["data"]
    assert data["SCP_OPERATOR_MAX_DELETIONS_PER_WINDOW"] == each


def test_an_uneven_plan_reaches_every_shard(helm: HelmFn, tmp_path: Path) -> None:
    ranges = ["0x0000000000000000-0x4000000000000000", "0x4000000000000000-0x10000000000000000"]
    values = {"sharding": {"shards": 2, "ranges": ranges}}
    data = find(render(helm, values_file(tmp_path, "r", values)), "ConfigMap")["data"]
    assert data["SCP_OPERATOR_SHARD_RANGES"] == ",".join(ranges)


@pytest.mark.parametrize(
    ("values", "message"),
    [
        ({"sharding": {"shards": 0}}, "at '/sharding/shards': minimum"),
        ({"sharding": {"shards": 65}}, "at '/sharding/shards': maximum"),
        ({"sharding": {"shards": "2"}}, "at '/sharding/shards': got string"),
        ({"sharding": {"ranges": ["0x0-0x8"]}}, "at '/sharding/ranges/0'"),
        ({"sharding": {"replicas": 2}}, "additional properties 'replicas' not allowed"),
        (
            {"sharding": {"shards": 3, "ranges": ["0x0000000000000000-0x10000000000000000"]}},
            "sharding.ranges: 1 range(s) given for sharding.shards=3",
        ),
    ],
    ids=lambda v: v if isinstance(v, str) else json.dumps(v, sort_keys=True)[:60],
)
def test_bad_sharding_values_are_refused(
    helm: HelmFn, tmp_path: Path, values: dict[str, Any], message: str
) -> None:
    path = values_file(tmp_path, "bad", values)
    result = helm("template", "scp", str(CHART), "-f", str(path), check=False)
    assert result.returncode != 0
    assert message in result.stderr, result.stderr
