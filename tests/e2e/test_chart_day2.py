"""The chart's day-2 items on a real API server: the user roles reach people through Kubernetes'
built-in ``view``, ``edit`` and ``admin`` ClusterRoles (``kubectl auth can-i`` through
RoleBindings), and the Deployment the API server stores carries the extra volumes and the
startup probe.

The release is installed with the real helm into this module's own control plane
(``tests/e2e/chart_fixtures.py``: it installs cluster-wide objects and changes the built-in
roles, which the other e2e modules must not see).

This control plane runs no kube-controller-manager, so nothing aggregates ClusterRoles by itself:
:func:`aggregate` does what its ClusterRole aggregation controller does — for each built-in role,
the union of the rules of the ClusterRoles its own ``aggregationRule`` selects, selected by the
API server (``kubectl get -l``) — and the API server's RBAC authorizer then answers the
questions. A role with the wrong labels, or rules that grant too much or too little, fails here.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import pytest

from scp_testenv import ControlPlane
from tests.chart_support import CHART, RELEASE_NAMESPACE, values_file
from tests.e2e import charts
from tests.e2e.chart_fixtures import Audited

pytestmark = pytest.mark.e2e

RELEASE = "day2"
FULLNAME = "day2-scp-operator"
VIRTUALSERVERS = "virtualservers.virtualserver.scp.dev"
SCPACCOUNTS = "scpaccounts.virtualserver.scp.dev"
#: Aggregated in this order: view is itself aggregated into edit, and edit into admin.
BUILT_IN = ("view", "edit", "admin")

#: (user, group) -> how the group is bound: (built-in ClusterRole, RoleBinding namespace or
#: "" for a ClusterRoleBinding).
PEOPLE = {
    ("vera", "team-a-viewers"): ("view", "team-a"),
    ("eddie", "team-a-editors"): ("edit", "team-a"),
    ("ada", "team-a-admins"): ("admin", "team-a"),
    ("carl", "auditors"): ("view", ""),
}

VALUES: dict[str, Any] = {
    "credentials": {"accessKey": "AK-day2", "secretKey": "SK-day2"},
    "admission": {"enabled": False},
    "uninstallGuard": {"enabled": False},
    "extraVolumes": [{"name": "corp-ca", "configMap": {"name": "corp-ca", "optional": True}}],
    "extraVolumeMounts": [{"name": "corp-ca", "mountPath": "/etc/corp-ca", "readOnly": True}],
    "grafanaDashboard": {"enabled": True},
}


def aggregate(cp: ControlPlane) -> None:
    """What kube-controller-manager's ClusterRole aggregation controller does, once."""
    for name in BUILT_IN:
        role = charts.get_json(cp, "clusterrole", name)
        rules: list[dict[str, Any]] = []
        for selector in role["aggregationRule"]["clusterRoleSelectors"]:
            assert set(selector) == {"matchLabels"}, selector  # as Kubernetes bootstraps them
            labels = ",".join(f"{k}={v}" for k, v in selector["matchLabels"].items())
            sources = charts.get_json(cp, "clusterroles", "-l", labels)["items"]
            for source in sorted(sources, key=lambda r: r["metadata"]["name"]):
                if source["metadata"]["name"] == name:
                    continue
                rules += [r for r in source.get("rules", []) if r not in rules]
        role["rules"] = rules
        cp.kubectl("replace", "-f", "-", input=json.dumps(role))


def can_i(
    cp: ControlPlane, person: tuple[str, str], verb: str, resource: str, where: str, *flags: str
) -> bool:
    """``kubectl auth can-i`` as ``person`` (user, group); ``where`` a namespace or "" for
    cluster scope; ``flags`` e.g. ``--subresource=status``."""
    user, group = person
    scope = ["-n", where] if where else []
    result = cp.kubectl(
        "auth", "can-i", verb, resource, *scope, *flags,
        f"--as={user}", f"--as-group={group}", check=False,
    )  # fmt: skip
    answer = result.stdout.strip()
    assert answer in ("yes", "no"), result.stdout + result.stderr
    return answer == "yes"


@pytest.fixture(scope="module")
def release(audited: Audited, tmp_path_factory: pytest.TempPathFactory) -> Iterator[ControlPlane]:
    """The day-2 release installed, and the built-in roles bound to the people above."""
    cp = audited.cp
    path = values_file(tmp_path_factory.mktemp("day2"), "values", VALUES)
    cp.helm("install", RELEASE, str(CHART), "-n", RELEASE_NAMESPACE, "--no-hooks", "-f", str(path))
    for (_, group), (role, namespace) in PEOPLE.items():
        if namespace:
            cp.kubectl(
                "create", "rolebinding", f"{group}-{role}", "-n", namespace,
                f"--clusterrole={role}", f"--group={group}",
            )  # fmt: skip
        else:
            cp.kubectl(
                "create", "clusterrolebinding", f"{group}-{role}",
                f"--clusterrole={role}", f"--group={group}",
            )  # fmt: skip
    yield cp
    cp.helm("uninstall", RELEASE, "-n", RELEASE_NAMESPACE, "--no-hooks", check=False)


def _person(role: str, cluster_wide: bool = False) -> tuple[str, str]:
    (person,) = [p for p, (r, ns) in PEOPLE.items() if r == role and bool(ns) != cluster_wide]
    return person


def test_built_in_roles_grant_virtualservers_through_the_aggregated_roles(
    release: ControlPlane, tmp_path_factory: pytest.TempPathFactory
) -> None:
    cp = release
    viewer, editor, admin = _person("view"), _person("edit"), _person("admin")
    auditor = _person("view", cluster_wide=True)

    # Before aggregation the built-in roles know nothing of VirtualServers: what follows is
    # granted by the chart's roles, not by anything else.
    aggregate_labels = "app.kubernetes.io/instance=day2"
    names = {
        r["metadata"]["name"]
        for r in charts.get_json(cp, "clusterroles", "-l", aggregate_labels)["items"]
    }
    assert {f"{FULLNAME}-view", f"{FULLNAME}-edit"} <= names
    assert not can_i(cp, viewer, "list", VIRTUALSERVERS, "team-a")
    assert not can_i(cp, editor, "delete", VIRTUALSERVERS, "team-a")

    aggregate(cp)

    # view: read VirtualServers in its namespace, nothing else
    for verb in ("get", "list", "watch"):
        assert can_i(cp, viewer, verb, VIRTUALSERVERS, "team-a"), verb
    for verb in ("create", "update", "patch", "delete", "deletecollection"):
        assert not can_i(cp, viewer, verb, VIRTUALSERVERS, "team-a"), verb
    assert not can_i(cp, viewer, "list", VIRTUALSERVERS, "team-b")  # only where it is bound
    # ScpAccounts are cluster-scoped: a RoleBinding does not reach them, a ClusterRoleBinding
    # to view reads them; nobody writes them through the built-in roles.
    assert not can_i(cp, viewer, "list", SCPACCOUNTS, "")
    assert can_i(cp, auditor, "list", SCPACCOUNTS, "")
    assert can_i(cp, auditor, "get", SCPACCOUNTS, "")
    assert not can_i(cp, auditor, "create", SCPACCOUNTS, "")
    assert can_i(cp, auditor, "list", VIRTUALSERVERS, "team-b")

    # edit and admin: create and delete VirtualServers (that deletes cloud servers), read them
    # through view's rules; never the status, never ScpAccounts
    for person in (editor, admin):
        for verb in ("get", "list", "create", "patch", "update", "delete", "deletecollection"):
            assert can_i(cp, person, verb, VIRTUALSERVERS, "team-a"), (person, verb)
        status = "--subresource=status"
        assert not can_i(cp, person, "patch", VIRTUALSERVERS, "team-a", status), person
        assert not can_i(cp, person, "update", VIRTUALSERVERS, "team-a", status), person
        assert not can_i(cp, person, "delete", VIRTUALSERVERS, "team-b"), person
        for verb in ("create", "update", "patch", "delete"):
            assert not can_i(cp, person, verb, SCPACCOUNTS, ""), (person, verb)

    # rbac.aggregatedRoles=false removes the roles, and with them every grant above
    path = values_file(
        tmp_path_factory.mktemp("day2-off"), "off", {"rbac": {"aggregatedRoles": False}}
    )
    cp.helm(
        "upgrade", RELEASE, str(CHART), "-n", RELEASE_NAMESPACE, "--no-hooks",
        "--reuse-values", "-f", str(path),
    )  # fmt: skip
    names = {r["metadata"]["name"] for r in charts.get_json(cp, "clusterroles")["items"]}
    assert not names & {f"{FULLNAME}-view", f"{FULLNAME}-edit"}
    aggregate(cp)
    assert not can_i(cp, viewer, "list", VIRTUALSERVERS, "team-a")
    assert not can_i(cp, editor, "delete", VIRTUALSERVERS, "team-a")
    assert not can_i(cp, auditor, "list", SCPACCOUNTS, "")


def test_the_stored_deployment_has_the_extra_volumes_and_the_startup_probe(
    release: ControlPlane,
) -> None:
    cp = release
    deployment = charts.get_json(cp, "deployment", FULLNAME, "-n", RELEASE_NAMESPACE)
    pod = deployment["spec"]["template"]["spec"]
    volumes = {v["name"]: v for v in pod["volumes"]}
    assert volumes["corp-ca"]["configMap"]["name"] == "corp-ca"
    assert {"scp-credentials", "tmp"} <= set(volumes)
    (container,) = pod["containers"]
    mounts = {m["name"]: m for m in container["volumeMounts"]}
    assert mounts["corp-ca"]["mountPath"] == "/etc/corp-ca"
    assert mounts["corp-ca"]["readOnly"] is True
    startup = container["startupProbe"]
    assert startup["httpGet"]["path"] == container["livenessProbe"]["httpGet"]["path"] == "/healthz"
    assert startup["httpGet"]["port"] == container["livenessProbe"]["httpGet"]["port"] == "health"
    assert startup["failureThreshold"] * startup["periodSeconds"] >= 600
    config = charts.get_json(cp, "configmap", FULLNAME, "-n", RELEASE_NAMESPACE)["data"]
    assert config["SCP_OPERATOR_RESYNC_INTERVAL"] == "600"
    dashboard = charts.get_json(cp, "configmap", f"{FULLNAME}-dashboard", "-n", RELEASE_NAMESPACE)
    assert dashboard["metadata"]["labels"]["grafana_dashboard"] == "1"
    assert json.loads(dashboard["data"]["scp-operator.json"])["uid"] == "scp-operator"


def test_the_upgrade_in_docs_upgrade_md_keeps_the_users_values_and_the_crds(
    release: ControlPlane,
) -> None:
    """docs/upgrade.md's two commands, as written: the CRDs applied server-side over the ones
    Helm installed, then ``helm upgrade --reset-then-reuse-values``."""
    cp = release
    before = charts.get_json(cp, "crd", VIRTUALSERVERS)["metadata"]["generation"]
    crds = CHART / "crds"
    cp.kubectl("apply", "--server-side", "-f", str(crds))  # no conflict with Helm's create
    after = charts.get_json(cp, "crd", VIRTUALSERVERS)
    assert after["metadata"]["generation"] == before  # the same CRD: nothing changed
    assert after["metadata"]["annotations"]["helm.sh/resource-policy"] == "keep"
    cp.helm(
        "upgrade", RELEASE, str(CHART), "-n", RELEASE_NAMESPACE, "--no-hooks",
        "--reset-then-reuse-values",
    )  # fmt: skip
    kept = json.loads(
        cp.helm("get", "values", RELEASE, "-n", RELEASE_NAMESPACE, "-o", "json").stdout
    )
    assert kept["extraVolumes"] == VALUES["extraVolumes"]  # what the user set survives
    assert kept["rbac"] == {"aggregatedRoles": False}
    deployment = charts.get_json(cp, "deployment", FULLNAME, "-n", RELEASE_NAMESPACE)
    assert "corp-ca" in {v["name"] for v in deployment["spec"]["template"]["spec"]["volumes"]}
