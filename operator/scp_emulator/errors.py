"""Error bodies in the shape SCP's own tools read: ``{"errors":[{"status":N,"detail":"..."}]}``."""

from __future__ import annotations

from typing import Any

from aiohttp import web

FORBIDDEN = "Action definition is not found"
"""The gateway's 403 detail, both for a missing permission and for an unknown route."""


def error_body(status: int, detail: str) -> dict[str, Any]:
    """The JSON error document for one error."""
    return {"errors": [{"status": status, "detail": detail}]}


def error_response(status: int, detail: str, headers: dict[str, str] | None = None) -> web.Response:
    """A JSON error response with the SCP error body."""
    return web.json_response(error_body(status, detail), status=status, headers=headers)


def validation_error(
    loc: list[str | int], msg: str, error_type: str, ctx: dict[str, Any] | None = None
) -> web.Response:
    """A 400 in the other shape SCP uses for request validation: a list of ``{loc,msg,type}``."""
    body = [{"loc": loc, "msg": msg, "type": error_type, "ctx": ctx or {}}]
    return web.json_response(body, status=400)
