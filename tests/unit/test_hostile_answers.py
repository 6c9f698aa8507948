"""Hostile and broken input: what SCP (or whatever answers in its place) sends, and broken
settings and credentials.

Each case must end in a clear outcome the decision table knows — never an exception out of the
client (a handler would lose its condition and event to a traceback), never a release the table
does not allow (only 202 and a verified 404 count), and never an unbounded read or wait.
"""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys
import time
import tracemalloc
import zlib
from collections.abc import AsyncIterator, Callable
from pathlib import Path

import httpx
import pytest
from pydantic import SecretStr

from scp_emulator.faults import GARBAGE_BODY, HTML_PAGE
from scp_operator import settings
from scp_operator.credentials import CredentialsProvider, CredentialsUnavailable
from scp_operator.decision import Action, Situation, decide
from scp_operator.scp.answers import MAX_BODY, MAX_NAME, MAX_STATE, describe_body
from scp_operator.scp.client import ScpClient
from scp_operator.scp.outcomes import MAX_DETAIL, Outcome, Verdict
from tests.unit.loopback import Serve, serving

SID = "2a9be312-5d4b-4bc8-b2ae-35100fa9241f"
BASE = "https://scp.test"  # plain http:// is refused for any host but loopback
VERSIONS = {"versions": [{"id": "v1.3", "status": "CURRENT", "not_before": None}]}
SECRET = "HOSTILE-S3CRET-4b1d"
Handler = Callable[[httpx.Request], httpx.Response]


def client(handler: Handler, tmp_path: Path, *, access_key: str = "AK", **kw: object) -> ScpClient:
    return ScpClient(
        credentials=CredentialsProvider(
            access_key=SecretStr(access_key),
            secret_key=SecretStr(SECRET),
            directory=None,
            home=tmp_path,
        ),
        base_url=lambda region: BASE,
        api_version="1.3",
        transport=httpx.MockTransport(handler),
        **kw,  # type: ignore[arg-type]
    )


def scp(answer: Handler) -> Handler:
    """A verified SCP endpoint (its root serves the version list) that answers calls so."""

    def handler(request: httpx.Request) -> httpx.Response:
        if request.url.path == "/":
            return httpx.Response(200, json=VERSIONS)
        return answer(request)

    return handler


async def delete(handler: Handler, tmp_path: Path, access_key: str = "AK") -> Outcome:
    c = client(scp(handler), tmp_path, access_key=access_key)
    try:
        return await c.delete_server(SID)
    finally:
        await c.aclose()


async def get(handler: Handler, tmp_path: Path) -> Outcome:
    c = client(scp(handler), tmp_path)
    try:
        return await c.get_server(SID)
    finally:
        await c.aclose()


def released(outcome: Outcome) -> bool:
    return decide(Situation(server_id=SID, outcome=outcome)).action is Action.RELEASE


def html(status: int) -> bytes:
    return HTML_PAGE.format(status=status).encode()


# --- answers that are not what SCP documents --------------------------------------------------

CASES = [
    # (id, status, content type, body, expected kind)
    ("html-502-from-a-proxy", 502, "text/html", html(502), Verdict.UNAVAILABLE),
    ("html-409", 409, "text/html", html(409), Verdict.CONFLICT),
    ("html-403-from-a-waf", 403, "text/html", html(403), Verdict.FORBIDDEN),
    ("garbage-500", 500, "application/json", GARBAGE_BODY, Verdict.UNAVAILABLE),
    ("invalid-utf8-409", 409, "application/json", b'{"detail": "\xff\xfe"}', Verdict.CONFLICT),
    (
        "json-as-text-plain",
        409,
        "text/plain",
        b'{"errors":[{"detail":"locked"}]}',
        Verdict.CONFLICT,
    ),
    ("json-as-xml", 409, "application/xml", b'{"message":"locked"}', Verdict.CONFLICT),
    ("empty-json-409", 409, "application/json", b"", Verdict.CONFLICT),
    ("200-to-a-delete", 200, "application/json", b"{}", Verdict.REJECTED),
    ("204-to-a-delete", 204, "", b"", Verdict.REJECTED),
    ("418-with-html", 418, "text/html", html(418), Verdict.REJECTED),
    ("json-null", 500, "application/json", b"null", Verdict.UNAVAILABLE),
    ("json-number", 409, "application/json", b"42", Verdict.CONFLICT),
    ("errors-not-a-list", 409, "application/json", b'{"errors": "locked"}', Verdict.CONFLICT),
    (
        "details-of-every-type",
        409,
        "application/json",
        b'{"errors": [{"detail": [1, null, {"a": 2}, "locked"]}, 7, null], "message": 3}',
        Verdict.CONFLICT,
    ),
]


@pytest.mark.parametrize(
    ("status", "content_type", "body", "kind"),
    [pytest.param(*case[1:], id=case[0]) for case in CASES],
)
async def test_unexpected_answers_map_to_a_kind_and_never_release(
    tmp_path: Path, status: int, content_type: str, body: bytes, kind: Verdict
) -> None:
    headers = {"content-type": content_type} if content_type else {}
    outcome = await delete(
        lambda r: httpx.Response(status, content=body, headers=headers), tmp_path
    )
    assert outcome.kind is kind
    assert outcome.status == status
    words = outcome.describe()
    assert "<html" not in words
    assert "<center>" not in words
    assert "\x00" not in words
    assert SECRET not in words
    assert not released(outcome)
    assert decide(Situation(server_id=SID, outcome=outcome)).delay is not None


async def test_an_html_page_is_summarised_not_quoted(tmp_path: Path) -> None:
    outcome = await delete(lambda r: httpx.Response(502, content=html(502)), tmp_path)
    assert outcome.detail == "the answer was not JSON"
    d = decide(Situation(server_id=SID, outcome=outcome))
    assert (d.action, d.reason) == (Action.HOLD, "ScpUnavailable")
    assert "502" in d.message


async def test_a_parsable_detail_is_shown_whatever_the_content_type(tmp_path: Path) -> None:
    body = b'{"errors":[{"status":409,"detail":"Cannot terminate a locked server"}]}'
    outcome = await delete(
        lambda r: httpx.Response(409, content=body, headers={"content-type": "text/html"}),
        tmp_path,
    )
    assert outcome.detail == "Cannot terminate a locked server"


async def test_a_huge_error_detail_is_shortened(tmp_path: Path) -> None:
    body = json.dumps({"errors": [{"detail": "locked " * 50_000}]}).encode()
    outcome = await delete(lambda r: httpx.Response(409, content=body), tmp_path)
    assert outcome.kind is Verdict.CONFLICT
    assert outcome.detail is not None
    assert len(outcome.detail) <= MAX_DETAIL


async def test_a_delete_is_never_redirected_to_another_url(tmp_path: Path) -> None:
    seen: list[str] = []

    def handler(request: httpx.Request) -> httpx.Response:
        seen.append(str(request.url))
        return httpx.Response(307, headers={"location": "http://elsewhere.test/v1/servers/x"})

    outcome = await delete(handler, tmp_path)
    assert outcome.kind is Verdict.REJECTED
    assert seen == [f"{BASE}/v1/servers/{SID}"]
    assert not released(outcome)


@pytest.mark.parametrize(("status", "kind"), [(409, Verdict.CONFLICT), (202, Verdict.ACCEPTED)])
async def test_a_body_claiming_gzip_that_is_not_gzip_keeps_the_status(
    tmp_path: Path, status: int, kind: Verdict
) -> None:
    """The status line arrived intact; only the body is unreadable. (This test used to expect a
    transport error with no status, which would lose a 202's acceptance.)"""
    outcome = await delete(
        lambda r: httpx.Response(
            status,
            stream=httpx.ByteStream(b"not gzip at all"),
            headers={"content-encoding": "gzip"},
        ),
        tmp_path,
    )
    assert outcome.kind is kind
    assert outcome.status == status
    assert released(outcome) == (status == 202)
    if status != 202:
        assert "compressed body is broken" in (outcome.detail or "")


@pytest.mark.parametrize(
    ("body", "content_type"),
    [
        (html(200), "text/html"),
        (b"[]", "application/json"),
        (b'"ACTIVE"', "application/json"),
        (GARBAGE_BODY, "application/json"),
        (b"", "application/json"),
    ],
    ids=["html", "json-list", "json-string", "garbage", "empty"],
)
async def test_a_200_read_without_a_json_object_is_not_a_server(
    tmp_path: Path, body: bytes, content_type: str
) -> None:
    outcome = await get(
        lambda r: httpx.Response(200, content=body, headers={"content-type": content_type}),
        tmp_path,
    )
    assert outcome.kind is Verdict.REJECTED
    assert "without a JSON object" in (outcome.detail or "")


async def test_a_server_object_with_fields_of_the_wrong_type_is_observed_as_unknown(
    tmp_path: Path,
) -> None:
    weird = {"id": SID, "name": ["x"], "state": {"a": 1}, "locked": "yes"}
    outcome = await get(lambda r: httpx.Response(200, json=weird), tmp_path)
    assert outcome.kind is Verdict.FOUND
    assert describe_body(outcome.body) == {"name": None, "state": None, "locked": None}


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("2", 2.0),
        ("soon", None),
        ("-5", None),
        ("1.5", None),
        ("", None),
        ("99999999999999999999999", 3600.0),
        ("Wed, 21 Oct 2015 07:28:00 GMT", 0.0),  # a date in the past: retry now (backoff rules)
        ("Wed, 21 Oct 9999 07:28:00 GMT", 3600.0),
        ("Wed, 32 Foo 2015 77:28:00 XYZ", None),
    ],
)
async def test_retry_after_of_any_shape_gives_a_bounded_wait(
    tmp_path: Path, value: str, expected: float | None
) -> None:
    outcome = await delete(lambda r: httpx.Response(429, headers={"retry-after": value}), tmp_path)
    assert outcome.kind is Verdict.THROTTLED
    assert outcome.retry_after == expected
    d = decide(Situation(server_id=SID, outcome=outcome))
    assert d.delay is not None
    assert 1 <= d.delay <= 3600


# --- huge and endless bodies ------------------------------------------------------------------


class Endless(httpx.AsyncByteStream):
    """A body that never ends, counting what the client pulled from it."""

    def __init__(self, chunk: bytes, limit: int | None = None) -> None:
        self.chunk = chunk
        self.limit = limit
        self.sent = 0

    async def __aiter__(self) -> AsyncIterator[bytes]:
        while self.limit is None or self.sent < self.limit:
            self.sent += len(self.chunk)
            yield self.chunk


@pytest.mark.parametrize("status", [409, 500, 202])
async def test_an_endless_body_is_read_only_up_to_the_cap(tmp_path: Path, status: int) -> None:
    stream = Endless(b"<html>" + b"x" * 65_530)
    started = time.monotonic()
    outcome = await asyncio.wait_for(
        delete(lambda r: httpx.Response(status, stream=stream), tmp_path), timeout=30
    )
    assert time.monotonic() - started < 30
    assert stream.sent <= MAX_BODY + 2 * len(stream.chunk)
    assert outcome.status == status
    assert released(outcome) == (status == 202)


async def test_a_fifty_megabyte_error_page_costs_at_most_a_megabyte(tmp_path: Path) -> None:
    stream = Endless(b"y" * 1_048_576, limit=50 * 1_048_576)
    outcome = await delete(lambda r: httpx.Response(503, stream=stream), tmp_path)
    assert outcome.kind is Verdict.UNAVAILABLE
    assert stream.sent <= 2 * 1_048_576
    assert outcome.detail == "the answer was not JSON"


async def test_a_deeply_nested_json_error_body_is_just_not_json(tmp_path: Path) -> None:
    outcome = await delete(lambda r: httpx.Response(409, content=b"[" * 100_000), tmp_path)
    assert outcome.kind is Verdict.CONFLICT
    assert outcome.detail == "the answer was not JSON"


async def test_a_deeply_nested_version_list_makes_the_endpoint_unverified(tmp_path: Path) -> None:
    def handler(request: httpx.Request) -> httpx.Response:
        if request.url.path == "/":
            return httpx.Response(200, content=b"[" * 100_000)
        return httpx.Response(404)

    c = client(handler, tmp_path)
    try:
        outcome = await c.delete_server(SID)
    finally:
        await c.aclose()
    assert outcome.kind is Verdict.REJECTED  # an unverified 404 never releases


# --- slow drips -------------------------------------------------------------------------------


def dripping(head: bytes, drip: bytes, every: float) -> Serve:
    """A server that sends ``head`` at once, then one byte of ``drip`` per tick."""

    async def serve(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await reader.readuntil(b"\r\n\r\n")
        writer.write(head)
        await writer.drain()
        for i in range(len(drip)):
            writer.write(drip[i : i + 1])
            await writer.drain()
            await asyncio.sleep(every)

    return serve


def drip_client(base: str, tmp_path: Path, timeout: float) -> ScpClient:
    return ScpClient(
        credentials=CredentialsProvider(
            access_key=SecretStr("AK"), secret_key=SecretStr(SECRET), directory=None, home=tmp_path
        ),
        base_url=lambda region: base,
        api_version="1.3",
        timeout=timeout,
    )


async def test_a_server_that_stops_mid_answer_times_out(tmp_path: Path) -> None:
    head = b"HTTP/1.1 409 Conflict\r\nContent-Length: 100\r\n\r\n"
    async with serving(dripping(head, b"{", every=10)) as base:
        c = drip_client(base, tmp_path, timeout=0.5)
        try:
            outcome = await asyncio.wait_for(c.delete_server(SID), timeout=10)
        finally:
            await c.aclose()
    assert outcome.kind is Verdict.UNAVAILABLE
    assert outcome.detail == "SCP did not answer in time"


async def test_a_slow_drip_is_cut_off_by_a_deadline_for_the_whole_answer(tmp_path: Path) -> None:
    head = b"HTTP/1.1 409 Conflict\r\nContent-Type: application/json\r\nContent-Length: 400\r\n\r\n"
    async with serving(dripping(head, b" " * 400, every=0.2)) as base:
        c = drip_client(base, tmp_path, timeout=0.5)
        try:
            # 0.5 s per request; a whole-answer deadline of a few timeouts would end it by 3 s
            outcome = await asyncio.wait_for(c.delete_server(SID), timeout=4)
        finally:
            await c.aclose()
    assert outcome.kind is Verdict.UNAVAILABLE


async def test_slowly_dripped_headers_are_cut_off_too(tmp_path: Path) -> None:
    head = b"HTTP/1.1 409 Conflict\r\n"
    async with serving(dripping(head, b"X-Drip: " + b"a" * 400, every=0.2)) as base:
        c = drip_client(base, tmp_path, timeout=0.5)
        try:
            outcome = await asyncio.wait_for(c.delete_server(SID), timeout=4)
        finally:
            await c.aclose()
    assert outcome.kind is Verdict.UNAVAILABLE


# --- credentials that cannot be sent ----------------------------------------------------------


@pytest.mark.parametrize("access_key", ["\u201cAK\u201d", "AK\u200b"], ids=["quotes", "zwsp"])
async def test_a_key_with_characters_http_cannot_carry_is_a_credentials_problem(
    tmp_path: Path, access_key: str
) -> None:
    outcome = await delete(lambda r: httpx.Response(202), tmp_path, access_key=access_key)
    assert outcome.kind is Verdict.NO_CREDENTIALS
    assert access_key not in (outcome.detail or "")


# --- broken settings --------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("name", "value"),
    [
        ("SCP_OPERATOR_MAX_DELETIONS_PER_WINDOW", "-1"),
        ("SCP_OPERATOR_MAX_DELETIONS_PER_WINDOW", "ten"),
        ("SCP_OPERATOR_DELETION_WINDOW", "0"),
        ("SCP_OPERATOR_DRY_RUN", "perhaps"),
        ("SCP_OPERATOR_METRICS_PORT", "70000"),
        ("SCP_OPERATOR_MAX_CONCURRENT_REQUESTS", "0"),
        ("SCP_OPERATOR_MAX_REQUESTS_PER_SECOND", "-2"),
        ("SCP_OPERATOR_HOLD_RECHECK_INTERVAL", "0"),
        ("SCP_ENDPOINT", "https://scp.test/?x=1"),
        ("SCP_ENDPOINT", "scp.test"),
        ("SCP_CA_BUNDLE", "."),
    ],
)
def test_a_broken_operator_setting_names_its_variable(
    monkeypatch: pytest.MonkeyPatch, name: str, value: str
) -> None:
    monkeypatch.setenv(name, value)
    with pytest.raises(settings.SettingsError, match=name):
        settings.load()


def test_a_credentials_dir_that_is_a_file_names_the_variable(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    (tmp_path / "file").write_text("x")
    monkeypatch.setenv("SCP_CREDENTIALS_DIR", str(tmp_path / "file"))
    with pytest.raises(settings.SettingsError, match="SCP_CREDENTIALS_DIR"):
        settings.load()


@pytest.mark.parametrize("blank", ["", "   "])
def test_a_blank_key_in_the_environment_stops_startup(
    monkeypatch: pytest.MonkeyPatch, blank: str
) -> None:
    monkeypatch.setenv("SCP_ACCESS_KEY", blank)
    monkeypatch.setenv("SCP_SECRET_KEY", SECRET)
    with pytest.raises(settings.SettingsError, match="SCP_ACCESS_KEY") as info:
        settings.load()
    assert SECRET not in str(info.value)


def run_cli(*args: str, **env: str) -> subprocess.CompletedProcess[str]:
    base = {k: v for k, v in os.environ.items() if not k.startswith("SCP_")}
    exe = Path(sys.executable).parent / "scp-operator"
    return subprocess.run(
        [str(exe), *args],
        capture_output=True,
        text=True,
        timeout=60,
        env={**base, "KUBECONFIG": os.devnull, **env},
        check=False,
    )


@pytest.mark.parametrize(
    ("name", "value"),
    [
        ("SCP_OPERATOR_MAX_DELETIONS_PER_WINDOW", "-1"),
        ("SCP_CREDENTIALS_DIR", "/nonexistent/scp-credentials"),
    ],
)
def test_run_stops_with_exit_2_naming_the_variable(name: str, value: str) -> None:
    out = run_cli(
        "run", "--standalone", **{name: value, "SCP_ACCESS_KEY": "AK", "SCP_SECRET_KEY": SECRET}
    )
    assert out.returncode == 2, out.stderr
    assert name in out.stderr
    assert "Traceback" not in out.stderr
    assert SECRET not in out.stderr + out.stdout
    assert len(out.stderr.strip().splitlines()) == 1


# --- broken credential sources ----------------------------------------------------------------


def directory_provider(directory: Path, tmp_path: Path) -> CredentialsProvider:
    return CredentialsProvider(
        access_key=None, secret_key=None, directory=directory, home=tmp_path / "home"
    )


@pytest.fixture
def mount(tmp_path: Path) -> Path:
    d = tmp_path / "mount"
    d.mkdir()
    (d / "access-key").write_text("AK\n")
    (d / "secret-key").write_text(SECRET + "\n")
    return d


def test_a_key_file_that_is_a_directory(mount: Path, tmp_path: Path) -> None:
    (mount / "secret-key").unlink()
    (mount / "secret-key").mkdir()
    with pytest.raises(CredentialsUnavailable, match="SCP_CREDENTIALS_DIR: cannot read"):
        directory_provider(mount, tmp_path).get()


def test_a_dangling_symlink_mid_rotation(mount: Path, tmp_path: Path) -> None:
    """Kubernetes swaps a ``..data`` symlink on rotation; a reader may see it dangling."""
    (mount / "secret-key").unlink()
    (mount / "secret-key").symlink_to(mount / "..data" / "secret-key")
    with pytest.raises(CredentialsUnavailable, match="cannot read") as info:
        directory_provider(mount, tmp_path).get()
    assert SECRET not in str(info.value)


def test_an_unreadable_mount_says_so_without_the_secret(
    mount: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Permission denied (simulated: root, as in CI containers, reads through chmod 000)."""
    original = Path.read_text

    def denied(self: Path, *args: object, **kwargs: object) -> str:
        if self.parent == mount:
            raise PermissionError(13, "Permission denied", str(self))
        return original(self, *args, **kwargs)  # type: ignore[arg-type]

    monkeypatch.setattr(Path, "read_text", denied)
    with pytest.raises(CredentialsUnavailable, match="PermissionError") as info:
        directory_provider(mount, tmp_path).get()
    assert SECRET not in str(info.value)


@pytest.mark.skipif(os.geteuid() == 0, reason="root reads files whatever their mode")
def test_an_unreadable_mount_by_mode(mount: Path, tmp_path: Path) -> None:
    (mount / "secret-key").chmod(0)
    with pytest.raises(CredentialsUnavailable, match="cannot read"):
        directory_provider(mount, tmp_path).get()


@pytest.mark.parametrize(
    "content",
    [b"\xff\xfe\x00A\x00K", b"   \n\t ", b""],
    ids=["utf16-or-binary", "blank", "empty"],
)
def test_a_key_file_with_unusable_content(mount: Path, tmp_path: Path, content: bytes) -> None:
    (mount / "access-key").write_bytes(content)
    with pytest.raises(CredentialsUnavailable, match="SCP_CREDENTIALS_DIR"):
        directory_provider(mount, tmp_path).get()


@pytest.mark.parametrize(
    "content",
    [
        b"",
        b"\xef\xbb\xbf" + json.dumps({"access-key": "AK", "secret-key": SECRET}).encode(),
        b"\xff\xfe not utf-8",
        json.dumps({"access-key": 5, "secret-key": SECRET}).encode(),
        json.dumps({"access-key": "AK", "secret-key": ["x"]}).encode(),
        json.dumps({"access-key": "  ", "secret-key": SECRET}).encode(),
        json.dumps({"credentials": {"access-key": "AK", "secret-key": SECRET}}).encode(),
        b"null",
    ],
    ids=[
        "empty",
        "utf8-bom",
        "not-utf8",
        "number-key",
        "list-secret",
        "blank-key",
        "nested",
        "null",
    ],
)
def test_a_malformed_credentials_json_is_a_clear_error(tmp_path: Path, content: bytes) -> None:
    conf = tmp_path / ".scpconf"
    conf.mkdir()
    (conf / "credentials.json").write_bytes(content)
    provider = CredentialsProvider(access_key=None, secret_key=None, directory=None, home=tmp_path)
    with pytest.raises(CredentialsUnavailable, match=r"credentials\.json") as info:
        provider.get()
    assert SECRET not in str(info.value)


def test_a_credentials_json_that_is_a_directory(tmp_path: Path) -> None:
    (tmp_path / ".scpconf" / "credentials.json").mkdir(parents=True)
    provider = CredentialsProvider(access_key=None, secret_key=None, directory=None, home=tmp_path)
    with pytest.raises(CredentialsUnavailable, match="not readable JSON"):
        provider.get()


async def test_broken_credentials_hold_the_object_without_a_call(tmp_path: Path) -> None:
    calls: list[httpx.Request] = []

    def handler(request: httpx.Request) -> httpx.Response:
        calls.append(request)
        return httpx.Response(202)

    c = ScpClient(
        credentials=CredentialsProvider(
            access_key=None, secret_key=None, directory=tmp_path / "missing", home=tmp_path
        ),
        base_url=lambda region: BASE,
        api_version="1.3",
        transport=httpx.MockTransport(handler),
    )
    try:
        outcome = await c.delete_server(SID)
    finally:
        await c.aclose()
    assert calls == []
    assert outcome.kind is Verdict.NO_CREDENTIALS
    d = decide(Situation(server_id=SID, outcome=outcome))
    assert (d.action, d.reason) == (Action.HOLD, "CredentialsUnavailable")


# --- answers whose status is fine but whose details break parsing -----------------------------


@pytest.mark.parametrize(
    ("status", "kind"),
    [(202, Verdict.ACCEPTED), (429, Verdict.THROTTLED), (409, Verdict.CONFLICT)],
)
async def test_a_retry_after_with_a_superscript_digit_keeps_the_status(
    tmp_path: Path, status: int, kind: Verdict
) -> None:
    """``Retry-After: ²`` passes ``str.isdigit`` and fails ``float``: the answer still counts."""
    outcome = await delete(
        lambda r: httpx.Response(status, headers=[(b"retry-after", "²".encode())]), tmp_path
    )
    assert outcome.kind is kind
    assert outcome.status == status
    assert outcome.retry_after is None
    assert released(outcome) == (status == 202)


# --- hostile server fields ----------------------------------------------------------------------


async def test_a_huge_server_name_and_state_are_bounded_and_stripped_of_control_characters(
    tmp_path: Path,
) -> None:
    """A name or state of up to a megabyte must not reach the object's status and messages."""
    hostile = {
        "id": SID,
        "name": "web\x1b[31m\n\x00" + "n" * 900_000,
        "state": "ACTIVE\r\n" + "s" * 50_000,
        "locked": True,
    }
    outcome = await get(lambda r: httpx.Response(200, json=hostile), tmp_path)
    assert outcome.kind is Verdict.FOUND
    seen = describe_body(outcome.body)
    assert seen["locked"] is True
    name, state = seen["name"], seen["state"]
    assert len(name) == MAX_NAME
    assert name.startswith("web[31mn")
    assert name.endswith("…")
    assert len(state) == MAX_STATE
    assert state.startswith("ACTIVEsss")
    assert state.endswith("…")
    for text in (name, state):
        assert not any(ord(c) < 0x20 or ord(c) == 0x7F for c in text)


def test_short_server_fields_are_kept_as_they_are() -> None:
    body = {"name": "web-1 (prod)", "state": "SHUTOFF", "locked": False}
    assert describe_body(body) == body
    exact = {"name": "n" * MAX_NAME, "state": "s" * MAX_STATE, "locked": None}
    assert describe_body(exact) == exact


# --- compressed bodies --------------------------------------------------------------------------


def compressed(size: int, wbits: int) -> bytes:
    """``size`` zero bytes, compressed without ever holding them all."""
    packer = zlib.compressobj(9, zlib.DEFLATED, wbits)
    block = bytes(1 << 20)
    parts = [packer.compress(block) for _ in range(size // len(block))]
    return b"".join([*parts, packer.flush()])


@pytest.fixture(scope="module")
def gzip_bomb() -> bytes:
    return compressed(200 * 1_048_576, zlib.MAX_WBITS | 16)  # 200 MB of zeros, ~200 kB


@pytest.mark.parametrize(("status", "kind"), [(409, Verdict.CONFLICT), (202, Verdict.ACCEPTED)])
async def test_a_gzip_bomb_keeps_its_status_and_never_inflates_past_the_cap(
    tmp_path: Path, gzip_bomb: bytes, status: int, kind: Verdict
) -> None:
    """Inflated whole (as httpx's decoder does chunk by chunk), this body is 200 MB."""
    assert len(gzip_bomb) < 1_000_000

    def handler(request: httpx.Request) -> httpx.Response:
        return httpx.Response(
            status,
            stream=httpx.ByteStream(gzip_bomb),
            headers={"content-encoding": "gzip", "content-type": "application/json"},
        )

    tracemalloc.start()
    try:
        outcome = await delete(handler, tmp_path)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert outcome.kind is kind
    assert outcome.status == status
    assert peak < 20 * 1_048_576, f"peak {peak / 1_048_576:.0f} MB"


@pytest.mark.parametrize(
    ("coding", "wbits"),
    [("gzip", zlib.MAX_WBITS | 16), ("deflate", zlib.MAX_WBITS), ("deflate", -zlib.MAX_WBITS)],
    ids=["gzip", "zlib-deflate", "raw-deflate"],
)
async def test_a_compressed_answer_sent_anyway_is_still_read(
    tmp_path: Path, coding: str, wbits: int
) -> None:
    """The client asks for identity; a server that compresses anyway is still understood."""
    packer = zlib.compressobj(6, zlib.DEFLATED, wbits)
    detail = b'{"errors":[{"detail":"Cannot terminate a locked server"}]}'
    body = packer.compress(detail) + packer.flush()

    def handler(request: httpx.Request) -> httpx.Response:
        assert request.headers["accept-encoding"] == "identity"
        return httpx.Response(
            409, stream=httpx.ByteStream(body), headers={"content-encoding": coding}
        )

    outcome = await delete(handler, tmp_path)
    assert (outcome.kind, outcome.detail) == (Verdict.CONFLICT, "Cannot terminate a locked server")


@pytest.mark.parametrize("coding", ["br", "zstd", "gzip, br", "compress", "x-hostile"])
@pytest.mark.parametrize(
    ("method", "status", "kind"),
    [
        ("DELETE", 202, Verdict.ACCEPTED),
        ("DELETE", 409, Verdict.CONFLICT),
        ("GET", 200, Verdict.REJECTED),
    ],
)
async def test_a_body_in_an_encoding_the_operator_does_not_read_keeps_the_status(
    tmp_path: Path, coding: str, method: str, status: int, kind: Verdict
) -> None:
    def answer(request: httpx.Request) -> httpx.Response:
        return httpx.Response(
            status,
            stream=httpx.ByteStream(b"\x8b\x00 opaque"),
            headers={"content-encoding": coding},
        )

    outcome = await (delete if method == "DELETE" else get)(answer, tmp_path)
    assert outcome.kind is kind
    assert outcome.status == status
    if kind is not Verdict.ACCEPTED:
        assert "Content-Encoding" in (outcome.detail or "")
