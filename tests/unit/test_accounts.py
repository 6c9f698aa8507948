"""ScpAccount rules (issue 11): which namespaces an account admits, which objects share a
server, what a tenant may read about others, and how a bad account spec is reported."""

from __future__ import annotations

import dataclasses
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from scp_operator import accounts
from scp_operator.constants import FINALIZER
from scp_operator.decision import Action, Doubt, Situation, decide
from scp_operator.evidence import blocking_sharers
from scp_operator.model import DeletionPolicy

SID = "2a9be312-5d4b-4bc8-b2ae-35100fa9241f"
SECRET = {"namespace": "scp-system", "name": "team-a-keys"}


def spec(**fields: Any) -> accounts.AccountSpec:
    return accounts.parse({"credentialsSecretRef": SECRET, **fields})


def test_defaults_match_the_crd() -> None:
    parsed = spec(namespaces=["a"])
    assert parsed.credentials_secret_ref.access_key_key == "access-key"
    assert parsed.credentials_secret_ref.secret_key_key == "secret-key"
    assert (parsed.region, parsed.environment, parsed.api_version) == ("kr-west1", "e", None)
    assert accounts.service_url(parsed, None) == (
        "https://virtualserver.kr-west1.e.samsungsdscloud.com"
    )
    assert accounts.service_url(parsed, "kr-east1").startswith("https://virtualserver.kr-east1.")


def test_an_explicit_endpoint_wins_and_is_normalised() -> None:
    parsed = spec(endpoint="HTTPS://Scp.Example:443/", namespaces=["a"])
    assert accounts.service_url(parsed, "kr-east1") == "https://scp.example"


@pytest.mark.parametrize(
    ("fields", "named"),
    [
        ({"credentialsSecretRef": {"name": "x"}}, "spec.credentialsSecretRef.namespace"),
        ({"endpoint": "http://scp.example"}, "spec.endpoint"),
        ({"apiVersion": "9.9"}, "spec.apiVersion"),
        ({"region": "Korea"}, "spec.region"),
        ({"accountId": "has space"}, "spec.accountId"),
    ],
)
def test_a_bad_spec_names_the_field(fields: dict[str, Any], named: str) -> None:
    with pytest.raises(accounts.AccountInvalid, match=named):
        accounts.parse({"credentialsSecretRef": SECRET, "namespaces": ["a"], **fields})


def test_listed_namespaces_are_admitted_without_reading_labels() -> None:
    parsed = spec(namespaces=["team-a"])
    assert not accounts.needs_labels(parsed, "team-a")
    assert accounts.admits(parsed, "team-a", None)
    assert not accounts.admits(parsed, "team-b", {"team": "b"})


@pytest.mark.parametrize(
    ("selector", "labels", "admitted"),
    [
        ({}, {}, True),  # an empty selector admits every namespace
        ({"matchLabels": {"team": "a"}}, {"team": "a", "x": "y"}, True),
        ({"matchLabels": {"team": "a"}}, {"team": "b"}, False),
        ({"matchLabels": {"team": "a"}}, {}, False),
        (
            {"matchExpressions": [{"key": "team", "operator": "In", "values": ["a", "b"]}]},
            {"team": "b"},
            True,
        ),
        ({"matchExpressions": [{"key": "team", "operator": "In", "values": ["a"]}]}, {}, False),
        ({"matchExpressions": [{"key": "team", "operator": "NotIn", "values": ["a"]}]}, {}, True),
        (
            {"matchExpressions": [{"key": "team", "operator": "NotIn", "values": ["a"]}]},
            {"team": "a"},
            False,
        ),
        ({"matchExpressions": [{"key": "scp", "operator": "Exists"}]}, {"scp": ""}, True),
        ({"matchExpressions": [{"key": "scp", "operator": "Exists"}]}, {}, False),
        ({"matchExpressions": [{"key": "scp", "operator": "DoesNotExist"}]}, {}, True),
        ({"matchExpressions": [{"key": "scp", "operator": "DoesNotExist"}]}, {"scp": "1"}, False),
    ],
)
def test_namespace_selectors_follow_kubernetes_semantics(
    selector: dict[str, Any], labels: dict[str, str], admitted: bool
) -> None:
    parsed = spec(namespaceSelector=selector)
    assert accounts.needs_labels(parsed, "ns")
    assert accounts.admits(parsed, "ns", labels) is admitted
    assert not accounts.admits(parsed, "ns", None)  # a namespace that cannot be read: refused


def test_a_key_change_does_not_change_the_client_shape_but_an_endpoint_change_does() -> None:
    one = accounts.shape(spec(namespaces=["a"]), "1.3")
    assert one == accounts.shape(spec(namespaces=["b"]), "1.3")
    assert one != accounts.shape(spec(namespaces=["a"], endpoint="https://other.example"), "1.3")
    assert one != accounts.shape(spec(namespaces=["a"], accountId="acc-2"), "1.3")


def test_other_namespaces_are_counted_not_named() -> None:
    shown = accounts.shown_refs(["team-a/web", "team-b/db", "team-c/x"], "team-a")
    assert shown == ("team-a/web", "2 objects in other namespaces")
    assert accounts.shown_refs(["team-b/db"], "team-a") == ("1 object in another namespace",)


def sharer(uid: str, ref: str | None = None, seen_account: str | None = None) -> dict[str, Any]:
    item: dict[str, Any] = {
        "metadata": {"uid": uid, "namespace": "ns", "name": uid, "finalizers": [FINALIZER]},
        "spec": {"serverId": SID},
    }
    if ref:
        item["spec"]["accountRef"] = ref
    if seen_account:
        item["status"] = {"server": {"accountId": seen_account}}
    return item


def test_the_shared_server_guard_counts_only_objects_of_the_same_account() -> None:
    listed = [sharer("same", "acct-a"), sharer("other", "acct-b"), sharer("default")]
    assert blocking_sharers("me", SID, listed, account_ref="acct-a") == ("ns/same",)
    assert blocking_sharers("me", SID, listed, account_ref=None) == ("ns/default",)
    assert blocking_sharers("me", SID, listed, account_ref="acct-c") == ()


def test_two_refs_for_one_scp_account_still_share_the_server() -> None:
    """Two ScpAccounts (or one and the operator's own keys) for one SCP account: one server."""
    listed = [sharer("twin", "acct-b", seen_account="acc-1")]
    assert blocking_sharers("me", SID, listed, account_ref="acct-a", account_id="acc-1") == (
        "ns/twin",
    )
    assert blocking_sharers("me", SID, listed, account_ref="acct-a", account_id="acc-2") == ()
    assert blocking_sharers("me", SID, listed, account_ref="acct-a", account_id="") == ()


@given(st.sampled_from(["AccountNotAdmitted", "AccountNotFound", "AccountCredentialsUnavailable"]))
def test_an_account_refusal_holds_with_a_warning_and_never_calls(reason: str) -> None:
    s = Situation(server_id=SID, account_hold=Doubt(reason, f"{reason}: words"))
    d = decide(s)
    assert (d.action, d.reason, d.warning) == (Action.HOLD, reason, True)
    assert d.message == f"{reason}: words"
    assert d.delay is not None
    assert d.delay >= 1
    # Orphan (the way out) and the CRD cascade still release
    assert decide(dataclasses.replace(s, policy=DeletionPolicy.ORPHAN)).action is Action.RELEASE
