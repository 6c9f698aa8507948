"""The aiohttp application key under which the handlers find the shared state."""

from __future__ import annotations

from aiohttp import web

from .state import EmulatorState

STATE_KEY = web.AppKey("scp_emulator_state", EmulatorState)
