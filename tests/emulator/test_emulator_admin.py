"""The admin API, driven the way out-of-process tests drive it: ThreadedEmulator over HTTP."""

from __future__ import annotations

import time
import uuid
from collections.abc import Iterator
from typing import Any

import httpx
import pytest

from scp_emulator import EmulatorConfig, ServerSpec
from scp_emulator.testing import AdminError, ThreadedEmulator

from .emulator_helpers import sign_headers


@pytest.fixture
def emu() -> Iterator[ThreadedEmulator]:
    with ThreadedEmulator(EmulatorConfig(delete_delay=0.2)) as emulator:
        yield emulator


def signed(emu: ThreadedEmulator, method: str, path: str, **signing: Any) -> httpx.Response:
    url = f"{emu.url}{path}"
    with httpx.Client(trust_env=False) as http:
        return http.request(method, url, headers=sign_headers(method, url, **signing))


def test_seed_fills_defaults_and_keeps_flags(emu: ThreadedEmulator) -> None:
    server = emu.seed(name="web-1", file_storage=True)
    uuid.UUID(server["id"])
    assert server["state"] == "ACTIVE"
    assert server["locked"] is False
    assert server["file_storage"] is True
    assert server["lb_server_group"] is False
    assert server["backup"] is False
    assert emu.servers() == [server]


def test_seed_with_an_empty_body_creates_a_default_server(emu: ThreadedEmulator) -> None:
    with httpx.Client(trust_env=False) as http:
        response = http.post(f"{emu.url}/_emulator/servers")
    assert response.status_code == 201
    assert response.json()["state"] == "ACTIVE"


def test_seed_with_a_given_id_and_duplicate_refused(emu: ThreadedEmulator) -> None:
    server_id = "2a9be312-5d4b-4bc8-b2ae-35100fa9241f"
    assert emu.seed(id=server_id)["id"] == server_id
    with pytest.raises(AdminError) as error:
        emu.seed(id=server_id)
    assert error.value.status == 409


@pytest.mark.parametrize("fields", [{"id": "not-a-uuid"}, {"colour": "red"}, {"locked": "maybe"}])
def test_seed_rejects_invalid_fields(emu: ThreadedEmulator, fields: dict[str, Any]) -> None:
    with pytest.raises(AdminError) as error:
        emu.seed(**fields)
    assert error.value.status == 400


def test_patch_changes_flags_and_the_public_view_follows(emu: ThreadedEmulator) -> None:
    server = emu.seed()
    patched = emu.patch(server["id"], locked=True, state="SHUTOFF")
    assert patched["locked"] is True
    assert patched["state"] == "SHUTOFF"
    body = signed(emu, "GET", f"/v1/servers/{server['id']}").json()
    assert (body["locked"], body["state"]) == (True, "SHUTOFF")
    with pytest.raises(AdminError) as error:
        emu.patch(str(uuid.uuid4()), locked=True)
    assert error.value.status == 404


def test_patching_a_deleting_server_back_cancels_its_disappearance(
    emu: ThreadedEmulator,
) -> None:
    server = emu.seed()
    assert signed(emu, "DELETE", f"/v1/servers/{server['id']}").status_code == 202
    emu.patch(server["id"], state="ACTIVE")
    time.sleep(0.3)
    assert emu.server(server["id"]) is not None


def test_remove_drops_a_server_silently(emu: ThreadedEmulator) -> None:
    server = emu.seed()
    emu.remove(server["id"])
    assert emu.server(server["id"]) is None
    assert emu.requests() == [], "admin calls are not logged as API requests"


def test_credentials_are_listed_without_secrets(emu: ThreadedEmulator) -> None:
    emu.set_credentials("OTHERKEY", "OTHERSECRET", allowed_actions=["get"])
    with httpx.Client(trust_env=False) as http:
        listing = http.get(f"{emu.url}/_emulator/credentials")
    assert "SECRET" not in listing.text
    assert {"access_key": "OTHERKEY", "account_id": None, "allowed_actions": ["GET"]} in (
        listing.json()
    )


def test_unknown_allowed_action_is_refused(emu: ThreadedEmulator) -> None:
    with pytest.raises(AdminError):
        emu.set_credentials("K", "S", allowed_actions=["FLY"])


def test_replaced_and_removed_credentials_take_effect(emu: ThreadedEmulator) -> None:
    keys = {"access_key": "ROTATED", "secret_key": "OLD"}
    emu.set_credentials("ROTATED", "OLD")
    assert signed(emu, "GET", "/v1/servers", **keys).status_code == 200
    emu.set_credentials("ROTATED", "NEW")
    assert signed(emu, "GET", "/v1/servers", **keys).status_code == 401
    emu.remove_credentials("ROTATED")
    response = signed(emu, "GET", "/v1/servers", access_key="ROTATED", secret_key="NEW")
    assert response.status_code == 401


def test_faults_are_listed_counted_and_removed(emu: ThreadedEmulator) -> None:
    first = emu.fault(kind="status", status=503, times=3, headers={"Retry-After": "1"})
    second = emu.fault(kind="html", path_regex="^/v1/servers$")
    assert signed(emu, "GET", "/v1/servers").status_code == 503
    listed = {fault["id"]: fault for fault in emu.faults()}
    assert listed[first]["remaining"] == 2
    assert listed[first]["hits"] == 1
    emu.remove_fault(first)
    assert signed(emu, "GET", "/v1/servers").status_code == 502
    assert [fault["id"] for fault in emu.faults()] == [second]
    emu.clear_faults()
    assert signed(emu, "GET", "/v1/servers").status_code == 200


def test_invalid_fault_spec_is_refused(emu: ThreadedEmulator) -> None:
    with pytest.raises(AdminError):
        emu.fault(kind="meteor")
    with pytest.raises(AdminError):
        emu.fault(kind="status", path_regex="([")


def test_request_log_records_verdicts_and_no_secrets(emu: ThreadedEmulator) -> None:
    server = emu.seed(locked=True)
    path = f"/v1/servers/{server['id']}"
    signed(emu, "DELETE", path)
    signed(emu, "DELETE", path, secret_key="WRONG")
    signed(emu, "GET", path, timestamp="1605290625682")
    signed(emu, "GET", path, api_version="virtualserver 9.9")
    signed(emu, "GET", "/v1/nothing")
    signed(emu, "GET", path, access_key="NOBODY")
    entries = emu.requests()
    assert [(e["verdict"], e["status"]) for e in entries] == [
        ("ok", 409),
        ("bad-signature", 401),
        ("stale-timestamp", 401),
        ("bad-version", 400),
        ("forbidden", 403),
        ("unknown-key", 401),
    ]
    first = entries[0]
    assert first["method"] == "DELETE"
    assert first["path"] == path
    assert first["url"] == f"{emu.url}{path}"
    assert first["server_id"] == server["id"]
    assert first["access_key"] == emu.access_key
    assert first["api_version"] == "virtualserver 1.3"
    assert first["signature_valid"] is True
    assert [e["seq"] for e in entries] == sorted(e["seq"] for e in entries)
    assert all(emu.secret_key not in str(entry) for entry in entries)
    assert all("Scp-Signature" not in entry and "signature" not in entry for entry in entries)


def test_request_log_filters_and_clears(emu: ThreadedEmulator) -> None:
    server = emu.seed()
    signed(emu, "GET", "/v1/servers")
    signed(emu, "DELETE", f"/v1/servers/{server['id']}")
    assert [e["method"] for e in emu.requests(method="DELETE")] == ["DELETE"]
    assert len(emu.requests(path_contains=server["id"])) == 1
    emu.clear_requests()
    assert emu.requests() == []


def test_request_log_is_readable_in_process(emu: ThreadedEmulator) -> None:
    signed(emu, "GET", "/")
    entries = emu.call(lambda state: list(state.requests))
    assert entries[-1].path == "/"
    assert entries[-1].verdict == "ok"


def test_config_is_read_and_patched(emu: ThreadedEmulator) -> None:
    config = emu.get_config()
    assert config["delete_delay"] == 0.2
    assert config["timestamp_window"] == 300
    assert config["reject_expired_versions"] is False
    assert [v["id"] for v in config["versions"]] == ["v1.3", "v1.2", "v1.1", "v1.0"]
    patched = emu.set_config(delete_delay=0, versions=[{"id": "v1.3", "status": "CURRENT"}])
    assert patched["delete_delay"] == 0
    server = emu.seed()
    assert signed(emu, "DELETE", f"/v1/servers/{server['id']}").status_code == 202
    assert emu.server(server["id"]) is None
    response = signed(emu, "GET", "/v1/servers", api_version="virtualserver 1.2")
    assert response.status_code == 400
    with pytest.raises(AdminError):
        emu.set_config(timestamp_window=-1)
    with pytest.raises(AdminError):
        emu.set_config(no_such_knob=1)
    assert emu.get_config()["timestamp_window"] == 300


def test_reset_clears_everything_but_credentials(emu: ThreadedEmulator) -> None:
    emu.set_credentials("KEPT", "KEPTSECRET")
    emu.seed()
    emu.fault(kind="html", path_regex="^/nothing$")
    emu.set_latency(5)
    signed(emu, "GET", "/v1/servers")
    emu.reset()
    assert emu.servers() == []
    assert emu.faults() == []
    assert emu.requests() == []
    assert emu.call(lambda state: state.latency.ms) == 0
    response = signed(emu, "GET", "/v1/servers", access_key="KEPT", secret_key="KEPTSECRET")
    assert response.status_code == 200


def test_latency_is_set_through_the_admin_api(emu: ThreadedEmulator) -> None:
    emu.set_latency(200)
    started = time.monotonic()
    signed(emu, "GET", "/v1/servers")
    assert time.monotonic() - started >= 0.2


def test_unknown_admin_path_is_404_and_not_logged(emu: ThreadedEmulator) -> None:
    with httpx.Client(trust_env=False) as http:
        response = http.get(f"{emu.url}/_emulator/nothing")
    assert response.status_code == 404
    assert emu.requests() == []


def test_config_seed_servers_exist_at_start() -> None:
    server_id = str(uuid.uuid4())
    config = EmulatorConfig(servers=[ServerSpec(id=server_id, name="seeded", locked=True)])
    with ThreadedEmulator(config) as emu:
        server = emu.server(server_id)
        assert server is not None
        assert (server["name"], server["locked"]) == ("seeded", True)
