"""What every tier shares: polling until something is true, and a free local port.

One module for the operator tier (``eventually``, the async twin), the e2e tier, the chart
tests, the fault harness, the sandbox and the benchmark, so they all wait and fail the same way:

    wait_for(lambda: cluster.get("web-1") is None, within=60, what="web-1 to go")
    await eventually(lambda: obj(k8s, "web-1") is None, within=20, what="web-1 to go")

Both return the first truthy result of ``check()`` and raise :class:`WaitTimeout` (an
``AssertionError``, so pytest reports it as a failed expectation) naming ``what``.
"""

from __future__ import annotations

import asyncio
import socket
import time
from collections.abc import Callable
from typing import Any

__all__ = ["WaitTimeout", "eventually", "free_port", "wait_for"]


class WaitTimeout(AssertionError):
    """``check()`` did not become truthy in time."""


def _timed_out(within: float, what: str, check: Callable[[], object]) -> WaitTimeout:
    return WaitTimeout(f"timed out after {within:g}s waiting for: {what or check}")


def wait_for(
    check: Callable[[], Any], within: float = 60.0, what: str = "", *, interval: float = 0.2
) -> Any:
    """Call ``check()`` every ``interval`` seconds until it returns something truthy; return
    that. Raise :class:`WaitTimeout` naming ``what`` after ``within`` seconds."""
    deadline = time.monotonic() + within
    while True:
        result = check()
        if result:
            return result
        if time.monotonic() > deadline:
            raise _timed_out(within, what, check)
        time.sleep(interval)


async def eventually(
    check: Callable[[], Any], within: float = 20.0, what: str = "", *, interval: float = 0.05
) -> Any:
    """:func:`wait_for` for code on an event loop: sleeps with ``asyncio.sleep`` between calls,
    so the loop (e.g. an in-process operator) keeps running. Shorter defaults: in-process
    handlers react within milliseconds."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + within
    while True:
        result = check()
        if result:
            return result
        if loop.time() > deadline:
            raise _timed_out(within, what, check)
        await asyncio.sleep(interval)


def free_port() -> int:
    """A TCP port on 127.0.0.1 that is free right now (it may be taken again before use)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port
