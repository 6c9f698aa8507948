"""The operator's own Kubernetes connection (scp_operator.kube_http) against a local HTTP server.

What the readers built on it do with each answer is tested in test_kube_client.py; here: the
credentials it logs in with, what it sends, how an HTTP error reads, the 401 re-login, the bound
on requests in flight and that waiting for it does not count against a request's timeout.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import kopf
import pytest
from aiohttp import web
from aiohttp.test_utils import TestServer

from scp_operator import kube_http


class Server:
    def __init__(self) -> None:
        self.seen: list[dict[str, Any]] = []
        self.url = ""
        self.in_flight = self.most_in_flight = 0
        self.delay = 0.0
        self.valid_tokens = {"t1"}

    async def handle(self, request: web.Request) -> web.StreamResponse:
        self.seen.append(
            {
                "method": request.method,
                "path": request.path,
                "query": dict(request.query),
                "body": await request.text(),
                "type": request.content_type,
                "auth": request.headers.get("Authorization"),
            }
        )
        if (
            request.headers.get("Authorization", "").removeprefix("Bearer ")
            not in self.valid_tokens
        ):
            return web.json_response({"kind": "Status", "reason": "Unauthorized"}, status=401)
        self.in_flight += 1
        self.most_in_flight = max(self.most_in_flight, self.in_flight)
        try:
            await asyncio.sleep(self.delay)
        finally:
            self.in_flight -= 1
        if request.path.endswith("/missing"):
            body = {"kind": "Status", "reason": "NotFound", "message": "secret-value-in-message"}
            return web.json_response(body, status=404)
        return web.json_response({"ok": True}, headers={"Date": "Tue, 01 Jun 2027 10:00:00 GMT"})


@pytest.fixture
async def server() -> AsyncIterator[Server]:
    fake = Server()
    app = web.Application()
    app.router.add_route("*", "/{tail:.*}", fake.handle)
    test_server = TestServer(app, host="127.0.0.1")
    await test_server.start_server()
    fake.url = str(test_server.make_url("")).rstrip("/")
    yield fake
    await test_server.close()


def connection(server: Server, tokens: list[str], connections: int = 8) -> kube_http.Connection:
    logins = iter(tokens)

    async def login() -> kopf.ConnectionInfo:
        return kopf.ConnectionInfo(server=server.url, token=next(logins))

    return kube_http.Connection(connections=connections, login=login)


async def test_a_request_sends_json_with_its_content_type_and_reads_json(server: Server) -> None:
    conn = connection(server, ["t1"])
    try:
        answer = await conn.request(
            "PATCH",
            "/apis/g/v1/things/x/status",
            params={"limit": 5},
            body={"status": {"a": 1}},
            content_type=kube_http.MERGE_PATCH,
        )
    finally:
        await conn.aclose()
    assert answer == {"ok": True}
    seen = server.seen[0]
    assert (seen["method"], seen["path"], seen["query"]) == (
        "PATCH",
        "/apis/g/v1/things/x/status",
        {"limit": "5"},
    )
    assert seen["type"] == "application/merge-patch+json"
    assert seen["body"] == '{"status": {"a": 1}}'
    assert seen["auth"] == "Bearer t1"


async def test_an_http_error_names_status_and_reason_but_never_the_body(server: Server) -> None:
    conn = connection(server, ["t1"])
    try:
        with pytest.raises(kube_http.KubeApiError) as caught:
            await conn.request("GET", "/api/v1/namespaces/a/secrets/missing")
    finally:
        await conn.aclose()
    assert caught.value.status == 404
    assert str(caught.value) == "HTTP 404 NotFound"
    assert "secret-value" not in str(caught.value)


async def test_send_returns_any_status_with_the_date_header(server: Server) -> None:
    conn = connection(server, ["t1"])
    try:
        ok = await conn.send("GET", "/x")
        missing = await conn.send("GET", "/missing")
    finally:
        await conn.aclose()
    assert (ok.status, ok.date) == (200, "Tue, 01 Jun 2027 10:00:00 GMT")
    assert missing.status == 404


async def test_a_401_logs_in_again_once_and_retries_with_the_new_token(server: Server) -> None:
    conn = connection(server, ["expired", "t1"])
    try:
        assert await conn.request("GET", "/x") == {"ok": True}
    finally:
        await conn.aclose()
    assert [s["auth"] for s in server.seen] == ["Bearer expired", "Bearer t1"]


async def test_a_401_after_logging_in_again_is_an_error_not_a_loop(server: Server) -> None:
    conn = connection(server, ["bad-1", "bad-2", "bad-3"])
    try:
        with pytest.raises(kube_http.KubeApiError) as caught:
            await conn.request("GET", "/x")
    finally:
        await conn.aclose()
    assert caught.value.status == 401
    assert len(server.seen) == 2


async def test_requests_in_flight_are_bounded_and_queueing_does_not_count_as_timeout(
    server: Server,
) -> None:
    server.delay = 0.3
    conn = connection(server, ["t1"], connections=2)
    try:
        # six requests of 0.3 s through two slots take about 0.9 s; each one's own timeout
        # (0.5 s) covers only its time at the server, not its wait for a slot
        answers = await asyncio.gather(*(conn.request("GET", "/x", timeout=0.5) for _ in range(6)))
    finally:
        await conn.aclose()
    assert answers == [{"ok": True}] * 6
    assert server.most_in_flight == 2


async def test_after_aclose_a_request_raises_instead_of_opening_a_new_session(
    server: Server,
) -> None:
    conn = connection(server, ["t1"])
    await conn.request("GET", "/x")
    await conn.aclose()
    with pytest.raises(kube_http.ConnectionClosed):
        await conn.request("GET", "/x")


async def test_connection_info_reads_the_kubeconfig_with_kopfs_own_login(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    config = tmp_path / "kubeconfig"
    config.write_text(
        "apiVersion: v1\nkind: Config\ncurrent-context: x\n"
        "clusters: [{name: c, cluster: {server: 'https://127.0.0.1:6443'}}]\n"
        "users: [{name: u, user: {token: tok}}]\n"
        "contexts: [{name: x, context: {cluster: c, user: u}}]\n"
    )
    monkeypatch.setenv("KUBECONFIG", str(config))
    info = await kube_http.connection_info()
    assert (info.server, info.token) == ("https://127.0.0.1:6443", "tok")


async def test_no_credentials_says_where_it_looked(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("KUBECONFIG", raising=False)
    monkeypatch.setenv("HOME", str(tmp_path))
    with pytest.raises(kube_http.NoCredentials, match="no Kubernetes credentials"):
        await kube_http.connection_info()


def test_paths_of_core_and_group_resources() -> None:
    assert kube_http.path("v1", "secrets", namespace="a", name="s") == (
        "/api/v1/namespaces/a/secrets/s"
    )
    assert kube_http.path("g.io/v1", "things") == "/apis/g.io/v1/things"
    assert kube_http.path("g.io/v1", "things", name="x", subresource="status") == (
        "/apis/g.io/v1/things/x/status"
    )
