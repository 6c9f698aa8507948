"""The public virtualserver API, answered in the order a gateway in front of SCP would.

Every request outside ``/_emulator/`` goes through :func:`handle_public`:

1. it is logged on arrival (so a request that never gets an answer is still visible);
2. the configured latency is waited out;
3. the signature is checked (the result is logged even when a fault answers instead);
4. a matching fault, if any, answers instead of the API (with ``process_first``, after the API
   has handled the request: the effect happens, the answer is lost);
5. ``GET /`` answers the version list without a signature;
6. 401 for a bad signature or a stale timestamp; 403 for an unknown route;
7. 400 for an unsupported ``Scp-Api-Version``;
8. 403 for an action the credential may not perform or a wrong ``Scp-AccountId``;
9. the API itself: list, read, delete, lock, unlock.
"""

from __future__ import annotations

import datetime as dt
import json
import logging
import socket
import struct
import time
from typing import Any

from aiohttp import web

from .auth import (
    HEADER_ACCESS_KEY,
    HEADER_ACCOUNT_ID,
    HEADER_API_VERSION,
    HEADER_TIMESTAMP,
    AuthResult,
    authenticate,
)
from .config import Credential
from .errors import FORBIDDEN, error_body, error_response, validation_error
from .faults import GARBAGE_BODY, HTML_PAGE, Fault
from .keys import STATE_KEY
from .requestlog import RequestLogEntry, Verdict
from .routes import ACTION_VERSIONS, Route, match_route
from .servers import STATE_DELETING, Server
from .state import EmulatorState
from .versions import check_version_header

logger = logging.getLogger("scp_emulator.requests")


def candidate_urls(request: web.Request, public_url: str | None) -> list[str]:
    """The absolute URLs a client may have signed for this request.

    The request target is taken raw (``raw_path``), exactly as it came on the wire, so the
    emulator verifies the same bytes the client signed, percent-encoding and query included.
    """
    target = request.raw_path
    urls = []
    host = request.headers.get("Host")
    if host:
        urls.append(f"{request.scheme}://{host}{target}")
    if public_url:
        urls.append(f"{public_url}{target}")
    return urls or [target]


async def handle_public(request: web.Request) -> web.StreamResponse:
    """Answer one public request; see the module docstring for the order of the gates."""
    state = request.app[STATE_KEY]
    headers = request.headers
    route = match_route(request.method, request.path)
    urls = candidate_urls(request, state.settings.public_url)
    entry = state.log_request(
        method=request.method,
        path=request.path,
        url=urls[0],
        api_version=headers.get(HEADER_API_VERSION),
        access_key=headers.get(HEADER_ACCESS_KEY),
        account_id=headers.get(HEADER_ACCOUNT_ID),
        timestamp=headers.get(HEADER_TIMESTAMP),
        signature_valid=False,
        server_id=route.server_id if route else None,
        action=route.action if route else None,
    )
    await state.sleep(state.latency_seconds())

    auth = authenticate(
        method=request.method,
        path=request.path,
        candidate_urls=urls,
        headers=headers,
        credentials=state.credentials,
        now_ms=int(time.time() * 1000),
        window_seconds=state.settings.timestamp_window,
    )
    entry.url = auth.url
    entry.signature_valid = auth.signature_valid

    fault = state.take_fault(request.method, request.path)
    if fault is not None:
        if fault.spec.process_first:
            _, lost, _ = _answer(request, state, route, auth)
            entry.detail = f"processed (the API answered {lost.status}), then"
        return await _answer_fault(request, state, entry, fault)

    verdict, response, detail = _answer(request, state, route, auth)
    _finish(entry, verdict, response.status, detail)
    return response


def _finish(
    entry: RequestLogEntry, verdict: Verdict, status: int | None, detail: str | None
) -> None:
    entry.verdict = verdict
    entry.status = status
    entry.detail = detail
    logger.info(
        "%s %s -> %s (%s)%s",
        entry.method,
        entry.path,
        status if status is not None else "reset",
        verdict,
        f": {detail}" if detail else "",
    )


Answer = tuple[Verdict, web.Response, str | None]


def _error(verdict: Verdict, status: int, detail: str) -> Answer:
    return verdict, error_response(status, detail), detail


def _answer(
    request: web.Request, state: EmulatorState, route: Route | None, auth: AuthResult
) -> Answer:
    """Steps 5 to 9 of the module docstring: everything after faults."""
    settings = state.settings
    if route is not None and route.action == ACTION_VERSIONS:
        versions = [version.document() for version in settings.versions]
        return "ok", web.json_response({"versions": versions}), None
    if not auth.ok or auth.credential is None:
        return _error(auth.verdict, 401, auth.detail or "[HMAC] HMAC valid fail")
    if route is None:
        return _error("forbidden", 403, FORBIDDEN)
    version = check_version_header(
        request.headers.get(HEADER_API_VERSION),
        settings.versions,
        reject_expired=settings.reject_expired_versions,
        today=dt.datetime.now(dt.UTC).date(),
    )
    if version.error is not None:
        return _error("bad-version", 400, version.error)
    credential = auth.credential
    if credential.allowed_actions is not None and route.action not in credential.allowed_actions:
        return _error("forbidden", 403, FORBIDDEN)
    if credential.account_id is not None and (
        request.headers.get(HEADER_ACCOUNT_ID, "") != credential.account_id
    ):
        return _error("forbidden", 403, FORBIDDEN)

    if route.action == "LIST":
        return _list_servers(request, state, credential)
    server = _visible_server(state, route.server_id, credential)
    if server is None:
        return _error("ok", 404, f"Server {route.server_id} not found")
    if route.action == "GET":
        return "ok", web.json_response(server.public_view()), None
    if route.action == "DELETE":
        return _delete(state, server)
    return _set_lock(server, locked=route.action == "LOCK")


def _visible_server(
    state: EmulatorState, server_id: str | None, credential: Credential
) -> Server | None:
    """A server the credential may see: a credential bound to an account sees only that
    account's servers, and others' servers look like they do not exist (a guess: SCP might
    answer 403 instead)."""
    server = state.get_server(server_id) if server_id else None
    if server is None:
        return None
    if credential.account_id is not None and server.account_id != credential.account_id:
        return None
    return server


def _list_servers(request: web.Request, state: EmulatorState, credential: Credential) -> Answer:
    """``GET /v1/servers`` with ``limit``/``marker`` paging; ``count`` is the total, unpaged."""
    servers = [
        server
        for server in state.list_servers()
        if credential.account_id is None or server.account_id == credential.account_id
    ]
    total = len(servers)
    marker = request.query.get("marker")
    if marker:
        ids = [server.id for server in servers]
        if marker not in ids:
            return _error("ok", 400, f"Marker {marker} not found")
        servers = servers[ids.index(marker) + 1 :]
    raw_limit = request.query.get("limit")
    if raw_limit is not None:
        try:
            limit = int(raw_limit)
        except ValueError:
            msg = "Input should be a valid integer, unable to parse string as an integer"
            return "ok", validation_error(["query", "limit"], msg, "int_parsing"), msg
        if limit < 1:
            msg = "Input should be greater than or equal to 1"
            response = validation_error(["query", "limit"], msg, "greater_than_equal", {"ge": 1})
            return "ok", response, msg
        servers = servers[:limit]
    body = {"servers": [server.public_view() for server in servers], "count": total}
    return "ok", web.json_response(body), None


#: SCP's words for every refused delete (scp-api.md). They name no cause: a client learns that
#: a lock is the cause by reading the server (``locked``); the other causes (File Storage, an LB
#: server group, a Backup) are not visible in the server object at all.
CONFLICT_DETAIL = "Cannot terminate due to associated resources"


def _delete(state: EmulatorState, server: Server) -> Answer:
    """409 while locked or attached, else 202 and the server starts DELETING (again: 202).

    The 409 says what SCP says, not which blocker it is (the admin view's ``blockers`` does):
    a client that names the blocker must find out the way it would against SCP.
    """
    if server.state == STATE_DELETING:
        return "ok", web.Response(status=202), None
    if server.blockers():
        return _error("ok", 409, CONFLICT_DETAIL)
    state.begin_delete(server)
    return "ok", web.Response(status=202), None


def _set_lock(server: Server, *, locked: bool) -> Answer:
    """Lock or unlock; 202 like the other actions. A DELETING server refuses (a guess)."""
    if server.state == STATE_DELETING:
        return _error("ok", 409, f"Server {server.id} is being deleted")
    server.locked = locked
    server.modified_at = dt.datetime.now(dt.UTC)
    return "ok", web.Response(status=202), None


async def _answer_fault(
    request: web.Request, state: EmulatorState, entry: RequestLogEntry, fault: Fault
) -> web.StreamResponse:
    """Answer with an injected fault instead of the API."""
    kind = fault.spec.kind
    detail = " ".join(filter(None, [entry.detail, f"injected {kind} fault"]))
    entry.fault_id = fault.id
    entry.verdict = "fault"
    entry.detail = detail
    await state.sleep(fault.spec.latency_ms / 1000)
    if kind == "reset":
        _finish(entry, "fault", None, detail)
        _reset_connection(request)
        return web.Response(status=fault.status)
    if kind == "timeout":
        await state.sleep(state.settings.fault_timeout)
    response = _fault_response(fault)
    _finish(entry, "fault", response.status, detail)
    return response


def _fault_response(fault: Fault) -> web.Response:
    spec = fault.spec
    status = fault.status
    headers = dict(spec.headers)
    body: bytes
    if spec.kind == "html":
        content_type = "text/html"
        body = HTML_PAGE.format(status=status).encode() if spec.body is None else _raw(spec.body)
    elif spec.kind == "garbage":
        content_type = "application/json"
        body = GARBAGE_BODY if spec.body is None else _raw(spec.body)
    elif spec.body is None:
        content_type = "application/json"
        body = b"" if status < 400 else json.dumps(error_body(status, "Injected fault")).encode()
        if not body:
            content_type = ""
    elif isinstance(spec.body, str):
        content_type = "text/plain"
        body = spec.body.encode()
    else:
        content_type = "application/json"
        body = json.dumps(spec.body).encode()
    if content_type and not any(name.lower() == "content-type" for name in headers):
        headers["Content-Type"] = content_type
    return web.Response(status=status, body=body, headers=headers)


def _raw(body: Any) -> bytes:
    return body.encode() if isinstance(body, str) else json.dumps(body).encode()


def _reset_connection(request: web.Request) -> None:
    """Drop the TCP connection with a RST, as a crashed proxy or a middlebox would."""
    transport = request.transport
    if transport is None:
        return
    sock = transport.get_extra_info("socket")
    if sock is not None:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    transport.abort()
