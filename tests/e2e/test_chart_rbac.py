"""Least privilege of the installed chart, both ways, on a real API server with an audit log.

Two releases (``cluster_release``: all namespaces; ``namespaced_release``: team-a and team-b,
with admission policies) are installed into this module's own control plane
(``tests/e2e/chart_fixtures.py``). The operator runs under each release's ServiceAccount and
deletes a server: nothing it did was denied, and every permission the chart grants was used
(the audit log); ``kubectl auth can-i`` then shows what the ServiceAccount cannot do.
"""

from __future__ import annotations

import json
import subprocess
import uuid
from pathlib import Path
from typing import Any

import pytest

from scp_emulator.testing import ThreadedEmulator
from scp_operator import constants
from scp_testenv import ControlPlane, wait_for
from tests.chart_support import CLUSTER_LEASE, LEASE_NAMESPACE, TEAMS_LEASE
from tests.e2e import charts
from tests.e2e.chart_fixtures import Audited, Release

pytestmark = pytest.mark.e2e


@pytest.mark.parametrize("release_fixture", ["cluster_release", "namespaced_release"])
def test_operator_deletes_a_server_with_exactly_the_charts_permissions(
    audited: Audited,
    chart_emulator: ThreadedEmulator,
    tmp_path: Path,
    request: pytest.FixtureRequest,
    release_fixture: str,
) -> None:
    release: Release = request.getfixturevalue(release_fixture)
    cp = audited.cp
    namespace = release.watched[0] if release.watched else "team-c"
    name = f"vs-{uuid.uuid4().hex[:6]}"
    server = chart_emulator.seed(name=name)
    kubeconfig = release.kubeconfig(cp)
    with charts.run_operator(cp, release.namespace, release.fullname, kubeconfig, tmp_path) as op:
        wait_for(op.healthy, what="the operator's /healthz (the chart's probes)")
        cp.kubectl("apply", "-f", "-", input=charts.virtual_server(name, namespace, server["id"]))
        observed = wait_for(lambda: charts.ready(cp, name, namespace), what="the Ready condition")
        assert observed["metadata"]["finalizers"] == [constants.FINALIZER]
        (ready,) = [c for c in observed["status"]["conditions"] if c["type"] == "Ready"]
        assert (ready["status"], ready["reason"]) == ("True", "ServerFound")
        cp.kubectl("delete", "virtualserver", name, "-n", namespace, "--wait=false")
        wait_for(lambda: charts.gone(cp, name, namespace), what="the object to go")
        deletes = chart_emulator.requests(method="DELETE", path_contains=server["id"])
        assert [d["status"] for d in deletes] == [202]
        events = cp.kubectl("get", "events", "-n", namespace, "-o", "json").stdout
        assert "DeleteAccepted" in events
        scraped = op.metrics()
        assert scraped is not None, "the chart's metrics port serves nothing"
        assert "scp_operator" in scraped

        # the same through the release's ScpAccount: its Secret, the namespace's labels, status
        account = "audit-cluster" if release.fullname == "scp-scp-operator" else "audit-teams"
        wait_for(lambda: charts.account_ready(cp, account), what="the account's Ready condition")
        via = f"{name}-acct"
        server = chart_emulator.seed(name=via)
        cp.kubectl(
            "apply", "-f", "-", input=charts.virtual_server(via, namespace, server["id"], account)
        )
        wait_for(lambda: charts.ready(cp, via, namespace), what="Ready via the account")
        cp.kubectl("delete", "virtualserver", via, "-n", namespace, "--wait=false")
        wait_for(lambda: charts.gone(cp, via, namespace), what="the account's object to go")
        deletes = chart_emulator.requests(method="DELETE", path_contains=server["id"])
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
    chart_emulator: ThreadedEmulator,
    namespaced_release: Release,
    tmp_path: Path,
) -> None:
    cp = audited.cp
    server = chart_emulator.seed(name="outside")
    kubeconfig = namespaced_release.kubeconfig(cp)
    with charts.run_operator(
        cp, namespaced_release.namespace, namespaced_release.fullname, kubeconfig, tmp_path
    ) as op:
        wait_for(op.healthy, what="the operator's /healthz")
        cp.kubectl(
            "apply", "-f", "-", input=charts.virtual_server("outside", "team-c", server["id"])
        )
        inside = chart_emulator.seed(name="inside")
        cp.kubectl(
            "apply", "-f", "-", input=charts.virtual_server("inside", "team-b", inside["id"])
        )
        wait_for(
            lambda: charts.ready(cp, "inside", "team-b"), what="team-b's object to be observed"
        )
        outside = charts.get_json(cp, "virtualserver", "outside", "-n", "team-c")
        assert "finalizers" not in outside["metadata"]
        assert "status" not in outside
        cp.kubectl("delete", "virtualserver", "outside", "-n", "team-c")
        cp.kubectl("delete", "virtualserver", "inside", "-n", "team-b", "--wait=false")
        wait_for(lambda: charts.gone(cp, "inside", "team-b"), what="team-b's object to go")
    assert chart_emulator.server(server["id"]) is not None, "a server outside the watch was touched"


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
    plain = json.loads(charts.virtual_server("plain", "team-a", str(uuid.uuid4())))

    def mutated() -> bool:  # the policies act once the finalizer policy does
        result = _dry_run_create(cp, plain)
        assert result.returncode == 0, result.stderr
        return constants.FINALIZER in json.loads(result.stdout)["metadata"].get("finalizers", [])

    wait_for(mutated, what="the release's admission policies to act")
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
    # the Lease: only its own to write, only get/update/create (and list, below), only in the
    # lease namespace
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
    # the Leases of other shard plans, waited for during a plan change (docs/scaling.md)
    ("list", LEASES, LEASE_NAMESPACE, ()),
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
    ("list", LEASES, LEASE_NAMESPACE, ()),  # other shard plans' Leases (docs/scaling.md)
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
