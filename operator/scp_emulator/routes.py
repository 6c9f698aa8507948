"""Which public route a request names, and the action name that permissions refer to.

The public side of the emulator is one catch-all handler rather than aiohttp routes, because the
real gateway decides in its own order (signature first, then route, then permission) and answers
an unknown route with 403, not 404. Matching here is a small pure function so that order stays
visible in one place (``public_api``).
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Final

ACTION_VERSIONS: Final = "VERSIONS"
"""``GET /``: the unsigned version list. Not subject to permissions."""

ACTIONS: Final = frozenset({"LIST", "GET", "DELETE", "LOCK", "UNLOCK"})
"""Action names a credential's ``allowed_actions`` may list."""

_SERVER_ID = r"(?P<server_id>[^/]+)"
_TABLE: Final = (
    ("GET", re.compile(r"^/v1/servers$"), "LIST"),
    ("GET", re.compile(rf"^/v1/servers/{_SERVER_ID}$"), "GET"),
    ("DELETE", re.compile(rf"^/v1/servers/{_SERVER_ID}$"), "DELETE"),
    ("POST", re.compile(rf"^/v1/servers/{_SERVER_ID}/lock$"), "LOCK"),
    ("POST", re.compile(rf"^/v1/servers/{_SERVER_ID}/unlock$"), "UNLOCK"),
)


@dataclass(frozen=True)
class Route:
    """A matched public route: the action and, for per-server routes, the server id."""

    action: str
    server_id: str | None = None


def match_route(method: str, path: str) -> Route | None:
    """Return the route for ``method path``, or None for anything the API does not have."""
    method = method.upper()
    if path == "/" and method == "GET":
        return Route(ACTION_VERSIONS)
    for route_method, pattern, action in _TABLE:
        if method != route_method:
            continue
        found = pattern.match(path)
        if found is not None:
            return Route(action, found.groupdict().get("server_id"))
    return None
