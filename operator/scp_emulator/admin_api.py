"""The unsigned admin API under ``/_emulator/``: seed servers, script faults, read the log.

It exists so that tests in another process (or another thread's event loop), the local sandbox
and humans with curl can steer the emulator. It is deliberately unauthenticated: the emulator
binds to loopback by default and holds nothing real.
"""

from __future__ import annotations

import json
from typing import Any, NoReturn, TypeVar

from aiohttp import web
from pydantic import BaseModel, ValidationError

from .config import Credential, RuntimeSettings
from .faults import FaultSpec, Latency
from .keys import STATE_KEY
from .servers import ServerPatch, ServerSpec
from .state import EmulatorState

PREFIX = "/_emulator"

ModelT = TypeVar("ModelT", bound=BaseModel)


def _fail(status: type[web.HTTPError], message: str) -> NoReturn:
    raise status(text=json.dumps({"error": message}), content_type="application/json")


async def _parse(request: web.Request, model: type[ModelT]) -> ModelT:
    """Validate the JSON body against ``model``; 400 with pydantic's message when it is wrong."""
    data = await _json_body(request)
    try:
        return model.model_validate(data)
    except ValidationError as error:
        _fail(web.HTTPBadRequest, str(error))


async def _json_body(request: web.Request) -> Any:
    """The parsed JSON body; an empty body counts as ``{}`` (e.g. to seed a default server)."""
    text = await request.text()
    if not text.strip():
        return {}
    try:
        return json.loads(text)
    except ValueError:
        _fail(web.HTTPBadRequest, "request body must be JSON")


def _state(request: web.Request) -> EmulatorState:
    return request.app[STATE_KEY]


async def health(request: web.Request) -> web.Response:
    """Readiness probe: answers as soon as the emulator serves requests."""
    return web.json_response({"status": "ok"})


async def list_servers(request: web.Request) -> web.Response:
    """All servers with their emulator-only flags."""
    return web.json_response([server.admin_view() for server in _state(request).list_servers()])


async def create_server(request: web.Request) -> web.Response:
    """Seed one server; 201 with its admin view, 409 if the id exists."""
    spec = await _parse(request, ServerSpec)
    try:
        server = _state(request).add_server(spec)
    except ValueError as error:
        _fail(web.HTTPConflict, str(error))
    return web.json_response(server.admin_view(), status=201)


async def get_server(request: web.Request) -> web.Response:
    """One server's admin view, 404 if it does not exist (any more)."""
    server_id = request.match_info["server_id"]
    server = _state(request).get_server(server_id)
    if server is None:
        _fail(web.HTTPNotFound, f"server {server_id} not found")
    return web.json_response(server.admin_view())


async def patch_server(request: web.Request) -> web.Response:
    """Change some fields (e.g. ``locked``, ``file_storage``, ``state``) of a server."""
    server_id = request.match_info["server_id"]
    patch = await _parse(request, ServerPatch)
    try:
        server = _state(request).update_server(server_id, patch)
    except KeyError:
        _fail(web.HTTPNotFound, f"server {server_id} not found")
    return web.json_response(server.admin_view())


async def delete_server(request: web.Request) -> web.Response:
    """Remove a server at once, without a DELETING phase and without a log entry."""
    server_id = request.match_info["server_id"]
    if not _state(request).remove_server(server_id):
        _fail(web.HTTPNotFound, f"server {server_id} not found")
    return web.Response(status=204)


async def list_credentials(request: web.Request) -> web.Response:
    """Access keys with their restrictions. Secrets are never shown."""
    credentials = _state(request).credentials.values()
    return web.json_response([credential.public_view() for credential in credentials])


async def put_credential(request: web.Request) -> web.Response:
    """Add a credential or replace the one with the same access key."""
    credential = _state(request).set_credential(await _parse(request, Credential))
    return web.json_response(credential.public_view())


async def delete_credential(request: web.Request) -> web.Response:
    """Stop accepting an access key."""
    access_key = request.match_info["access_key"]
    if not _state(request).remove_credential(access_key):
        _fail(web.HTTPNotFound, f"access key {access_key} not found")
    return web.Response(status=204)


async def list_faults(request: web.Request) -> web.Response:
    """Active faults, with how many firings each has left and how often it fired."""
    return web.json_response([fault.view() for fault in _state(request).faults])


async def add_fault(request: web.Request) -> web.Response:
    """Register a fault; 201 with its id."""
    fault = _state(request).add_fault(await _parse(request, FaultSpec))
    return web.json_response({"id": fault.id}, status=201)


async def clear_faults(request: web.Request) -> web.Response:
    """Remove all faults."""
    _state(request).clear_faults()
    return web.Response(status=204)


async def delete_fault(request: web.Request) -> web.Response:
    """Remove one fault; 404 if unknown or already used up."""
    fault_id = request.match_info["fault_id"]
    if not _state(request).remove_fault(fault_id):
        _fail(web.HTTPNotFound, f"fault {fault_id} not found")
    return web.Response(status=204)


async def get_latency(request: web.Request) -> web.Response:
    """The latency added to every public request."""
    return web.json_response(_state(request).latency.model_dump())


async def put_latency(request: web.Request) -> web.Response:
    """Set the latency added to every public request (``{"ms": 0}`` turns it off)."""
    latency = await _parse(request, Latency)
    state = _state(request)
    state.set_latency(latency.ms, latency.jitter_ms)
    return web.json_response(state.latency.model_dump())


async def list_requests(request: web.Request) -> web.Response:
    """The request log, optionally filtered by ``?method=`` and ``?path_contains=``."""
    entries = _state(request).find_requests(
        method=request.query.get("method"), path_contains=request.query.get("path_contains")
    )
    return web.json_response([entry.as_dict() for entry in entries])


async def clear_requests(request: web.Request) -> web.Response:
    """Forget the request log."""
    _state(request).clear_requests()
    return web.Response(status=204)


def _settings_view(settings: RuntimeSettings) -> dict[str, Any]:
    return settings.model_dump(mode="json")


async def get_config(request: web.Request) -> web.Response:
    """The runtime settings: delete delay, timestamp window, versions, ..."""
    return web.json_response(_settings_view(_state(request).settings))


async def patch_config(request: web.Request) -> web.Response:
    """Change some runtime settings; the whole result is validated before it takes effect."""
    state = _state(request)
    changes = await _json_body(request)
    if not isinstance(changes, dict):
        _fail(web.HTTPBadRequest, "request body must be a JSON object")
    merged = {**state.settings.model_dump(), **changes}
    try:
        state.settings = RuntimeSettings.model_validate(merged)
    except ValidationError as error:
        _fail(web.HTTPBadRequest, str(error))
    return web.json_response(_settings_view(state.settings))


async def reset(request: web.Request) -> web.Response:
    """Clear servers, faults, latency and the log; credentials and settings stay."""
    _state(request).reset()
    return web.Response(status=204)


async def unknown(request: web.Request) -> web.Response:
    """404 for admin paths that do not exist, instead of the public API's 403."""
    _fail(web.HTTPNotFound, f"no admin endpoint {request.method} {request.path}")


def add_admin_routes(app: web.Application) -> None:
    """Register every admin endpoint on ``app``."""
    app.router.add_routes(
        [
            web.get(f"{PREFIX}/health", health),
            web.get(f"{PREFIX}/servers", list_servers),
            web.post(f"{PREFIX}/servers", create_server),
            web.get(f"{PREFIX}/servers/{{server_id}}", get_server),
            web.patch(f"{PREFIX}/servers/{{server_id}}", patch_server),
            web.delete(f"{PREFIX}/servers/{{server_id}}", delete_server),
            web.get(f"{PREFIX}/credentials", list_credentials),
            web.put(f"{PREFIX}/credentials", put_credential),
            web.delete(f"{PREFIX}/credentials/{{access_key}}", delete_credential),
            web.get(f"{PREFIX}/faults", list_faults),
            web.post(f"{PREFIX}/faults", add_fault),
            web.delete(f"{PREFIX}/faults", clear_faults),
            web.delete(f"{PREFIX}/faults/{{fault_id}}", delete_fault),
            web.get(f"{PREFIX}/latency", get_latency),
            web.put(f"{PREFIX}/latency", put_latency),
            web.get(f"{PREFIX}/requests", list_requests),
            web.delete(f"{PREFIX}/requests", clear_requests),
            web.get(f"{PREFIX}/config", get_config),
            web.patch(f"{PREFIX}/config", patch_config),
            web.post(f"{PREFIX}/reset", reset),
        ]
    )
