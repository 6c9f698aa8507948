"""The health probes report SCP's last answer and the keys' state, and never raise."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, cast

import httpx
import kopf
import pytest
from pydantic import SecretStr

import scp_operator.handlers  # noqa: F401  (registers the probes on Kopf's default registry)
from scp_operator.credentials import CredentialsProvider
from scp_operator.handlers import probes
from scp_operator.runtime import Runtime
from scp_operator.scp.client import ScpClient

SID = "2a9be312-5d4b-4bc8-b2ae-35100fa9241f"
SECRET = "TOPSECRET-abc"
NOW = 1_800_000_000.0


class Holder:
    """The one part of a Runtime the probes read: ``client``."""

    def __init__(self, client: Any) -> None:
        self.client = client


class KeysOnly:
    """A client as far as the credentials probe looks: its ``credentials``."""

    def __init__(self, credentials: Any) -> None:
        self.credentials = credentials


def runtime_with(client: Any) -> Runtime:
    return cast(Runtime, Holder(client))


def provider(tmp_path: Path, **kw: Any) -> CredentialsProvider:
    kw.setdefault("access_key", None)
    kw.setdefault("secret_key", None)
    kw.setdefault("directory", None)
    return CredentialsProvider(home=tmp_path, **kw)


def client(handler: Any, tmp_path: Path) -> ScpClient:
    creds = provider(tmp_path, access_key=SecretStr("AK"), secret_key=SecretStr(SECRET))
    return ScpClient(
        credentials=creds,
        base_url=lambda region: "https://scp.test",
        api_version="1.3",
        transport=httpx.MockTransport(handler),
        clock=lambda: NOW,
    )


def test_before_startup_both_probes_say_starting() -> None:
    assert probes.scp_state(None) == {"state": "starting"}
    assert probes.credentials_state(None) == {"state": "starting"}


async def test_the_scp_probe_reports_the_clients_last_answer(tmp_path: Path) -> None:
    scp = client(lambda request: httpx.Response(409), tmp_path)
    runtime = runtime_with(scp)
    assert probes.scp_state(runtime) == {"state": "no-request-yet"}
    await scp.delete_server(SID)
    assert probes.scp_state(runtime, now=NOW + 12) == {
        "state": "answered",
        "code": "409",
        "at": "2027-01-15T08:00:00+00:00",
        "ageSeconds": 12.0,
    }
    await scp.aclose()


async def test_no_answer_at_all_is_reported_as_error(tmp_path: Path) -> None:
    def refuse(request: httpx.Request) -> httpx.Response:
        raise httpx.ConnectError("connection refused", request=request)

    scp = client(refuse, tmp_path)
    await scp.get_server(SID)
    state = probes.scp_state(runtime_with(scp), now=NOW)
    assert state["state"] == "error"
    assert state["code"] == "error"
    await scp.aclose()


def test_loaded_credentials_name_their_source_never_the_key(tmp_path: Path) -> None:
    creds = provider(tmp_path, access_key=SecretStr("AK"), secret_key=SecretStr(SECRET))
    state = probes.credentials_state(runtime_with(KeysOnly(creds)))
    assert state == {"state": "loaded", "source": "environment"}
    assert SECRET not in json.dumps(state)


def test_no_configured_source_is_missing(tmp_path: Path) -> None:
    state = probes.credentials_state(runtime_with(KeysOnly(provider(tmp_path))))
    assert state["state"] == "missing"


def test_a_configured_directory_without_keys_is_unreadable(tmp_path: Path) -> None:
    empty = tmp_path / "secret"
    empty.mkdir()
    state = probes.credentials_state(runtime_with(KeysOnly(provider(tmp_path, directory=empty))))
    assert state["state"] == "unreadable"
    assert "SCP_CREDENTIALS_DIR" in state["message"]


def test_a_malformed_credentials_file_is_unreadable(tmp_path: Path) -> None:
    (tmp_path / ".scpconf").mkdir()
    (tmp_path / ".scpconf" / "credentials.json").write_text('{"access-key": "AK", "secret-key": ')
    state = probes.credentials_state(runtime_with(KeysOnly(provider(tmp_path))))
    assert state["state"] == "unreadable"


class Exploding:
    @property
    def credentials(self) -> Any:
        raise RuntimeError("a bug")

    @property
    def last_answer(self) -> Any:
        raise RuntimeError("a bug")


async def test_a_probe_never_raises_even_when_reading_its_state_fails() -> None:
    """A raising probe fails Kopf's liveness endpoint, and the kubelet restarts the pod."""
    memo = kopf.Memo()
    memo.runtime = runtime_with(Exploding())
    assert await probes.scp_probe(memo=memo) == {"state": "probe-failed", "error": "RuntimeError"}
    assert await probes.credentials_probe(memo=memo) == {
        "state": "probe-failed",
        "error": "RuntimeError",
    }


async def test_probes_before_the_runtime_exists_report_starting() -> None:
    memo = kopf.Memo()
    assert await probes.scp_probe(memo=memo) == {"state": "starting"}
    assert await probes.credentials_probe(memo=memo) == {"state": "starting"}


def test_both_probes_are_registered_with_kopf_under_their_keys() -> None:
    from kopf._core.intents.causes import Activity  # Kopf's own registry: what it will run

    registry = kopf.get_default_registry()
    ids = {h.id for h in registry._activities.get_handlers(activity=Activity.PROBE)}
    assert {"scp", "credentials"} <= ids


@pytest.mark.parametrize("status", [202, 409, 500])
async def test_an_answer_of_any_status_counts_as_answered(tmp_path: Path, status: int) -> None:
    """SCP answering at all is what the probe reports; 5xx is SCP's trouble, not a dead link."""
    scp = client(lambda request: httpx.Response(status), tmp_path)
    await scp.delete_server(SID)
    state = probes.scp_state(runtime_with(scp), now=NOW)
    assert (state["state"], state["code"]) == ("answered", str(status))
    await scp.aclose()
