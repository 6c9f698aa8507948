"""Run the emulator on a real socket inside the current event loop.

``EmulatorServer`` is what async tests and the CLI use: it binds (port 0 picks a free port),
serves until the context exits, and wakes any request held by latency or a timeout fault so that
shutdown takes milliseconds, not the length of the longest injected delay.
"""

from __future__ import annotations

import logging
from types import TracebackType
from typing import Self

from aiohttp import web

from .app import make_app
from .config import EmulatorConfig
from .state import EmulatorState

logger = logging.getLogger("scp_emulator")


class EmulatorServer:
    """An SCP emulator listening on ``config.host:config.port``; use ``async with``."""

    def __init__(self, config: EmulatorConfig | None = None) -> None:
        self.config = config or EmulatorConfig()
        self.state = EmulatorState(self.config)
        self._runner: web.AppRunner | None = None
        self._port: int | None = None

    @property
    def port(self) -> int:
        """The bound port (known once started)."""
        if self._port is None:
            raise RuntimeError("the emulator is not running")
        return self._port

    @property
    def url(self) -> str:
        """Base URL of the running emulator, e.g. ``http://127.0.0.1:8484`` (no trailing /)."""
        host = self.config.host
        if ":" in host:
            host = f"[{host}]"
        return f"http://{host}:{self.port}"

    async def start(self) -> None:
        """Bind and start serving."""
        if self._runner is not None:
            raise RuntimeError("the emulator is already running")
        # handler_cancellation: a client that gives up on a hung request frees its handler.
        runner = web.AppRunner(
            make_app(self.state),
            access_log=None,
            handler_cancellation=True,
            shutdown_timeout=1.0,
        )
        await runner.setup()
        site = web.TCPSite(runner, self.config.host, self.config.port)
        try:
            await site.start()
        except BaseException:
            await runner.cleanup()
            raise
        self._runner = runner
        self._port = _bound_port(runner)
        logger.debug("scp-emulator serving on %s", self.url)

    async def stop(self) -> None:
        """Stop serving; requests still waiting on latency or faults are released first."""
        runner, self._runner = self._runner, None
        if runner is None:
            return
        self.state.shutdown()
        await runner.cleanup()

    async def __aenter__(self) -> Self:
        await self.start()
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        await self.stop()


def _bound_port(runner: web.AppRunner) -> int:
    for address in runner.addresses:
        if isinstance(address, tuple) and len(address) >= 2:
            return int(address[1])
    raise RuntimeError("cannot find the emulator's bound port")
