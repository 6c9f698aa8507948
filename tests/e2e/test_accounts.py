"""Several SCP accounts and isolated tenants (issue 11), end to end.

Real parts: the session's kube-apiserver + etcd, the operator as a real process, and one SCP
emulator per account over real HTTP, each accepting only its own keys (and bound to its own SCP
account id). Two tenant namespaces; the accounts' Secrets live in a third namespace the tenants
do not use. The chart's admission policies are tested in test_admission.py: here they are not
installed, so what is proven is the operator's own isolation (the layer that still holds when a
namespace is relabelled after creation or the policies are switched off).
"""

from __future__ import annotations

import base64
import json
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from scp_emulator.config import Credential, EmulatorConfig
from scp_emulator.testing import ThreadedEmulator
from scp_operator import constants
from scp_testenv import ControlPlane, wait_for
from scp_testenv.operator_process import OperatorProcess
from tests.e2e.operator_fixtures import FAST, Cluster

pytestmark = pytest.mark.e2e


@dataclass
class Account:
    """One SCP account: its emulator, keys and ScpAccount name."""

    name: str
    emu: ThreadedEmulator
    access_key: str
    secret_key: str
    account_id: str


@pytest.fixture
def secrets_ns(make_namespace: Callable[[str], str]) -> str:
    """Where the accounts' Secrets live: no tenant's namespace."""
    return make_namespace("keys")


@pytest.fixture
def team_b(make_namespace: Callable[[str], str]) -> str:
    """The second tenant's namespace."""
    return make_namespace("team-b")


def _emulator(tag: str) -> tuple[ThreadedEmulator, str, str, str]:
    access, secret, account_id = f"AK-{tag}-{uuid.uuid4().hex[:8]}", uuid.uuid4().hex, f"acc-{tag}"
    emu = ThreadedEmulator(
        EmulatorConfig(
            delete_delay=0.5,
            credentials=[Credential(access_key=access, secret_key=secret, account_id=account_id)],
            default_account_id=account_id,
        )
    )
    return emu, access, secret, account_id


@pytest.fixture
def two_accounts() -> Iterator[tuple[Account, Account]]:
    made = []
    for tag in ("a", "b"):
        emu, access, secret, account_id = _emulator(tag)
        emu.start()
        made.append(Account(f"e2e-{tag}-{uuid.uuid4().hex[:6]}", emu, access, secret, account_id))
    yield made[0], made[1]
    for account in made:
        account.emu.stop()


class Accounts:
    """kubectl shortcuts for ScpAccounts (cluster-scoped: removed at teardown) and Secrets."""

    def __init__(self, cp: ControlPlane, secrets_ns: str) -> None:
        self.cp = cp
        self.secrets_ns = secrets_ns
        self.created: list[str] = []

    def secret(self, name: str, **data: str) -> None:
        encoded = {k: base64.b64encode(v.encode()).decode() for k, v in data.items()}
        manifest = {
            "apiVersion": "v1",
            "kind": "Secret",
            "metadata": {"name": name, "namespace": self.secrets_ns},
            "data": encoded,
        }
        self.cp.kubectl("apply", "-f", "-", input=json.dumps(manifest))

    def create(self, account: Account, *, secret: str | None = None, **spec: Any) -> None:
        """An ScpAccount for ``account`` with its keys in a Secret of the same name."""
        if secret is None:
            secret = account.name
            self.secret(
                secret, **{"access-key": account.access_key, "secret-key": account.secret_key}
            )
        self.apply(
            account.name,
            {
                "credentialsSecretRef": {"namespace": self.secrets_ns, "name": secret},
                "endpoint": account.emu.url,
                "accountId": account.account_id,
                **spec,
            },
        )

    def apply(self, name: str, spec: dict[str, Any]) -> None:
        manifest = {
            "apiVersion": constants.API_VERSION,
            "kind": "ScpAccount",
            "metadata": {"name": name},
            "spec": spec,
        }
        self.cp.kubectl("apply", "-f", "-", input=json.dumps(manifest))
        if name not in self.created:
            self.created.append(name)

    def get(self, name: str) -> dict[str, Any] | None:
        out = self.cp.kubectl("get", "scpaccount", name, "-o", "json", check=False)
        return json.loads(out.stdout) if out.returncode == 0 else None

    def condition(self, name: str, type_: str) -> dict[str, Any]:
        for cond in ((self.get(name) or {}).get("status") or {}).get("conditions") or []:
            if cond["type"] == type_:
                return dict(cond)
        return {}

    def delete(self, name: str) -> None:
        self.cp.kubectl("delete", "scpaccount", name, "--wait=true")


@pytest.fixture
def accts(control_plane: ControlPlane, secrets_ns: str, crd: None) -> Iterator[Accounts]:
    made = Accounts(control_plane, secrets_ns)
    yield made
    for name in made.created:
        control_plane.kubectl("delete", "scpaccount", name, "--ignore-not-found", check=False)


Start = Callable[..., OperatorProcess]


@pytest.fixture
def start(
    control_plane: ControlPlane,
    namespace: str,
    team_b: str,
    emulator: ThreadedEmulator,
    tmp_path: Path,
    crd: None,
) -> Iterator[Start]:
    """An operator serving both tenant namespaces; its own (default) account is ``emulator``."""
    started: list[OperatorProcess] = []

    def run(**env: str) -> OperatorProcess:
        proc = OperatorProcess(
            kubeconfig=control_plane.kubeconfig,
            log_path=tmp_path / "operator.log",
            namespaces=[namespace, team_b],
            env={**emulator.scp_env(), **FAST, "SCP_OPERATOR_ACCOUNT_RECHECK_INTERVAL": "5", **env},
        )
        started.append(proc)
        proc.start()
        return proc

    yield run
    for proc in started:
        proc.stop()


def scp_calls(account: Account | ThreadedEmulator, sid: str) -> list[str]:
    emu = account.emu if isinstance(account, Account) else account
    return [r["method"] for r in emu.requests(path_contains=sid)]


def reasons(cluster: Cluster, name: str) -> list[str]:
    return [e["reason"] for e in cluster.events(name) if e["type"] == "Warning"]


# --- each tenant through its own account -------------------------------------------------------


def test_each_object_is_read_and_deleted_through_its_own_account_and_the_default_is_unchanged(
    control_plane: ControlPlane,
    cluster: Cluster,
    team_b: str,
    emulator: ThreadedEmulator,
    two_accounts: tuple[Account, Account],
    accts: Accounts,
    start: Start,
) -> None:
    a, b = two_accounts
    accts.create(a, namespaces=[cluster.ns])
    accts.create(b, namespaceSelector={"matchLabels": {"kubernetes.io/metadata.name": team_b}})
    other = Cluster(control_plane, team_b)
    sid_a = a.emu.seed(name="web-a", account_id=a.account_id)["id"]
    sid_b = b.emu.seed(name="web-b", account_id=b.account_id)["id"]
    sid_default = emulator.seed(name="web-default")["id"]
    proc = start()
    cluster.create_vs("a", sid_a, accountRef=a.name)
    other.create_vs("b", sid_b, accountRef=b.name)
    cluster.create_vs("plain", sid_default)
    wait_for(
        lambda: (
            cluster.reason("a", "Ready") == "ServerFound"
            and other.reason("b", "Ready") == "ServerFound"
            and cluster.reason("plain", "Ready") == "ServerFound"
        ),
        what="all three found, each in its own account",
    )
    status_a = (cluster.get("a") or {})["status"]["server"]
    assert status_a["endpoint"].startswith(a.emu.url)
    assert status_a["accountId"] == a.account_id
    wait_for(
        lambda: (
            accts.condition(a.name, "Ready").get("reason") == "CredentialsValid"
            and (accts.get(a.name) or {}).get("status", {}).get("objects") == 1
        ),
        what="account a Ready with one object",
    )
    assert accts.condition(b.name, "NamespacesAdmitted")["status"] == "True"

    cluster.delete("a", "plain")
    other.delete("b")
    wait_for(
        lambda: (
            cluster.get("a") is None and other.get("b") is None and cluster.get("plain") is None
        ),
        what="all three deleted",
    )
    assert scp_calls(a, sid_a).count("DELETE") == 1
    assert scp_calls(b, sid_b).count("DELETE") == 1
    assert scp_calls(emulator, sid_default).count("DELETE") == 1
    # nothing crossed accounts: no emulator saw another account's server id
    for emu, sids in (
        (b, (sid_a, sid_default)),
        (a, (sid_b, sid_default)),
        (emulator, (sid_a, sid_b)),
    ):
        for sid in sids:
            assert scp_calls(emu, sid) == []
    _assert_no_secret_leaks(control_plane, proc, [cluster.ns, team_b], accts, a, b)


def _assert_no_secret_leaks(
    cp: ControlPlane,
    proc: OperatorProcess,
    namespaces: list[str],
    accts: Accounts,
    *accounts: Account,
) -> None:
    texts = [proc.log()]
    for ns in [*namespaces, "default"]:
        texts.append(cp.kubectl("get", "events", "-n", ns, "-o", "json").stdout)
    texts.append(cp.kubectl("get", "scpaccounts", "-o", "json").stdout)
    for account in accounts:
        for text in texts:
            assert account.secret_key not in text


# --- isolation in the operator -----------------------------------------------------------------


def test_an_object_in_a_namespace_its_account_does_not_admit_holds_without_any_scp_call(
    control_plane: ControlPlane,
    cluster: Cluster,
    team_b: str,
    two_accounts: tuple[Account, Account],
    accts: Accounts,
    start: Start,
) -> None:
    a, _ = two_accounts
    accts.create(a, namespaces=[cluster.ns])  # admits the first tenant only
    other = Cluster(control_plane, team_b)
    sid = a.emu.seed(name="not-yours", account_id=a.account_id)["id"]
    start()
    other.create_vs("intruder", sid, accountRef=a.name)
    wait_for(
        lambda: other.reason("intruder", "Ready") == "AccountNotAdmitted",
        what="observe refused by the account",
    )
    other.delete("intruder")
    wait_for(
        lambda: other.reason("intruder") == "AccountNotAdmitted", what="deletion held by isolation"
    )
    cond = other.condition("intruder", "Deleting") or {}
    assert f"does not admit namespace {team_b}" in cond["message"]
    assert (
        accts.secrets_ns not in cond["message"]
    )  # the Secret's place is not the tenant's business
    assert "AccountNotAdmitted" in reasons(other, "intruder")
    assert scp_calls(a, sid) == [], "a server was read or deleted for a namespace not admitted"
    assert a.emu.server(sid)["state"] == "ACTIVE"  # type: ignore[index]

    # the way out stays open: Orphan lets the object go, still without a call
    control_plane.kubectl(
        "patch",
        "scpvs",
        "intruder",
        "-n",
        team_b,
        "--type=merge",
        "-p",
        '{"spec":{"deletionPolicy":"Orphan"}}',
    )
    wait_for(lambda: other.get("intruder") is None, what="orphaned")
    assert scp_calls(a, sid) == []


def test_relabelling_a_namespace_out_of_the_selector_stops_its_deletions(
    control_plane: ControlPlane,
    cluster: Cluster,
    two_accounts: tuple[Account, Account],
    accts: Accounts,
    start: Start,
) -> None:
    a, _ = two_accounts
    label = f"team-{uuid.uuid4().hex[:6]}"
    control_plane.kubectl("label", "namespace", cluster.ns, f"scp-team={label}")
    accts.create(
        a,
        namespaceSelector={
            "matchExpressions": [{"key": "scp-team", "operator": "In", "values": [label]}]
        },
    )
    sid = a.emu.seed(name="labelled", account_id=a.account_id)["id"]
    start()
    cluster.create_vs("web", sid, accountRef=a.name)
    wait_for(lambda: cluster.reason("web", "Ready") == "ServerFound", what="found via the selector")
    control_plane.kubectl("label", "namespace", cluster.ns, "scp-team-")
    cluster.delete("web")
    wait_for(lambda: cluster.reason("web") == "AccountNotAdmitted", what="held after relabelling")
    assert "DELETE" not in scp_calls(a, sid)
    control_plane.kubectl("label", "namespace", cluster.ns, f"scp-team={label}")
    wait_for(lambda: cluster.get("web") is None, what="deleted once admitted again")
    assert scp_calls(a, sid).count("DELETE") == 1


def test_the_shared_server_guard_is_per_account(
    control_plane: ControlPlane,
    cluster: Cluster,
    two_accounts: tuple[Account, Account],
    accts: Accounts,
    start: Start,
) -> None:
    """One id in two accounts is two servers: an object in account b naming the same id does
    not keep account a's server; an object in the same account does."""
    a, b = two_accounts
    accts.create(a, namespaces=[cluster.ns])
    accts.create(b, namespaces=[cluster.ns])
    sid = str(uuid.uuid4())
    a.emu.seed(id=sid, name="twin-a", account_id=a.account_id)
    b.emu.seed(id=sid, name="twin-b", account_id=b.account_id)
    start()
    cluster.create_vs("in-a", sid, accountRef=a.name)
    cluster.create_vs("in-b", sid, accountRef=b.name)
    cluster.create_vs("also-in-a", sid, accountRef=a.name)
    wait_for(
        lambda: all(
            cluster.reason(n, "Ready") == "ServerFound" for n in ("in-a", "in-b", "also-in-a")
        ),
        what="all found",
    )
    cluster.delete("in-a")
    wait_for(
        lambda: cluster.reason("in-a") == "ServerShared", what="held by the same-account sharer"
    )
    assert "also-in-a" in (cluster.condition("in-a", "Deleting") or {})["message"]
    assert "in-b" not in (cluster.condition("in-a", "Deleting") or {})["message"]
    cluster.delete("also-in-a")
    wait_for(
        lambda: cluster.get("in-a") is None and cluster.get("also-in-a") is None, what="a gone"
    )
    assert "DELETE" in scp_calls(a, sid)  # both a objects were terminating: either may send it
    assert (a.emu.server(sid) or {}).get("state", "DELETING") == "DELETING"
    assert "DELETE" not in scp_calls(b, sid), "account b's twin was deleted"
    assert b.emu.server(sid)["state"] == "ACTIVE"  # type: ignore[index]
    assert cluster.get("in-b") is not None


# --- credentials --------------------------------------------------------------------------------


def test_rotating_an_accounts_secret_takes_effect_without_a_restart(
    cluster: Cluster,
    two_accounts: tuple[Account, Account],
    accts: Accounts,
    start: Start,
) -> None:
    a, _ = two_accounts
    accts.secret(a.name, **{"access-key": a.access_key, "secret-key": "not-the-key"})
    accts.create(a, secret=a.name, namespaces=[cluster.ns])
    sid = a.emu.seed(name="rotated", account_id=a.account_id)["id"]
    proc = start()
    wait_for(
        lambda: accts.condition(a.name, "Ready").get("reason") == "Unauthorized",
        what="account not ready with the wrong key",
    )
    cluster.create_vs("web", sid, accountRef=a.name)
    cluster.delete("web")
    wait_for(lambda: cluster.reason("web") == "Unauthorized", what="deletion held: wrong key")
    assert "DELETE" in scp_calls(a, sid)  # tried, and SCP refused the signature
    assert a.emu.server(sid)["state"] == "ACTIVE"  # type: ignore[index]

    accts.secret(a.name, **{"access-key": a.access_key, "secret-key": a.secret_key})  # rotation
    wait_for(lambda: cluster.get("web") is None, what="deleted with the rotated key")
    wait_for(
        lambda: accts.condition(a.name, "Ready").get("reason") == "CredentialsValid",
        what="account Ready after rotation (periodic re-check)",
    )
    assert proc.running
    assert proc.log().count("scp-operator ready") == 1  # the same process all along


def test_deleting_an_account_in_use_releases_nothing_until_it_is_back(
    cluster: Cluster,
    two_accounts: tuple[Account, Account],
    accts: Accounts,
    start: Start,
) -> None:
    a, _ = two_accounts
    accts.create(a, namespaces=[cluster.ns])
    sid = a.emu.seed(name="kept", account_id=a.account_id)["id"]
    start()
    cluster.create_vs("web", sid, accountRef=a.name)
    wait_for(lambda: cluster.reason("web", "Ready") == "ServerFound", what="found")
    accts.delete(a.name)
    cluster.delete("web")
    wait_for(lambda: cluster.reason("web") == "AccountNotFound", what="held: account gone")
    assert cluster.has_finalizer("web")
    assert "AccountNotFound" in reasons(cluster, "web")
    assert "DELETE" not in scp_calls(a, sid)
    accts.create(a, namespaces=[cluster.ns])
    wait_for(lambda: cluster.get("web") is None, what="deleted once the account is back")
    assert scp_calls(a, sid).count("DELETE") == 1


# --- bad input on the account -------------------------------------------------------------------


def test_bad_accounts_get_a_clear_condition_and_delete_nothing(
    cluster: Cluster,
    two_accounts: tuple[Account, Account],
    accts: Accounts,
    start: Start,
) -> None:
    a, _ = two_accounts
    suffix = uuid.uuid4().hex[:6]
    accts.secret(f"half-{suffix}", **{"access-key": a.access_key})
    bad = {
        f"nosecret-{suffix}": {
            "credentialsSecretRef": {"namespace": accts.secrets_ns, "name": "missing"},
            "endpoint": a.emu.url,
            "namespaces": [cluster.ns],
        },
        f"halfsecret-{suffix}": {
            "credentialsSecretRef": {"namespace": accts.secrets_ns, "name": f"half-{suffix}"},
            "endpoint": a.emu.url,
            "namespaces": [cluster.ns],
        },
        f"noregion-{suffix}": {
            "credentialsSecretRef": {"namespace": accts.secrets_ns, "name": f"half-{suffix}"},
            "region": "zz-nowhere9",
            "namespaces": [cluster.ns],
        },
        f"nobody-{suffix}": {
            "credentialsSecretRef": {"namespace": accts.secrets_ns, "name": f"half-{suffix}"},
            "endpoint": a.emu.url,
            "namespaceSelector": {"matchLabels": {"no-such-label": suffix}},
        },
    }
    for name, spec in bad.items():
        accts.apply(name, spec)
    sid = a.emu.seed(name="untouched", account_id=a.account_id)["id"]
    start()
    expected = {
        f"nosecret-{suffix}": ("Ready", "SecretNotFound"),
        f"halfsecret-{suffix}": ("Ready", "SecretKeyMissing"),
        f"noregion-{suffix}": ("Ready", "InvalidRegion"),
        f"nobody-{suffix}": ("NamespacesAdmitted", "NoNamespaceAdmitted"),
    }
    for name, (type_, reason) in expected.items():
        wait_for(
            lambda name=name, type_=type_, reason=reason: (
                accts.condition(name, type_).get("reason") == reason
            ),
            what=f"{name}: {type_} {reason}",
        )
        assert accts.condition(name, type_)["status"] == "False"
    assert "missing" in accts.condition(f"nosecret-{suffix}", "Ready")["message"]
    assert "'secret-key'" in accts.condition(f"halfsecret-{suffix}", "Ready")["message"]

    cluster.create_vs("web", sid, accountRef=f"nosecret-{suffix}")
    cluster.delete("web")
    wait_for(lambda: cluster.reason("web") == "AccountCredentialsUnavailable", what="held: no keys")
    assert scp_calls(a, sid) == []


# --- command line -------------------------------------------------------------------------------


def test_check_account_proves_one_account_and_names_what_fails(
    control_plane: ControlPlane,
    cluster: Cluster,
    two_accounts: tuple[Account, Account],
    accts: Accounts,
) -> None:
    import os
    import subprocess

    from scp_testenv.operator_process import operator_executable

    a, b = two_accounts
    accts.create(a, namespaces=[cluster.ns])
    accts.secret(b.name, **{"access-key": b.access_key, "secret-key": "wrong"})
    accts.create(b, secret=b.name, namespaces=[cluster.ns])
    env = {k: v for k, v in os.environ.items() if not k.startswith("SCP_") and k != "KUBECONFIG"}
    env |= {"KUBECONFIG": str(control_plane.kubeconfig), "SCP_ENDPOINT": "http://127.0.0.1:9"}

    def check(name: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [operator_executable(), "check", "--account", name],
            capture_output=True,
            text=True,
            env=env,
            timeout=60,
            check=False,
        )

    good = check(a.name)
    assert good.returncode == 0, good.stdout + good.stderr
    assert f"ok    account: {a.name}, endpoint {a.emu.url}" in good.stdout
    assert "ok    signed read" in good.stdout
    assert "all checks passed" in good.stdout

    wrong = check(b.name)
    assert wrong.returncode == 1
    assert "FAIL  signed read" in wrong.stdout
    assert "wrong keys" in wrong.stdout

    missing = check(f"absent-{uuid.uuid4().hex[:6]}")
    assert missing.returncode == 1
    assert "does not exist" in missing.stdout
    for result in (good, wrong, missing):
        assert a.secret_key not in result.stdout + result.stderr
        assert "Traceback" not in result.stderr
