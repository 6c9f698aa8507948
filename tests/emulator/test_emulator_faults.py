"""Injected faults and latency: the bad days a client must survive."""

from __future__ import annotations

import asyncio
import time

import httpx
import pytest

from scp_emulator import EmulatorServer

from .emulator_helpers import ScpTestClient, detail


async def test_status_fault_answers_with_headers_then_counts_down(
    emulator: EmulatorServer, scp: ScpTestClient
) -> None:
    server = emulator.state.add_server()
    fault = emulator.state.add_fault(
        kind="status", status=503, headers={"Retry-After": "2"}, times=2, method="DELETE"
    )
    path = f"/v1/servers/{server.id}"
    for remaining in (1, 0):
        response = await scp.delete(path)
        assert response.status_code == 503
        assert response.headers["Retry-After"] == "2"
        assert detail(response) == "Injected fault"
        assert fault.remaining == remaining
    assert emulator.state.faults == [], "a used-up fault disappears"
    assert (await scp.delete(path)).status_code == 202
    verdicts = [entry.verdict for entry in emulator.state.find_requests(method="DELETE")]
    assert verdicts == ["fault", "fault", "ok"]


async def test_fault_matches_only_its_method_and_path(
    emulator: EmulatorServer, scp: ScpTestClient
) -> None:
    first = emulator.state.add_server()
    second = emulator.state.add_server()
    emulator.state.add_fault(kind="status", status=429, method="DELETE", path_regex=first.id)
    assert (await scp.get(f"/v1/servers/{first.id}")).status_code == 200
    assert (await scp.delete(f"/v1/servers/{second.id}")).status_code == 202
    assert (await scp.delete(f"/v1/servers/{first.id}")).status_code == 429


async def test_status_fault_with_a_custom_body(
    scp: ScpTestClient, emulator: EmulatorServer
) -> None:
    emulator.state.add_fault(kind="status", status=409, body={"errors": [{"detail": ["a", "b"]}]})
    response = await scp.get("/v1/servers")
    assert response.status_code == 409
    assert response.json() == {"errors": [{"detail": ["a", "b"]}]}


async def test_reset_fault_drops_the_connection(
    emulator: EmulatorServer, scp: ScpTestClient
) -> None:
    emulator.state.add_fault(kind="reset", times=1)
    with pytest.raises((httpx.ReadError, httpx.RemoteProtocolError)):
        await scp.get("/v1/servers")
    entry = emulator.state.requests[-1]
    assert entry.verdict == "fault"
    assert entry.status is None
    assert (await scp.get("/v1/servers")).status_code == 200


async def test_process_first_fault_loses_the_answer_but_not_the_effect(
    emulator: EmulatorServer, scp: ScpTestClient
) -> None:
    server = emulator.state.add_server()
    emulator.state.add_fault(kind="reset", method="DELETE", times=1, process_first=True)
    with pytest.raises((httpx.ReadError, httpx.RemoteProtocolError)):
        await scp.delete(f"/v1/servers/{server.id}")
    assert (await scp.get(f"/v1/servers/{server.id}")).json()["state"] == "DELETING"
    entry = emulator.state.find_requests(method="DELETE")[-1]
    assert entry.verdict == "fault"
    assert entry.detail is not None
    assert "202" in entry.detail
    assert (await scp.delete(f"/v1/servers/{server.id}")).status_code == 202


async def test_html_fault_is_a_proxy_error_page(
    emulator: EmulatorServer, scp: ScpTestClient
) -> None:
    emulator.state.add_fault(kind="html")
    response = await scp.get("/v1/servers")
    assert response.status_code == 502
    assert response.headers["Content-Type"].startswith("text/html")
    assert "<html>" in response.text


async def test_garbage_fault_is_not_json(emulator: EmulatorServer, scp: ScpTestClient) -> None:
    emulator.state.add_fault(kind="garbage", status=409)
    response = await scp.get("/v1/servers")
    assert response.status_code == 409
    assert response.headers["Content-Type"].startswith("application/json")
    with pytest.raises(ValueError):  # noqa: PT011 - any decoding error will do
        response.json()


async def test_timeout_fault_outlasts_the_client_timeout(
    scp: ScpTestClient, emulator: EmulatorServer
) -> None:
    emulator.state.add_fault(kind="timeout")
    with pytest.raises(httpx.ReadTimeout):
        await scp.get("/v1/servers", client_timeout=0.3)
    assert emulator.state.requests[-1].verdict == "fault"


async def test_stopping_releases_requests_held_by_a_timeout_fault() -> None:
    emulator = EmulatorServer()
    await emulator.start()
    emulator.state.add_fault(kind="timeout")
    async with httpx.AsyncClient(trust_env=False) as http:
        pending = asyncio.create_task(http.get(f"{emulator.url}/", timeout=30))
        await asyncio.sleep(0.2)
        started = time.monotonic()
        await emulator.stop()
        assert time.monotonic() - started < 2.5
        response = await pending
    assert response.status_code == 504


async def test_fault_latency_delays_its_answer(
    emulator: EmulatorServer, scp: ScpTestClient
) -> None:
    emulator.state.add_fault(kind="status", status=500, latency_ms=300)
    started = time.monotonic()
    assert (await scp.get("/v1/servers")).status_code == 500
    assert time.monotonic() - started >= 0.3


async def test_latency_applies_to_every_public_request(
    emulator: EmulatorServer, scp: ScpTestClient
) -> None:
    emulator.state.set_latency(250, jitter_ms=50)
    started = time.monotonic()
    assert (await scp.get("/v1/servers")).status_code == 200
    elapsed = time.monotonic() - started
    assert 0.25 <= elapsed < 2
    emulator.state.set_latency(0)
    started = time.monotonic()
    await scp.get("/v1/servers")
    assert time.monotonic() - started < 0.25


async def test_faulted_requests_still_record_whether_they_were_signed_correctly(
    emulator: EmulatorServer, scp: ScpTestClient
) -> None:
    emulator.state.add_fault(kind="status", status=503)
    await scp.get("/v1/servers")
    await scp.get("/v1/servers", secret_key="WRONG")
    good, bad = emulator.state.requests[-2:]
    assert (good.verdict, good.signature_valid) == ("fault", True)
    assert (bad.verdict, bad.signature_valid) == ("fault", False)
