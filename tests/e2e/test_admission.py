"""The chart's admission policies on a real kube-apiserver (templates/admission.yaml).

Two releases are installed with the real helm (``--no-hooks``; no kubelet runs their pods), so
Helm reads the API server's discovery and renders the MutatingAdmissionPolicy because the server
serves it:

* ``main``: every policy on, and the chart's ``accounts`` value rendering the ScpAccounts that
  the account-ref policy takes as parameters;
* ``strict``: ``addFinalizer`` off, ``requireFinalizer`` on, ``accountRef`` off.

The control plane is the session's, shared with every e2e test: the releases use
``watchNamespaces``, so their policies (cluster-scoped objects) act only in this module's own
namespaces, and the module's fixture uninstalls both releases at the end, then checks that no
policy, binding or ScpAccount of theirs is left. Policies take a second or two to act after
they are created: the fixture retries a create until each one acts. Most creates are server-side
dry runs, which pass through admission exactly like real ones but store nothing.
"""

from __future__ import annotations

import json
import subprocess
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import pytest

from scp_operator import constants
from scp_testenv import ControlPlane, wait_for
from tests.chart_support import CHART, values_file
from tests.conftest import REPO
from tests.e2e import charts

ACCOUNT_CRD = "scpaccounts.virtualserver.scp.dev"
TIER = "e2e.scp.dev/tier"
TEAM = "e2e.scp.dev/team"
POLICY_KINDS = (
    "mutatingadmissionpolicies",
    "mutatingadmissionpolicybindings",
    "validatingadmissionpolicies",
    "validatingadmissionpolicybindings",
)

#: The test namespaces by role, with their labels: A has none, B is gold/blue, C is silver.
NAMESPACE_LABELS: dict[str, dict[str, str]] = {
    "a": {},
    "b": {TIER: "gold", TEAM: "blue"},
    "c": {TIER: "silver"},
}

#: Each account (by suffix): how it admits namespaces, and which of A, B, C it admits.
ACCOUNTS: dict[str, tuple[dict[str, Any], str]] = {
    "list": ({"namespaces": ["<a>"]}, "a"),
    "labels": ({"namespaceSelector": {"matchLabels": {TIER: "gold"}}}, "b"),
    "in": (
        {
            "namespaceSelector": {
                "matchExpressions": [
                    {"key": TIER, "operator": "In", "values": ["silver", "platinum"]}
                ]
            }
        },
        "c",
    ),
    "notin": (
        {
            "namespaceSelector": {
                "matchExpressions": [{"key": TIER, "operator": "NotIn", "values": ["gold"]}]
            }
        },
        "ac",  # a namespace without the label is not in ["gold"]
    ),
    "exists": (
        {"namespaceSelector": {"matchExpressions": [{"key": TEAM, "operator": "Exists"}]}},
        "b",
    ),
    "dne": (
        {"namespaceSelector": {"matchExpressions": [{"key": TEAM, "operator": "DoesNotExist"}]}},
        "ac",
    ),
    "all": ({"namespaceSelector": {}}, "abc"),
    # namespaces OR selector
    "either": (
        {"namespaces": ["<a>"], "namespaceSelector": {"matchLabels": {TIER: "silver"}}},
        "ac",
    ),
    # matchLabels AND matchExpressions: B has the label but fails the expression
    "both": (
        {
            "namespaceSelector": {
                "matchLabels": {TIER: "gold"},
                "matchExpressions": [{"key": TEAM, "operator": "NotIn", "values": ["blue"]}],
            }
        },
        "",
    ),
}


@dataclass
class Admission:
    """The two releases, the module's namespaces and its ScpAccounts."""

    cp: ControlPlane
    prefix: str
    release_namespace: str
    namespaces: dict[str, str]  # role (a, b, c, strict) -> name
    main: str  # release names; full names are <release>-scp-operator
    strict: str

    def account(self, suffix: str) -> str:
        return f"{self.prefix}-{suffix}"

    def policy(self, release: str, policy: str) -> str:
        return f"{release}-scp-operator-{policy}"


def _virtual_server(
    namespace: str, *, finalizers: list[str] | None = None, account: str | None = None
) -> dict[str, Any]:
    metadata: dict[str, Any] = {"name": f"vs-{uuid.uuid4().hex[:8]}", "namespace": namespace}
    if finalizers is not None:
        metadata["finalizers"] = finalizers
    spec: dict[str, Any] = {"serverId": str(uuid.uuid4())}
    if account is not None:
        spec["accountRef"] = account
    return {
        "apiVersion": constants.API_VERSION,
        "kind": constants.KIND,
        "metadata": metadata,
        "spec": spec,
    }


def _create(
    cp: ControlPlane, manifest: dict[str, Any], *, dry_run: bool = True
) -> subprocess.CompletedProcess[str]:
    """``kubectl create`` (a server-side dry run unless told otherwise); never raises."""
    flags = ["--dry-run=server"] if dry_run else []
    return cp.kubectl(
        "create", *flags, "-o", "json", "-f", "-", input=json.dumps(manifest), check=False
    )


def _created(cp: ControlPlane, manifest: dict[str, Any]) -> dict[str, Any]:
    """The object as the API server would store it (after admission); fails if refused."""
    result = _create(cp, manifest)
    assert result.returncode == 0, result.stderr
    stored: dict[str, Any] = json.loads(result.stdout)
    return stored


def _refused(cp: ControlPlane, manifest: dict[str, Any], *needles: str) -> str | None:
    """The refusal's message if the create is refused with every one of ``needles``."""
    result = _create(cp, manifest)
    if result.returncode == 0:
        return None
    assert all(n in result.stderr for n in needles), result.stderr
    return result.stderr


def _not_admitted(env: Admission, suffix: str, role: str) -> tuple[str, ...]:
    """What the refusal of account ``suffix`` in namespace ``role`` must say."""
    return (
        f"ValidatingAdmissionPolicy '{env.policy(env.main, 'account-ref')}'",
        f"ScpAccount {env.account(suffix)} does not admit namespace {env.namespaces[role]}",
    )


def _leftovers(cp: ControlPlane, release: str) -> list[str]:
    """Cluster-scoped objects of ``release`` still in the API server."""
    selector = f"app.kubernetes.io/instance={release}"
    out = cp.kubectl(
        "get", ",".join((*POLICY_KINDS, "scpaccounts")), "-l", selector, "-o", "name"
    ).stdout
    return out.split()


@pytest.fixture(scope="module")
def admission(
    control_plane: ControlPlane, crd: None, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Admission]:
    cp = control_plane
    cp.kubectl("apply", "-f", str(REPO / "crds" / f"{ACCOUNT_CRD}.yaml"))
    cp.kubectl("wait", "--for=condition=Established", f"crd/{ACCOUNT_CRD}", "--timeout=60s")
    prefix = f"adm-{uuid.uuid4().hex[:6]}"
    namespaces = {role: f"{prefix}-{role}" for role in (*NAMESPACE_LABELS, "strict")}
    env = Admission(
        cp, prefix, f"{prefix}-release", namespaces, main=f"{prefix}-main", strict=f"{prefix}-s"
    )
    installed: list[str] = []
    try:
        for role, name in {**namespaces, "release": env.release_namespace}.items():
            metadata = {"name": name, "labels": NAMESPACE_LABELS.get(role, {})}
            namespace = {"apiVersion": "v1", "kind": "Namespace", "metadata": metadata}
            cp.kubectl("create", "-f", "-", input=json.dumps(namespace))

        accounts = []
        for suffix, (admits, _) in ACCOUNTS.items():
            spec = json.loads(json.dumps(admits).replace("<a>", namespaces["a"]))
            accounts.append(
                {"name": env.account(suffix), "credentialsSecretRef": {"name": "keys"}, **spec}
            )
        directory = tmp_path_factory.mktemp("admission")
        main_values = {
            "watchNamespaces": [namespaces[r] for r in NAMESPACE_LABELS],
            "accounts": accounts,
            "accountSecrets": [{"name": "external-keys"}],
        }
        strict_values = {
            "watchNamespaces": [namespaces["strict"]],
            "admission": {"addFinalizer": False, "requireFinalizer": True, "accountRef": False},
        }
        for release, values in ((env.main, main_values), (env.strict, strict_values)):
            path = values_file(directory, release, values)
            installed.append(release)
            cp.helm(
                "install", release, str(CHART), "-n", env.release_namespace,
                "--no-hooks", "-f", str(path),
            )  # fmt: skip
        _wait_until_the_policies_act(env)
        yield env
    finally:
        for release in installed:
            cp.helm("uninstall", release, "-n", env.release_namespace, "--no-hooks", check=False)
        for release in installed:
            left = _leftovers(cp, release)
            if left:  # helm failed: remove them by hand, then fail
                cp.kubectl("delete", *left, "--ignore-not-found", check=False)
            assert left == [], f"helm uninstall left {left}"
        for name in (*namespaces.values(), env.release_namespace):
            cp.kubectl("delete", "namespace", name, "--wait=false", check=False)


def _wait_until_the_policies_act(env: Admission) -> None:
    """Each policy, and every ScpAccount as a parameter, takes a moment to be in force."""
    cp, ns = env.cp, env.namespaces

    def finalizer_added() -> bool:
        stored = _created(cp, _virtual_server(ns["a"]))
        return constants.FINALIZER in stored["metadata"].get("finalizers", [])

    wait_for(finalizer_added, what="the add-finalizer policy")
    wait_for(
        lambda: _refused(cp, _virtual_server(ns["strict"]), constants.FINALIZER),
        what="the strict release's require-finalizer policy",
    )
    for suffix, (_, admitted) in ACCOUNTS.items():
        refused_in = [role for role in NAMESPACE_LABELS if role not in admitted]
        if refused_in:  # the account is a parameter of the account-ref policy now
            role = refused_in[0]
            manifest = _virtual_server(ns[role], account=env.account(suffix))
            wait_for(
                lambda m=manifest, r=role, s=suffix: _refused(cp, m, *_not_admitted(env, s, r)),
                what=f"ScpAccount {env.account(suffix)} in the account-ref policy",
            )


# ---- the finalizer -------------------------------------------------------------------------


def test_a_virtualserver_created_without_the_finalizer_gets_it(admission: Admission) -> None:
    cp, namespace = admission.cp, admission.namespaces["a"]
    manifest = _virtual_server(namespace)
    result = _create(cp, manifest, dry_run=False)
    assert result.returncode == 0, result.stderr
    name = manifest["metadata"]["name"]
    stored = charts.get_json(cp, "virtualserver", name, "-n", namespace)
    assert stored["metadata"]["finalizers"] == [constants.FINALIZER]
    assert stored["spec"] == {**manifest["spec"], "deletionPolicy": "Delete"}  # CRD default
    # CREATE only: the operator's own patch removing the finalizer (an UPDATE) is not refused,
    # and the object can go.
    cp.kubectl(
        "patch", "virtualserver", name, "-n", namespace, "--type=json",
        "-p", '[{"op": "remove", "path": "/metadata/finalizers"}]',
    )  # fmt: skip
    cp.kubectl("delete", "virtualserver", name, "-n", namespace, "--timeout=30s")


@pytest.mark.parametrize(
    ("given", "expected"),
    [
        (["example.com/keep"], ["example.com/keep", constants.FINALIZER]),
        ([constants.FINALIZER], [constants.FINALIZER]),
        (["example.com/keep", constants.FINALIZER], ["example.com/keep", constants.FINALIZER]),
    ],
    ids=["other-finalizer", "already-there", "both"],
)
def test_the_finalizer_is_added_once_next_to_others(
    admission: Admission, given: list[str], expected: list[str]
) -> None:
    stored = _created(admission.cp, _virtual_server(admission.namespaces["b"], finalizers=given))
    assert stored["metadata"]["finalizers"] == expected


def test_without_the_mutating_policy_a_create_without_the_finalizer_is_refused(
    admission: Admission,
) -> None:
    cp, namespace = admission.cp, admission.namespaces["strict"]
    missing = cp.kubectl(
        "get", "mutatingadmissionpolicy", admission.policy(admission.strict, "add-finalizer"),
        check=False,
    )  # fmt: skip
    assert missing.returncode != 0
    assert "NotFound" in missing.stderr
    message = _refused(
        cp,
        _virtual_server(namespace),
        f"ValidatingAdmissionPolicy '{admission.policy(admission.strict, 'require-finalizer')}'",
        f"must be created with the finalizer {constants.FINALIZER}",
        "metadata.finalizers",
    )
    assert message is not None
    stored = _created(cp, _virtual_server(namespace, finalizers=[constants.FINALIZER]))
    assert stored["metadata"]["finalizers"] == [constants.FINALIZER]
    # accountRef is off in this release: an account that admits nothing passes.
    named = _virtual_server(namespace, finalizers=[constants.FINALIZER], account="anything")
    assert _created(cp, named)["spec"]["accountRef"] == "anything"


# ---- accountRef ------------------------------------------------------------------------------


@pytest.mark.parametrize("suffix", list(ACCOUNTS))
def test_an_account_ref_is_admitted_exactly_where_the_account_admits_the_namespace(
    admission: Admission, suffix: str
) -> None:
    cp, account = admission.cp, admission.account(suffix)
    admitted = ACCOUNTS[suffix][1]
    for role, namespace in admission.namespaces.items():
        if role == "strict":
            continue
        manifest = _virtual_server(namespace, account=account)
        if role in admitted:
            stored = _created(cp, manifest)
            assert stored["spec"]["accountRef"] == account
        else:
            message = _refused(cp, manifest, *_not_admitted(admission, suffix, role))
            assert message is not None, f"{account} was accepted in namespace {namespace}"
            assert "ask a cluster admin, or name another account" in message


def test_objects_without_an_account_ref_are_not_looked_at(admission: Admission) -> None:
    """B is admitted by some accounts only; an object naming none passes untouched (but for
    the finalizer), and so does one naming an account that does not exist (the operator holds
    that one with AccountNotFound)."""
    cp, namespace = admission.cp, admission.namespaces["b"]
    manifest = _virtual_server(namespace)
    stored = _created(cp, manifest)
    assert stored["spec"] == {**manifest["spec"], "deletionPolicy": "Delete"}  # CRD default
    assert stored["metadata"]["finalizers"] == [constants.FINALIZER]
    unknown = _virtual_server(namespace, account=admission.account("no-such-account"))
    assert _created(cp, unknown)["spec"]["accountRef"] == admission.account("no-such-account")


def test_the_policies_act_only_in_the_watched_namespaces(admission: Admission) -> None:
    cp, outside = admission.cp, admission.release_namespace
    stored = _created(cp, _virtual_server(outside))
    assert "finalizers" not in stored["metadata"]
    named = _virtual_server(outside, account=admission.account("list"))  # admits only A
    assert _created(cp, named)["spec"]["accountRef"] == admission.account("list")


# ---- the accounts value ----------------------------------------------------------------------


def test_the_accounts_value_creates_the_accounts_and_lets_the_operator_read_their_secrets(
    admission: Admission,
) -> None:
    cp, env = admission.cp, admission
    account = charts.get_json(cp, "scpaccount", env.account("list"))
    assert account["spec"]["credentialsSecretRef"] == {
        "namespace": env.release_namespace,
        "name": "keys",
        "accessKeyKey": "access-key",
        "secretKeyKey": "secret-key",
    }
    assert account["spec"]["namespaces"] == [env.namespaces["a"]]
    assert charts.get_json(cp, "scpaccount", env.account("all"))["spec"]["namespaceSelector"] == {}
    operator = f"system:serviceaccount:{env.release_namespace}:{env.main}-scp-operator"

    def can(*args: str) -> str:
        result = cp.kubectl(
            "auth", "can-i", *args, "-n", env.release_namespace, f"--as={operator}", check=False
        )
        return result.stdout.strip()

    assert can("get", "secrets/keys") == "yes"
    assert can("get", "secrets/external-keys") == "yes"  # accountSecrets
    assert can("get", "secrets/other") == "no"
    assert can("list", "secrets") == "no"
    assert can("watch", "secrets") == "no"
