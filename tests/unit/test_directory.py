"""Resolving ``spec.accountRef`` to a client, from facts read at each call (issue 11).

The Kubernetes reads are replaced by a small fake here (this is about one unit: the rules for
what each read's answer means); tests/e2e/test_accounts.py runs the same path against the real
kube-apiserver.
"""

from __future__ import annotations

from typing import Any

import pytest

from scp_operator import accounts
from scp_operator.directory import AccountDirectory, Refusal, Target
from scp_operator.kube import KubeReadError
from scp_operator.kube_accounts import SecretKeys, SecretProblem
from scp_operator.scp.client import ScpClient
from scp_operator.settings import OperatorSettings, ScpSettings, Settings

SECRET_VALUE = "s3cr3t-value-never-shown"


class FakeReader:
    def __init__(self) -> None:
        self.accounts: dict[str, Any] = {}
        self.labels: dict[str, dict[str, str]] = {}
        self.keys: Any = SecretKeys("AK1", SECRET_VALUE)
        self.label_reads = 0

    async def account(self, name: str) -> Any:
        found = self.accounts.get(name)
        if isinstance(found, Exception):
            raise found
        return found

    async def namespace_labels(self, name: str) -> dict[str, str] | None:
        self.label_reads += 1
        return self.labels.get(name)

    async def secret_keys(self, *_: str) -> SecretKeys:
        if isinstance(self.keys, Exception):
            raise self.keys
        return self.keys  # type: ignore[no-any-return]


def account(**spec: Any) -> dict[str, Any]:
    return {
        "metadata": {"name": "acct"},
        "spec": {
            "credentialsSecretRef": {"namespace": "keys", "name": "acct"},
            "endpoint": "https://scp.example",
            "accountId": "acc-1",
            **spec,
        },
    }


@pytest.fixture
async def directory() -> Any:
    settings = Settings(ScpSettings(access_key="a", secret_key="b"), OperatorSettings())
    default = ScpClient(
        credentials=None, base_url=lambda r: "https://default.example", api_version="1.3"
    )  # type: ignore[arg-type]
    reader = FakeReader()
    made = AccountDirectory(settings, default, reader)  # type: ignore[arg-type]
    yield made, reader
    await made.aclose()
    await default.aclose()


async def test_no_ref_is_the_operators_own_account_without_any_read(directory: Any) -> None:
    made, reader = directory
    target = await made.resolve(None, "team-a")
    assert target is made.default
    assert target.name == accounts.DEFAULT
    assert reader.label_reads == 0


async def test_an_admitted_namespace_gets_the_accounts_client_with_the_keys_read_now(
    directory: Any,
) -> None:
    made, reader = directory
    reader.accounts["acct"] = account(namespaces=["team-a"])
    target = await made.resolve("acct", "team-a")
    assert isinstance(target, Target)
    assert (target.name, target.account_id, target.client.account) == ("acct", "acc-1", "acct")
    assert target.client.base_url(None) == "https://scp.example"
    assert target.client.credentials.get().access_key == "AK1"
    assert reader.label_reads == 0  # listed by name: no label read

    reader.keys = SecretKeys("AK2", "rotated")
    again = await made.resolve("acct", "team-a")
    assert isinstance(again, Target)
    assert again.client is target.client  # same pool and limiter
    assert again.client.credentials.get().access_key == "AK2"  # the rotated key

    reader.accounts["acct"] = account(namespaces=["team-a"], endpoint="https://moved.example")
    moved = await made.resolve("acct", "team-a")
    assert isinstance(moved, Target)
    assert moved.client is not target.client
    assert moved.client.base_url(None) == "https://moved.example"


@pytest.mark.parametrize(
    ("setup", "reason"),
    [
        (lambda r: None, "AccountNotFound"),
        (lambda r: r.accounts.update(acct=KubeReadError("HTTP 500")), "AccountCheckFailed"),
        (
            lambda r: r.accounts.update(acct=account(apiVersion="9.9", namespaces=["x"])),
            "AccountInvalid",
        ),
        (lambda r: r.accounts.update(acct=account(namespaces=["team-b"])), "AccountNotAdmitted"),
        (
            lambda r: r.accounts.update(
                acct=account(namespaceSelector={"matchLabels": {"t": "a"}})
            ),
            "AccountNotAdmitted",  # the namespace does not exist / has no such label
        ),
        (
            lambda r: (
                r.accounts.update(acct=account(namespaces=["team-a"])),
                setattr(
                    r, "keys", SecretProblem("SecretNotFound", "Secret keys/acct does not exist")
                ),
            ),
            "AccountCredentialsUnavailable",
        ),
        (
            lambda r: (
                r.accounts.update(acct=account(namespaces=["team-a"])),
                setattr(r, "keys", SecretKeys("AK1", "has space")),
            ),
            "AccountCredentialsUnavailable",
        ),
    ],
)
async def test_every_refusal_has_a_reason_and_tells_the_tenant_no_secret_details(
    directory: Any, setup: Any, reason: str
) -> None:
    made, reader = directory
    setup(reader)
    refused = await made.resolve("acct", "team-a")
    assert isinstance(refused, Refusal)
    assert refused.reason == reason
    assert "Orphan" in refused.message or reason == "AccountCheckFailed"
    assert "keys/acct" not in refused.message  # the Secret lives where the tenant cannot look
    assert SECRET_VALUE not in refused.message


async def test_a_selector_admits_by_the_labels_read_now(directory: Any) -> None:
    made, reader = directory
    reader.accounts["acct"] = account(namespaceSelector={"matchLabels": {"team": "a"}})
    reader.labels["team-a"] = {"team": "a"}
    assert isinstance(await made.resolve("acct", "team-a"), Target)
    reader.labels["team-a"] = {"team": "b"}  # relabelled
    refused = await made.resolve("acct", "team-a")
    assert isinstance(refused, Refusal)
    assert refused.reason == "AccountNotAdmitted"
    assert reader.label_reads == 2


def test_secret_keys_never_show_in_their_repr() -> None:
    assert SECRET_VALUE not in repr(SecretKeys("AK", SECRET_VALUE))
