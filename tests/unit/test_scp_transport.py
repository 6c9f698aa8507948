"""The SCP client's aiohttp transport, against real loopback sockets.

It must carry a request exactly as httpx built and the client signed it, hand the body on raw,
and turn every way a connection can fail into the httpx exception that names it, so that the
client's words for a failure are the same whichever pool carried the request.
"""

from __future__ import annotations

import asyncio
import datetime
import gzip
import ipaddress
import ssl
from pathlib import Path

import aiohttp
import httpx
import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID
from pydantic import SecretStr

from scp_operator.credentials import CredentialsProvider
from scp_operator.scp import transport
from scp_operator.scp.answers import MAX_BODY
from scp_operator.scp.client import ScpClient
from scp_operator.scp.outcomes import Verdict
from tests.unit.loopback import Serve, serving

SID = "2a9be312-5d4b-4bc8-b2ae-35100fa9241f"
VERSIONS = b'{"versions":[{"id":"v1.3","status":"CURRENT","not_before":null}]}'


def answering(answer: bytes, heads: list[bytes]) -> Serve:
    """Answer every request on a connection with ``answer``, recording each request head."""

    async def serve(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        while True:
            heads.append(await reader.readuntil(b"\r\n\r\n"))
            writer.write(answer)
            await writer.drain()

    return serve


def scp_client(base: str, tmp_path: Path, timeout: float = 5.0) -> ScpClient:
    return ScpClient(
        credentials=CredentialsProvider(
            access_key=SecretStr("AK"), secret_key=SecretStr("SK"), directory=None, home=tmp_path
        ),
        base_url=lambda region: base,
        api_version="1.3",
        timeout=timeout,
    )


def test_without_a_proxy_the_client_uses_the_aiohttp_pool(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    for name in ("HTTP_PROXY", "HTTPS_PROXY", "ALL_PROXY", "http_proxy", "https_proxy"):
        monkeypatch.delenv(name, raising=False)
    client = scp_client("http://127.0.0.1:1", tmp_path)
    assert isinstance(client._http._transport, transport.AiohttpTransport)


def test_with_a_proxy_in_the_environment_httpx_keeps_its_own_pool(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """httpx honours HTTPS_PROXY and NO_PROXY only with its own pool; that behaviour is kept."""
    monkeypatch.setenv("HTTPS_PROXY", "http://proxy.test:3128")
    assert not transport.direct()
    client = scp_client("https://scp.test", tmp_path)
    assert not isinstance(client._http._transport, transport.AiohttpTransport)
    mounted = client._http._transport_for_url(httpx.URL("https://scp.test/v1/servers/x"))
    assert mounted is not client._http._transport  # the proxy's transport


async def test_the_request_arrives_exactly_as_signed_and_the_body_comes_back_raw(
    tmp_path: Path,
) -> None:
    """The URL keeps its exact encoding, the signed headers arrive, and a body the server
    compressed anyway reaches the client's capped reader still compressed."""
    detail = b'{"errors":[{"detail":"Cannot terminate a locked server"}]}'
    packed = gzip.compress(detail)
    conflict = (
        b"HTTP/1.1 409 Conflict\r\nContent-Encoding: gzip\r\n"
        b"Content-Length: " + str(len(packed)).encode() + b"\r\n\r\n" + packed
    )
    heads: list[bytes] = []
    pool = transport.AiohttpTransport(ssl_context=ssl.create_default_context(), max_connections=2)
    async with (
        serving(answering(conflict, heads)) as base,
        httpx.AsyncClient(transport=pool) as client,
    ):
        url = f"{base}/v1/servers/a%2Fb?x=%7E"
        request = client.build_request("DELETE", url, headers={"Scp-Signature": "c2ln"})
        response = await client.send(request, stream=True)
        raw = b"".join([chunk async for chunk in response.aiter_raw()])
        await response.aclose()
    assert response.status_code == 409
    assert response.headers["content-encoding"] == "gzip"
    assert raw == packed  # not inflated by the transport
    head = heads[0].decode("ascii")
    assert head.startswith("DELETE /v1/servers/a%2Fb?x=%7E HTTP/1.1\r\n")
    assert "Scp-Signature: c2ln\r\n" in head
    assert f"Host: {base.removeprefix('http://')}\r\n" in head


async def test_a_read_connection_is_reused_and_one_left_mid_body_is_not(tmp_path: Path) -> None:
    """A body read to its end returns its connection to the pool; a body the client stopped
    reading (the cap) closes it, or its unread rest would be taken for the next answer."""
    small = b"HTTP/1.1 409 Conflict\r\nContent-Length: 2\r\n\r\n{}"
    endless_length = 10 * MAX_BODY
    huge = b"HTTP/1.1 500 Oops\r\nContent-Length: " + str(endless_length).encode() + b"\r\n\r\n"
    seen: list[tuple[int, bytes]] = []  # (connection number, path) per request
    opened = 0

    async def serve(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        nonlocal opened
        number, opened = opened, opened + 1
        while True:
            head = await reader.readuntil(b"\r\n\r\n")
            seen.append((number, head.split(b" ")[1]))
            if b"/huge" in head:
                writer.write(huge)
                for _ in range(endless_length // 65536):
                    writer.write(b"x" * 65536)
                    await writer.drain()
            else:
                writer.write(small)
                await writer.drain()

    async with serving(serve) as base:
        pool = transport.AiohttpTransport(
            ssl_context=ssl.create_default_context(), max_connections=4
        )
        async with httpx.AsyncClient(transport=pool) as client:
            for path in ("/a", "/b", "/huge", "/c"):
                response = await client.send(client.build_request("GET", base + path), stream=True)
                async for _ in response.aiter_raw():
                    if path == "/huge":
                        break  # the client stops reading, as read_capped does at its cap
                await response.aclose()
    # /a, /b and /huge shared one pooled connection; /c could not have it back.
    assert seen == [(0, b"/a"), (0, b"/b"), (0, b"/huge"), (1, b"/c")]


async def test_refused_connections_are_named_as_such(tmp_path: Path) -> None:
    srv = await asyncio.start_server(lambda r, w: None, "127.0.0.1", 0)
    port = srv.sockets[0].getsockname()[1]
    srv.close()
    await srv.wait_closed()
    client = scp_client(f"http://127.0.0.1:{port}", tmp_path)
    try:
        outcome = await client.delete_server(SID)
    finally:
        await client.aclose()
    assert (outcome.kind, outcome.detail) == (Verdict.UNAVAILABLE, "cannot connect to SCP")


async def hang_up(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    await reader.readuntil(b"\r\n\r\n")


async def not_http(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    await reader.readuntil(b"\r\n\r\n")
    writer.write(b"SSH-2.0-OpenSSH_9.6\r\n\r\n")
    await writer.drain()


async def cut_short(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    await reader.readuntil(b"\r\n\r\n")
    writer.write(b'HTTP/1.1 409 Conflict\r\nContent-Length: 100\r\n\r\n{"errors"')
    await writer.drain()


async def silent(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    await reader.readuntil(b"\r\n\r\n")
    await asyncio.sleep(30)


@pytest.mark.parametrize(
    ("serve", "words"),
    [
        (hang_up, "SCP closed the connection"),
        (not_http, "SCP closed the connection"),
        (cut_short, "SCP closed the connection"),
        (silent, "SCP did not answer in time"),
    ],
    ids=["hang-up", "not-http", "cut-short", "silent"],
)
async def test_a_broken_answer_is_named_the_same_way_as_with_httpx_own_pool(
    tmp_path: Path, serve: Serve, words: str
) -> None:
    """(Run with httpx's own pool, the same four cases give the same words.)"""
    async with serving(serve) as base:
        client = scp_client(base, tmp_path, timeout=0.5)
        try:
            outcome = await asyncio.wait_for(client.delete_server(SID), 10)
        finally:
            await client.aclose()
    assert (outcome.kind, outcome.detail) == (Verdict.UNAVAILABLE, words)


async def test_a_real_answer_passes_through_the_client(tmp_path: Path) -> None:
    """End to end through the client: the endpoint is verified on its root, then the DELETE."""
    async with serving(scp_answers()) as base:
        client = scp_client(base, tmp_path)
        try:
            outcome = await client.delete_server(SID)
        finally:
            await client.aclose()
    assert outcome.kind is Verdict.ACCEPTED


@pytest.mark.parametrize(
    ("failure", "expected"),
    [
        (aiohttp.ConnectionTimeoutError(), httpx.ConnectTimeout),
        (aiohttp.SocketTimeoutError(), httpx.ReadTimeout),
        (aiohttp.ServerTimeoutError(), httpx.ReadTimeout),
        (TimeoutError(), httpx.ReadTimeout),
        (aiohttp.ServerDisconnectedError(), httpx.RemoteProtocolError),
        (aiohttp.ClientPayloadError("cut"), httpx.RemoteProtocolError),
        (aiohttp.ClientOSError(104, "reset"), httpx.ReadError),
        (ConnectionResetError(104, "reset"), httpx.ReadError),
        (aiohttp.ClientConnectionError(), httpx.ReadError),
        (ValueError("odd"), httpx.TransportError),
    ],
)
def test_each_failure_kind_translates_to_its_httpx_kind(
    failure: Exception, expected: type[httpx.TransportError]
) -> None:
    translated = transport.translate(failure)
    assert type(translated) is expected
    assert str(translated) == type(failure).__name__  # the kind only: no URL, no headers


@pytest.fixture(scope="module")
def certificate(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    """A self-signed serving certificate for 127.0.0.1, valid for a day: (cert, key) PEM files."""
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "127.0.0.1")])
    now = datetime.datetime.now(datetime.UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(days=1))
        .add_extension(
            x509.SubjectAlternativeName([x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]),
            critical=False,
        )
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .sign(key, hashes.SHA256())
    )
    where = tmp_path_factory.mktemp("tls")
    cert_file, key_file = where / "cert.pem", where / "key.pem"
    cert_file.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_file.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    return cert_file, key_file


def scp_answers(version_list: bytes = VERSIONS) -> Serve:
    """SCP as the client needs it: a version list at the root, 202 to anything else."""
    accepted = b"HTTP/1.1 202 Accepted\r\nContent-Length: 0\r\n\r\n"
    versions = (
        b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: "
        + str(len(version_list)).encode()
        + b"\r\n\r\n"
        + version_list
    )

    async def serve(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        while True:
            head = await reader.readuntil(b"\r\n\r\n")
            writer.write(versions if head.startswith(b"GET / ") else accepted)
            await writer.drain()

    return serve


async def test_tls_is_verified_against_the_ca_bundle_and_refused_without_it(
    tmp_path: Path, certificate: tuple[Path, Path]
) -> None:
    """The transport uses the client's SSL context: SCP_CA_BUNDLE is trusted, and a server whose
    certificate nothing vouches for is never talked to."""
    cert, key = certificate
    tls = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    tls.load_cert_chain(cert, key)
    async with serving(scp_answers(), tls) as base:
        for bundle, expected in ((cert, Verdict.ACCEPTED), (None, Verdict.UNAVAILABLE)):
            client = ScpClient(
                credentials=CredentialsProvider(
                    access_key=SecretStr("AK"),
                    secret_key=SecretStr("SK"),
                    directory=None,
                    home=tmp_path,
                ),
                base_url=lambda region: base,
                api_version="1.3",
                ca_bundle=bundle,
            )
            assert isinstance(client._http._transport, transport.AiohttpTransport)
            try:
                outcome = await client.delete_server(SID)
            finally:
                await client.aclose()
            assert outcome.kind is expected, outcome.describe()
            if bundle is None:
                assert outcome.detail == "cannot connect to SCP"
