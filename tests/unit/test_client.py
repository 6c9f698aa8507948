"""The SCP client against a scripted transport: signing per attempt, mapping, body limits."""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx
import pytest
from pydantic import SecretStr

from scp_emulator.auth import authenticate
from scp_emulator.config import Credential
from scp_emulator.testing import ThreadedEmulator
from scp_operator import settings
from scp_operator.credentials import CredentialsProvider
from scp_operator.limits import RequestLimiter
from scp_operator.scp import endpoints, outcomes, signing
from scp_operator.scp.answers import MAX_BODY
from scp_operator.scp.client import ScpClient
from scp_operator.scp.outcomes import Outcome, Verdict

SID = "2a9be312-5d4b-4bc8-b2ae-35100fa9241f"
BASE = "https://scp.test"  # plain http:// is refused for any host but loopback
VERSIONS = {"versions": [{"id": "v1.3", "status": "CURRENT", "not_before": None}]}
SECRET = "TOPSECRET-abc"


def make(
    handler: Callable[[httpx.Request], httpx.Response],
    tmp_path: Path,
    secret: str | None = SECRET,
    **kw: Any,
) -> ScpClient:
    creds = CredentialsProvider(
        access_key=SecretStr("AK") if secret else None,
        secret_key=SecretStr(secret) if secret else None,
        directory=None,
        home=tmp_path,
    )
    kw.setdefault("base_url", lambda region: BASE)
    return ScpClient(
        credentials=creds, api_version="1.3", transport=httpx.MockTransport(handler), **kw
    )


async def test_each_attempt_is_signed_afresh_over_the_exact_url(tmp_path: Path) -> None:
    seen: list[httpx.Request] = []

    def handler(request: httpx.Request) -> httpx.Response:
        seen.append(request)
        return httpx.Response(202)

    client = make(handler, tmp_path)
    assert (await client.delete_server(SID)).kind is Verdict.ACCEPTED
    assert (await client.delete_server(SID)).kind is Verdict.ACCEPTED
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
    assert outcome.kind is Verdict.REJECTED
    assert "SCP_ENDPOINT" in (outcome.detail or "")

    def scp(request: httpx.Request) -> httpx.Response:
        if request.url.path == "/":
            return httpx.Response(200, json=VERSIONS)
        return httpx.Response(404, json={"errors": [{"status": 404, "detail": "not found"}]})

    assert (await make(scp, tmp_path).delete_server(SID)).kind is Verdict.GONE


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
    assert outcome.kind is Verdict.UNAVAILABLE
    assert words in (outcome.detail or "")
    assert SECRET not in outcome.describe()


async def test_huge_bodies_are_capped(tmp_path: Path) -> None:
    def handler(request: httpx.Request) -> httpx.Response:
        return httpx.Response(500, content=b"x" * (MAX_BODY * 3))

    outcome = await make(handler, tmp_path).delete_server(SID)
    assert outcome.kind is Verdict.UNAVAILABLE


async def test_missing_credentials_make_no_call(tmp_path: Path) -> None:
    calls: list[httpx.Request] = []

    def handler(request: httpx.Request) -> httpx.Response:
        calls.append(request)
        return httpx.Response(202)

    outcome = await make(handler, tmp_path, secret=None).delete_server(SID)
    assert outcome.kind is Verdict.NO_CREDENTIALS
    assert calls == []


async def test_get_returns_the_server_body(tmp_path: Path) -> None:
    server = {"id": SID, "name": "web", "state": "ACTIVE", "locked": False}

    def handler(request: httpx.Request) -> httpx.Response:
        return httpx.Response(200, content=json.dumps(server).encode())

    outcome = await make(handler, tmp_path).get_server(SID)
    assert outcome.kind is Verdict.FOUND
    assert outcome.body == server


async def test_redirects_are_not_followed(tmp_path: Path) -> None:
    def handler(request: httpx.Request) -> httpx.Response:
        return httpx.Response(302, headers={"location": "http://elsewhere/"})

    assert (await make(handler, tmp_path).delete_server(SID)).kind is Verdict.REJECTED


async def test_concurrent_crd_checks_share_reads_that_start_after_they_ask(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    import asyncio

    from scp_operator.decision import CrdState
    from scp_operator.kube import CrdReader

    reader = CrdReader()
    gate, in_flight = asyncio.Event(), asyncio.Event()
    started: list[int] = []

    async def slow_read() -> CrdState:
        started.append(len(started))
        in_flight.set()
        await gate.wait()
        return CrdState.PRESENT

    monkeypatch.setattr(reader, "_read", slow_read)
    first = asyncio.ensure_future(reader.state())
    await in_flight.wait()  # the first read is now in flight
    late = [asyncio.ensure_future(reader.state()) for _ in range(50)]
    for _ in range(10):
        await asyncio.sleep(0)
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

    async def boom() -> CrdState:
        raise RuntimeError("boom")

    monkeypatch.setattr(reader, "_read", boom)
    assert set(await asyncio.gather(*(reader.state() for _ in range(5)))) == {CrdState.UNKNOWN}


@pytest.mark.parametrize(
    ("method", "status", "kind"),
    [
        ("DELETE", 202, Verdict.ACCEPTED),
        ("DELETE", 404, Verdict.GONE),
        ("DELETE", 409, Verdict.CONFLICT),
        ("DELETE", 503, Verdict.UNAVAILABLE),
        ("GET", 404, Verdict.GONE),
        ("GET", 200, Verdict.REJECTED),  # a server we could not read is not FOUND
    ],
)
async def test_an_answer_that_cannot_be_turned_into_an_outcome_keeps_its_status(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, method: str, status: int, kind: Verdict
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


# --- endpoints spelled unlike httpx renders them ----------------------------------------------


def verified_by_the_gateway(request: httpx.Request, secret: str = SECRET) -> bool:
    """The emulator's independent HMAC check, over the URL as the gateway sees it on the wire
    (scheme, ``Host`` header, raw request target)."""
    wire_url = f"{request.url.scheme}://{request.headers['host']}{request.url.raw_path.decode()}"
    result = authenticate(
        method=request.method,
        path=request.url.path,
        candidate_urls=[wire_url],
        headers=request.headers,
        credentials={"AK": Credential(access_key="AK", secret_key=secret)},
        now_ms=int(time.time() * 1000),
        window_seconds=300,
    )
    return result.ok


@pytest.mark.parametrize("via_settings", [True, False], ids=["settings", "raw-base"])
@pytest.mark.parametrize(
    "endpoint",
    [
        "https://SCP.Example.com",
        "https://scp.example.com:443",
        "http://127.0.0.1:80",
        "https://bücher.example",
        "HTTPS://Proxy.Example:443//scp//",
    ],
)
async def test_an_endpoint_spelled_unlike_httpx_sends_it_still_gets_verifiable_calls(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, endpoint: str, via_settings: bool
) -> None:
    """Upper-case host, explicit default port, IDN host: the call goes out and its signature
    verifies, instead of every call ending as "URL changed after signing"."""
    if via_settings:
        monkeypatch.setenv("SCP_ENDPOINT", endpoint)
        base_url: Callable[[str | None], str] = settings.load().scp.service_url
    else:
        base_url = lambda region: endpoint  # noqa: E731 - a client built without settings
    seen: list[httpx.Request] = []

    def handler(request: httpx.Request) -> httpx.Response:
        seen.append(request)
        if request.url.path.rstrip("/") in ("", "/scp"):
            return httpx.Response(200, json=VERSIONS)
        return httpx.Response(404 if request.method == "GET" else 202)

    client = make(handler, tmp_path, base_url=base_url)
    try:
        deleted = await client.delete_server(SID)
        read = await client.get_server(SID)
        probe = await client.list_servers_probe()
    finally:
        await client.aclose()
    assert deleted.kind is Verdict.ACCEPTED, deleted.describe()
    assert read.kind is Verdict.GONE, read.describe()
    assert probe.kind is not Verdict.REJECTED
    signed = [r for r in seen if "scp-signature" in r.headers]
    assert len(signed) == 3
    assert all(verified_by_the_gateway(r) for r in signed)


async def test_an_upper_case_host_reaches_the_emulator_with_a_valid_signature(
    tmp_path: Path,
) -> None:
    """The same over real HTTP, checked by the emulator's own gateway."""
    with ThreadedEmulator() as emu:
        sid = str(emu.seed(name="upper")["id"])
        port = httpx.URL(emu.url).port
        creds = CredentialsProvider(
            access_key=SecretStr(emu.access_key),
            secret_key=SecretStr(emu.secret_key),
            directory=None,
            home=tmp_path,
        )
        client = ScpClient(
            credentials=creds,
            base_url=lambda region: f"HTTP://LocalHost:{port}//",
            api_version="1.3",
        )
        try:
            outcome = await client.delete_server(sid.upper())
        finally:
            await client.aclose()
        sent = emu.requests(method="DELETE")
    assert outcome.kind is Verdict.ACCEPTED, outcome.describe()
    assert [r["signature_valid"] for r in sent] == [True]
    assert sent[0]["url"] == f"http://localhost:{port}/v1/servers/{sid}"


async def test_an_account_id_http_cannot_carry_is_rejected_without_a_call(tmp_path: Path) -> None:
    """Settings refuse it; a client built some other way must still not raise."""
    calls: list[httpx.Request] = []

    def handler(request: httpx.Request) -> httpx.Response:
        calls.append(request)
        return httpx.Response(202)

    client = make(handler, tmp_path, account_id="acc\u00e9")
    outcome = await client.delete_server(SID)
    await client.aclose()
    assert outcome.kind is Verdict.REJECTED
    assert "SCP_ACCOUNT_ID" in (outcome.detail or "")
    assert calls == []


# --- what the caller gets to use --------------------------------------------------------------


async def test_an_upper_case_server_id_is_sent_in_lower_case(tmp_path: Path) -> None:
    seen: list[str] = []

    def handler(request: httpx.Request) -> httpx.Response:
        seen.append(str(request.url))
        return httpx.Response(202 if request.method == "DELETE" else 404)

    client = make(handler, tmp_path)
    assert client.server_url(SID.upper()) == f"{BASE}/v1/servers/{SID}"
    assert (await client.delete_server(SID.upper())).kind is Verdict.ACCEPTED
    await client.get_server(SID.upper())
    await client.aclose()
    assert seen[:2] == [f"{BASE}/v1/servers/{SID}"] * 2


def unknown_region(region: str | None) -> str:
    if region == "kr-south9":
        raise endpoints.EndpointError("region 'kr-south9' does not exist in SCP environment 'e'")
    return BASE


async def test_base_url_names_where_a_region_goes_or_raises_endpoint_error(
    tmp_path: Path,
) -> None:
    client = make(lambda r: httpx.Response(500), tmp_path, base_url=unknown_region)
    assert client.base_url(None) == BASE
    assert client.base_url("kr-west1") == BASE
    with pytest.raises(endpoints.EndpointError, match="kr-south9"):
        client.base_url("kr-south9")
    await client.aclose()


async def test_a_region_without_an_endpoint_is_rejected_without_a_call(tmp_path: Path) -> None:
    """A bad region on one object must not raise out of the client (and lose a handler)."""
    calls: list[httpx.Request] = []

    def handler(request: httpx.Request) -> httpx.Response:
        calls.append(request)
        return httpx.Response(202)

    client = make(handler, tmp_path, base_url=unknown_region)
    for outcome in (
        await client.delete_server(SID, "kr-south9"),
        await client.delete_server(SID, "kr-south9", slot_held=True),
        await client.get_server(SID, "kr-south9"),
        await client.list_servers_probe("kr-south9"),
    ):
        assert outcome == Outcome(
            Verdict.REJECTED, None, "region 'kr-south9' does not exist in SCP environment 'e'"
        )
    await client.aclose()
    assert calls == []


async def test_the_probe_goes_to_the_given_region_and_hands_back_the_server_list(
    tmp_path: Path,
) -> None:
    listing = {"servers": [{"id": SID, "name": "web", "state": "ACTIVE"}]}
    seen: list[str] = []

    def handler(request: httpx.Request) -> httpx.Response:
        seen.append(str(request.url))
        return httpx.Response(200, json=listing)

    client = make(
        handler, tmp_path, base_url=lambda region: f"https://virtualserver.{region}.e.test"
    )
    outcome = await client.list_servers_probe("kr-east1")
    await client.aclose()
    assert seen == ["https://virtualserver.kr-east1.e.test/v1/servers?limit=1"]
    assert outcome.kind is Verdict.FOUND
    assert outcome.body == listing


# --- holding a request slot across the last safety check ---------------------------------------


async def test_a_delete_with_slot_held_takes_no_second_slot(tmp_path: Path) -> None:
    """With one slot in all, a caller holding it can still DELETE (and verify a 404's endpoint)
    without deadlocking, and the limiter counts the request once."""
    limiter = RequestLimiter(1)
    in_flight_at_send: list[int] = []

    def handler(request: httpx.Request) -> httpx.Response:
        in_flight_at_send.append(limiter.in_flight)
        if request.url.path == "/":
            return httpx.Response(200, json=VERSIONS)
        return httpx.Response(404)  # 404: the client also reads the root to verify the endpoint

    client = make(handler, tmp_path, limiter=limiter)
    async with client.slot():
        assert limiter.in_flight == 1
        outcome = await asyncio.wait_for(client.delete_server(SID, slot_held=True), timeout=5)
        assert limiter.in_flight == 1
    assert limiter.in_flight == 0
    assert outcome.kind is Verdict.GONE
    assert in_flight_at_send == [1, 1]  # the DELETE and the root read, both under the one slot
    # and without a held slot the client takes (and returns) its own
    assert (await client.delete_server(SID)).kind is Verdict.GONE
    assert limiter.in_flight == 0
    await client.aclose()


async def test_a_held_slot_really_holds_one_of_the_limiters_slots(tmp_path: Path) -> None:
    limiter = RequestLimiter(1)
    client = make(lambda r: httpx.Response(202), tmp_path, limiter=limiter)
    async with client.slot():
        waiting = asyncio.ensure_future(client.delete_server(SID))
        await asyncio.sleep(0.05)
        assert not waiting.done()  # no free slot while the caller holds the only one
    assert (await asyncio.wait_for(waiting, timeout=5)).kind is Verdict.ACCEPTED
    assert limiter.in_flight == 0
    await client.aclose()


async def test_a_slot_is_returned_when_the_caller_fails_while_holding_it(tmp_path: Path) -> None:
    limiter = RequestLimiter(1)
    client = make(lambda r: httpx.Response(202), tmp_path, limiter=limiter)
    with pytest.raises(RuntimeError):
        async with client.slot():
            raise RuntimeError("the safety check failed")
    assert limiter.in_flight == 0
    assert (await asyncio.wait_for(client.delete_server(SID), timeout=5)).kind is Verdict.ACCEPTED
    await client.aclose()


# --- compressed answers -------------------------------------------------------------------------


async def test_every_request_asks_for_an_uncompressed_answer(tmp_path: Path) -> None:
    """A compressed answer is inflated before any size cap can apply; ask for none at all.
    (Accept-Encoding is not part of SCP's signature.)"""
    seen: list[httpx.Request] = []

    def handler(request: httpx.Request) -> httpx.Response:
        seen.append(request)
        if request.url.path == "/":
            return httpx.Response(200, json=VERSIONS)
        return httpx.Response(404)

    client = make(handler, tmp_path)
    await client.delete_server(SID)
    await client.get_server(SID)
    await client.list_servers_probe()
    await client.list_versions()
    await client.aclose()
    assert len(seen) >= 4
    assert {r.headers.get("accept-encoding") for r in seen} == {"identity"}
