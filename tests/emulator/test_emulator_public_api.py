"""The public API over real HTTP: deletion, its refusals, the gates in front of it, paging."""

from __future__ import annotations

import asyncio
import datetime as dt
import time
import uuid
from typing import Any

import pytest

from scp_emulator import ApiVersion, Credential, EmulatorConfig, EmulatorServer

from .emulator_helpers import ScpTestClient, SignHeaders, detail


async def test_unsigned_root_lists_the_api_versions(scp: ScpTestClient) -> None:
    response = await scp.http.get(f"{scp.base_url}/")
    assert response.status_code == 200
    versions = response.json()["versions"]
    assert versions[0] == {"id": "v1.3", "status": "CURRENT", "not_before": None}
    assert {"id": "v1.0", "status": "DEPRECATED", "not_before": "2025-12-31"} in versions
    assert [v["id"] for v in versions] == ["v1.3", "v1.2", "v1.1", "v1.0"]


async def test_signed_delete_is_accepted_then_deleting_then_gone(
    emulator: EmulatorServer, scp: ScpTestClient
) -> None:
    server = emulator.state.add_server(name="web-1")
    path = f"/v1/servers/{server.id}"

    response = await scp.delete(path)
    assert response.status_code == 202
    assert response.content == b""

    response = await scp.get(path)
    assert response.status_code == 200
    assert response.json()["state"] == "DELETING"

    await asyncio.sleep(0.4)
    response = await scp.get(path)
    assert response.status_code == 404
    assert detail(response) == f"Server {server.id} not found"


async def test_delete_of_a_server_already_deleting_is_accepted_again(
    emulator: EmulatorServer, scp: ScpTestClient
) -> None:
    server = emulator.state.add_server()
    assert (await scp.delete(f"/v1/servers/{server.id}")).status_code == 202
    assert (await scp.delete(f"/v1/servers/{server.id}")).status_code == 202


async def test_zero_delete_delay_removes_the_server_at_once(
    emulator: EmulatorServer, scp: ScpTestClient
) -> None:
    emulator.state.settings.delete_delay = 0
    server = emulator.state.add_server()
    assert (await scp.delete(f"/v1/servers/{server.id}")).status_code == 202
    assert (await scp.get(f"/v1/servers/{server.id}")).status_code == 404
    assert (await scp.delete(f"/v1/servers/{server.id}")).status_code == 404


async def test_delete_of_an_unknown_server_is_404(scp: ScpTestClient) -> None:
    server_id = str(uuid.uuid4())
    response = await scp.delete(f"/v1/servers/{server_id}")
    assert response.status_code == 404
    assert detail(response) == f"Server {server_id} not found"


async def test_get_returns_the_flat_server_object(
    emulator: EmulatorServer, scp: ScpTestClient
) -> None:
    server = emulator.state.add_server(name="db-1", file_storage=True)
    body = (await scp.get(f"/v1/servers/{server.id}")).json()
    for field in (
        "id",
        "name",
        "state",
        "locked",
        "account_id",
        "created_at",
        "modified_at",
        "created_by",
        "server_type",
        "volumes",
        "metadata",
        "disk_config",
        "vpc_id",
        "image_id",
        "addresses",
    ):
        assert field in body
    assert body["id"] == server.id
    assert body["name"] == "db-1"
    assert body["state"] == "ACTIVE"
    assert body["locked"] is False
    assert set(body["server_type"]) >= {"name", "vcpus", "ram"}
    assert set(body["volumes"][0]) >= {"id", "delete_on_termination"}
    assert "file_storage" not in body, "attachment flags are emulator-only"


@pytest.mark.parametrize(
    ("flags", "cause"),
    [
        ({"locked": True}, ["lock"]),
        ({"file_storage": True}, ["file storage"]),
        ({"lb_server_group": True}, ["LB server group"]),
        ({"backup": True}, ["backup"]),
        ({"file_storage": True, "backup": True}, ["file storage", "backup"]),
    ],
)
async def test_delete_is_refused_with_409_in_scps_words_and_the_admin_view_names_the_blocker(
    emulator: EmulatorServer, scp: ScpTestClient, flags: dict[str, Any], cause: list[str]
) -> None:
    server = emulator.state.add_server(**flags)
    response = await scp.delete(f"/v1/servers/{server.id}")
    assert response.status_code == 409
    # SCP names no cause: a client must read the server (locked) to tell a lock apart
    assert detail(response) == "Cannot terminate due to associated resources"
    assert server.admin_view()["blockers"] == cause
    assert (await scp.get(f"/v1/servers/{server.id}")).json()["locked"] is ("lock" in cause)
    assert emulator.state.get_server(server.id) is not None
    assert (await scp.get(f"/v1/servers/{server.id}")).json()["state"] == "ACTIVE"


async def test_lb_server_group_does_not_block_auto_scaling_group_members(
    emulator: EmulatorServer, scp: ScpTestClient
) -> None:
    server = emulator.state.add_server(lb_server_group=True, auto_scaling_group_id="asg-1")
    assert (await scp.delete(f"/v1/servers/{server.id}")).status_code == 202


async def test_unblocking_a_server_lets_the_next_delete_through(
    emulator: EmulatorServer, scp: ScpTestClient
) -> None:
    server = emulator.state.add_server(backup=True)
    assert (await scp.delete(f"/v1/servers/{server.id}")).status_code == 409
    emulator.state.update_server(server.id, backup=False)
    assert (await scp.delete(f"/v1/servers/{server.id}")).status_code == 202


async def test_lock_and_unlock_toggle_the_delete_refusal(
    emulator: EmulatorServer, scp: ScpTestClient
) -> None:
    server = emulator.state.add_server()
    path = f"/v1/servers/{server.id}"
    assert (await scp.post(f"{path}/lock")).status_code == 202
    assert (await scp.get(path)).json()["locked"] is True
    assert (await scp.delete(path)).status_code == 409
    assert (await scp.post(f"{path}/unlock")).status_code == 202
    assert (await scp.delete(path)).status_code == 202


async def test_wrong_secret_is_401_hmac_valid_fail(
    emulator: EmulatorServer, scp: ScpTestClient
) -> None:
    server = emulator.state.add_server()
    response = await scp.delete(f"/v1/servers/{server.id}", secret_key="WRONGSECRET")
    assert response.status_code == 401
    assert response.json() == {"errors": [{"status": 401, "detail": "[HMAC] HMAC valid fail"}]}
    assert emulator.state.get_server(server.id) is not None
    assert emulator.state.requests[-1].verdict == "bad-signature"


async def test_unknown_access_key_is_401(emulator: EmulatorServer, scp: ScpTestClient) -> None:
    response = await scp.get("/v1/servers", access_key="NOBODY")
    assert response.status_code == 401
    assert detail(response) == "[HMAC] HMAC valid fail"
    assert emulator.state.requests[-1].verdict == "unknown-key"


@pytest.mark.parametrize("skew_seconds", [-600, 600])
async def test_stale_timestamp_is_401_with_a_distinct_detail(
    emulator: EmulatorServer, scp: ScpTestClient, skew_seconds: int
) -> None:
    timestamp = str(int((time.time() + skew_seconds) * 1000))
    response = await scp.get("/v1/servers", timestamp=timestamp)
    assert response.status_code == 401
    assert detail(response) == "[HMAC] Timestamp expired"
    entry = emulator.state.requests[-1]
    assert entry.verdict == "stale-timestamp"
    assert entry.signature_valid is True


async def test_timestamp_window_is_configurable(
    emulator: EmulatorServer, scp: ScpTestClient
) -> None:
    emulator.state.settings.timestamp_window = 5
    timestamp = str(int((time.time() - 10) * 1000))
    assert (await scp.get("/v1/servers", timestamp=timestamp)).status_code == 401
    emulator.state.settings.timestamp_window = 60
    assert (await scp.get("/v1/servers", timestamp=timestamp)).status_code == 200


async def test_unsigned_request_to_the_api_is_401(scp: ScpTestClient) -> None:
    response = await scp.http.get(f"{scp.base_url}/v1/servers")
    assert response.status_code == 401
    assert detail(response) == "[HMAC] HMAC valid fail"


async def test_double_slash_in_the_path_is_401(
    emulator: EmulatorServer, scp: ScpTestClient
) -> None:
    server = emulator.state.add_server()
    response = await scp.delete(f"//v1/servers/{server.id}")
    assert response.status_code == 401
    assert detail(response) == "[HMAC] HMAC valid fail"
    assert emulator.state.get_server(server.id) is not None


async def test_restricted_credential_gets_403_for_other_actions(
    emulator: EmulatorServer, scp: ScpTestClient
) -> None:
    emulator.state.set_credential(
        access_key="READONLY", secret_key="READONLYSECRET", allowed_actions=["GET", "LIST"]
    )
    server = emulator.state.add_server()
    keys = {"access_key": "READONLY", "secret_key": "READONLYSECRET"}
    assert (await scp.get(f"/v1/servers/{server.id}", **keys)).status_code == 200
    response = await scp.delete(f"/v1/servers/{server.id}", **keys)
    assert response.status_code == 403
    assert response.json() == {
        "errors": [{"status": 403, "detail": "Action definition is not found"}]
    }
    assert emulator.state.requests[-1].verdict == "forbidden"
    assert emulator.state.get_server(server.id) is not None


async def test_unknown_route_is_403_like_the_gateway(scp: ScpTestClient) -> None:
    response = await scp.get("/v1/flavors")
    assert response.status_code == 403
    assert detail(response) == "Action definition is not found"


class TestAccountBoundCredential:
    @pytest.fixture
    def emulator_config(self) -> EmulatorConfig:
        return EmulatorConfig(
            credentials=[
                Credential(access_key="ACCKEY", secret_key="ACCSECRET", account_id="acc-1")
            ],
        )

    async def test_matching_signed_account_id_is_accepted(
        self, emulator: EmulatorServer, scp: ScpTestClient
    ) -> None:
        server = emulator.state.add_server(account_id="acc-1")
        response = await scp.get(
            f"/v1/servers/{server.id}",
            access_key="ACCKEY",
            secret_key="ACCSECRET",
            account_id="acc-1",
        )
        assert response.status_code == 200
        assert response.json()["account_id"] == "acc-1"

    @pytest.mark.parametrize("account_id", ["", "acc-2"])
    async def test_missing_or_other_account_id_is_403(
        self, emulator: EmulatorServer, scp: ScpTestClient, account_id: str
    ) -> None:
        server = emulator.state.add_server(account_id="acc-1")
        response = await scp.get(
            f"/v1/servers/{server.id}",
            access_key="ACCKEY",
            secret_key="ACCSECRET",
            account_id=account_id,
        )
        assert response.status_code == 403

    async def test_servers_seeded_without_an_account_belong_to_the_keys_account(
        self, emulator: EmulatorServer, scp: ScpTestClient
    ) -> None:
        server = emulator.state.add_server()
        assert server.account_id == "acc-1"
        keys = {"access_key": "ACCKEY", "secret_key": "ACCSECRET", "account_id": "acc-1"}
        assert (await scp.delete(f"/v1/servers/{server.id}", **keys)).status_code == 202

    async def test_servers_of_other_accounts_are_invisible(
        self, emulator: EmulatorServer, scp: ScpTestClient
    ) -> None:
        other = emulator.state.add_server(account_id="acc-2")
        keys = {"access_key": "ACCKEY", "secret_key": "ACCSECRET", "account_id": "acc-1"}
        assert (await scp.get(f"/v1/servers/{other.id}", **keys)).status_code == 404
        assert (await scp.get("/v1/servers", **keys)).json()["count"] == 0


@pytest.mark.parametrize(
    "header", ["virtualserver 2.0", "virtualserver", "blockstorage 1.3", "virtualserver v1.3"]
)
async def test_unsupported_api_version_is_400(
    emulator: EmulatorServer, scp: ScpTestClient, header: str
) -> None:
    response = await scp.get("/v1/servers", api_version=header)
    assert response.status_code == 400
    assert detail(response).startswith("Unsupported API version")
    assert emulator.state.requests[-1].verdict == "bad-version"


@pytest.mark.parametrize("header", [None, "virtualserver 1.3", "virtualserver 1.0"])
async def test_missing_header_and_listed_versions_are_accepted(
    scp: ScpTestClient, header: str | None
) -> None:
    assert (await scp.get("/v1/servers", api_version=header)).status_code == 200


async def test_expired_versions_are_refused_when_configured(
    emulator: EmulatorServer, scp: ScpTestClient
) -> None:
    emulator.state.settings.reject_expired_versions = True
    response = await scp.get("/v1/servers", api_version="virtualserver 1.0")
    assert response.status_code == 400
    assert "2025-12-31" in detail(response)
    assert (await scp.get("/v1/servers", api_version="virtualserver 1.3")).status_code == 200


async def test_a_version_is_refused_only_from_its_not_before_date_on(
    emulator: EmulatorServer, scp: ScpTestClient
) -> None:
    today = dt.datetime.now(dt.UTC).date()
    emulator.state.settings.reject_expired_versions = True
    emulator.state.settings.versions = [
        ApiVersion(id="v1.3", status="CURRENT"),
        ApiVersion(id="v1.2", status="DEPRECATED", not_before=today + dt.timedelta(days=1)),
        ApiVersion(id="v1.1", status="DEPRECATED", not_before=today),
    ]
    assert (await scp.get("/v1/servers", api_version="virtualserver 1.2")).status_code == 200
    assert (await scp.get("/v1/servers", api_version="virtualserver 1.1")).status_code == 400


async def test_listing_pages_with_limit_and_marker(
    emulator: EmulatorServer, scp: ScpTestClient
) -> None:
    ids = [emulator.state.add_server(name=f"vm-{n}").id for n in range(5)]
    seen: list[str] = []
    marker = None
    while True:
        query = "?limit=2" + (f"&marker={marker}" if marker else "")
        body = (await scp.get(f"/v1/servers{query}")).json()
        assert body["count"] == 5
        page = [server["id"] for server in body["servers"]]
        if not page:
            break
        assert len(page) <= 2
        seen += page
        marker = page[-1]
    assert seen == ids


async def test_listing_without_paging_returns_everything(
    emulator: EmulatorServer, scp: ScpTestClient
) -> None:
    for _ in range(3):
        emulator.state.add_server()
    body = (await scp.get("/v1/servers")).json()
    assert body["count"] == 3
    assert len(body["servers"]) == 3


async def test_bad_paging_parameters_are_400(scp: ScpTestClient) -> None:
    response = await scp.get("/v1/servers?limit=many")
    assert response.status_code == 400
    assert response.json()[0]["loc"] == ["query", "limit"]
    response = await scp.get(f"/v1/servers?marker={uuid.uuid4()}")
    assert response.status_code == 400


class TestBehindAProxy:
    @pytest.fixture
    def emulator_config(self) -> EmulatorConfig:
        return EmulatorConfig(public_url="https://virtualserver.kr-west1.e.samsungsdscloud.com/")

    async def test_signature_over_the_public_url_is_accepted(
        self, emulator: EmulatorServer, scp: ScpTestClient, sign: SignHeaders
    ) -> None:
        server = emulator.state.add_server()
        path = f"/v1/servers/{server.id}"
        public = f"https://virtualserver.kr-west1.e.samsungsdscloud.com{path}"
        response = await scp.http.get(f"{emulator.url}{path}", headers=sign("GET", public))
        assert response.status_code == 200
        assert emulator.state.requests[-1].url == public
