"""The SCP client against a scripted transport: signing per attempt, mapping, body limits."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path

import httpx
import pytest
from pydantic import SecretStr

from scp_operator.credentials import CredentialsProvider
from scp_operator.scp import outcomes, signing
from scp_operator.scp.client import MAX_BODY, ScpClient
from scp_operator.scp.outcomes import Kind, Outcome

SID = "2a9be312-5d4b-4bc8-b2ae-35100fa9241f"
BASE = "http://scp.test"
VERSIONS = {"versions": [{"id": "v1.3", "status": "CURRENT", "not_before": None}]}
SECRET = "TOPSECRET-abc"


def make(
    handler: Callable[[httpx.Request], httpx.Response], tmp_path: Path, secret: str | None = SECRET
) -> ScpClient:
    creds = CredentialsProvider(
        access_key=SecretStr("AK") if secret else None,
        secret_key=SecretStr(secret) if secret else None,
        directory=None,
        home=tmp_path,
    )
    return ScpClient(
        credentials=creds,
        base_url=lambda region: BASE,
        api_version="1.3",
        transport=httpx.MockTransport(handler),
    )


async def test_each_attempt_is_signed_afresh_over_the_exact_url(tmp_path: Path) -> None:
    seen: list[httpx.Request] = []

    def handler(request: httpx.Request) -> httpx.Response:
        seen.append(request)
        return httpx.Response(202)

    client = make(handler, tmp_path)
    assert (await client.delete_server(SID)).kind is Kind.ACCEPTED
    assert (await client.delete_server(SID)).kind is Kind.ACCEPTED
    for request in seen:
        expected = signing.sign(
            method="DELETE",
            url=str(request.url),
            timestamp_ms=request.headers["scp-timestamp"],
            access_key="AK",
            secret_key=SECRET,
        )
        assert request.headers["scp-signature"] == expected
        assert str(request.url) == f"{BASE}/v1/servers/{SID}"
        assert request.headers["scp-api-version"] == "virtualserver 1.3"
    await client.aclose()


async def test_404_is_trusted_only_from_a_verified_scp_endpoint(tmp_path: Path) -> None:
    def not_scp(request: httpx.Request) -> httpx.Response:
        return httpx.Response(404, text="<html>not found</html>")

    outcome = await make(not_scp, tmp_path).delete_server(SID)
    assert outcome.kind is Kind.REJECTED
    assert "SCP_ENDPOINT" in (outcome.detail or "")

    def scp(request: httpx.Request) -> httpx.Response:
        if request.url.path == "/":
            return httpx.Response(200, json=VERSIONS)
        return httpx.Response(404, json={"errors": [{"status": 404, "detail": "not found"}]})

    assert (await make(scp, tmp_path).delete_server(SID)).kind is Kind.GONE


@pytest.mark.parametrize(
    ("exc", "words"),
    [
        (httpx.ConnectError("boom"), "cannot connect"),
        (httpx.ReadTimeout("slow"), "in time"),
        (httpx.RemoteProtocolError("reset"), "closed the connection"),
    ],
)
async def test_transport_failures_become_unavailable(
    tmp_path: Path, exc: Exception, words: str
) -> None:
    def handler(request: httpx.Request) -> httpx.Response:
        raise exc

    outcome = await make(handler, tmp_path).delete_server(SID)
    assert outcome.kind is Kind.UNAVAILABLE
    assert words in (outcome.detail or "")
    assert SECRET not in outcome.describe()


async def test_huge_bodies_are_capped(tmp_path: Path) -> None:
    def handler(request: httpx.Request) -> httpx.Response:
        return httpx.Response(500, content=b"x" * (MAX_BODY * 3))

    outcome = await make(handler, tmp_path).delete_server(SID)
    assert outcome.kind is Kind.UNAVAILABLE


async def test_missing_credentials_make_no_call(tmp_path: Path) -> None:
    calls: list[httpx.Request] = []

    def handler(request: httpx.Request) -> httpx.Response:
        calls.append(request)
        return httpx.Response(202)

    outcome = await make(handler, tmp_path, secret=None).delete_server(SID)
    assert outcome.kind is Kind.NO_CREDENTIALS
    assert calls == []


async def test_get_returns_the_server_body(tmp_path: Path) -> None:
    server = {"id": SID, "name": "web", "state": "ACTIVE", "locked": False}

    def handler(request: httpx.Request) -> httpx.Response:
        return httpx.Response(200, content=json.dumps(server).encode())

    outcome = await make(handler, tmp_path).get_server(SID)
    assert outcome.kind is Kind.FOUND
    assert outcome.body == server


async def test_redirects_are_not_followed(tmp_path: Path) -> None:
    def handler(request: httpx.Request) -> httpx.Response:
        return httpx.Response(302, headers={"location": "http://elsewhere/"})

    assert (await make(handler, tmp_path).delete_server(SID)).kind is Kind.REJECTED


async def test_concurrent_crd_checks_share_reads_that_start_after_they_ask(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    import asyncio
    import threading

    from scp_operator.decision import CrdState
    from scp_operator.kube import CrdReader

    reader = CrdReader()
    gate = threading.Event()
    started: list[int] = []

    def slow_read() -> CrdState:
        started.append(len(started))
        gate.wait(5)
        return CrdState.PRESENT

    monkeypatch.setattr(reader, "_read", slow_read)
    first = asyncio.ensure_future(reader.state())
    await asyncio.sleep(0.05)  # the first read is now in flight
    late = [asyncio.ensure_future(reader.state()) for _ in range(50)]
    await asyncio.sleep(0.05)
    assert len(started) == 1  # the late callers did not join the read already in flight
    gate.set()
    results = await asyncio.gather(first, *late)
    assert set(results) == {CrdState.PRESENT}
    assert reader.reads == 2  # 51 callers, 2 reads: one in flight, one fresh batch for the rest


async def test_a_failing_crd_read_answers_unknown_to_everyone(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    import asyncio

    from scp_operator.decision import CrdState
    from scp_operator.kube import CrdReader

    reader = CrdReader()

    def boom() -> CrdState:
        raise RuntimeError("boom")

    monkeypatch.setattr(reader, "_read", boom)
    assert set(await asyncio.gather(*(reader.state() for _ in range(5)))) == {CrdState.UNKNOWN}


@pytest.mark.parametrize(
    ("method", "status", "kind"),
    [
        ("DELETE", 202, Kind.ACCEPTED),
        ("DELETE", 404, Kind.GONE),
        ("DELETE", 409, Kind.CONFLICT),
        ("DELETE", 503, Kind.UNAVAILABLE),
        ("GET", 404, Kind.GONE),
        ("GET", 200, Kind.REJECTED),  # a server we could not read is not FOUND
    ],
)
async def test_an_answer_that_cannot_be_turned_into_an_outcome_keeps_its_status(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, method: str, status: int, kind: Kind
) -> None:
    """If building the outcome fails for any reason, the status alone still decides."""

    def broken(**kwargs: object) -> Outcome:
        raise RuntimeError("a bug in the answer reader")

    monkeypatch.setattr(outcomes, "from_response", broken)

    def handler(request: httpx.Request) -> httpx.Response:
        if request.url.path == "/":
            return httpx.Response(200, json=VERSIONS)
        return httpx.Response(status, json={"id": SID})

    client = make(handler, tmp_path)
    call = client.delete_server if method == "DELETE" else client.get_server
    outcome = await call(SID)
    await client.aclose()
    assert outcome.kind is kind
    assert outcome.status == status
