"""Assembles the aiohttp application: admin routes first, then the public catch-all."""

from __future__ import annotations

from aiohttp import web

from .admin_api import PREFIX, add_admin_routes, unknown
from .keys import STATE_KEY
from .public_api import handle_public
from .state import EmulatorState


async def _dispatch(request: web.Request) -> web.StreamResponse:
    """Everything no admin route took: admin typos get a 404, the rest is the public API."""
    if request.path == PREFIX or request.path.startswith(f"{PREFIX}/"):
        return await unknown(request)
    return await handle_public(request)


def make_app(state: EmulatorState) -> web.Application:
    """The emulator's web application over ``state``."""
    app = web.Application()
    app[STATE_KEY] = state
    add_admin_routes(app)
    app.router.add_route("*", "/{tail:.*}", _dispatch)
    return app
