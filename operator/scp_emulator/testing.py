"""A thread-hosted emulator for synchronous tests and for code that runs its own event loop.

``ThreadedEmulator`` runs :class:`~scp_emulator.server.EmulatorServer` on a private event loop
in a daemon thread. Its helpers talk to the admin API over HTTP (with ``httpx``), exactly as a
test in another process would, so they are safe to call from any thread and exercise the same
code paths the documentation describes.
"""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Callable
from types import TracebackType
from typing import Any, Self, TypeVar

import httpx

from .config import EmulatorConfig
from .server import EmulatorServer
from .state import EmulatorState

T = TypeVar("T")


class AdminError(RuntimeError):
    """The admin API refused a request (bad field, unknown id, ...)."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(f"emulator admin API answered {status}: {message}")
        self.status = status
        self.message = message


class ThreadedEmulator:
    """An emulator running in a background thread; use it as a ``with`` block."""

    def __init__(self, config: EmulatorConfig | None = None, *, timeout: float = 10.0) -> None:
        self.config = config or EmulatorConfig()
        self._timeout = timeout
        self._server = EmulatorServer(self.config)
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread: threading.Thread | None = None
        self._client: httpx.Client | None = None

    # --- lifecycle -----------------------------------------------------------------------

    def start(self) -> None:
        """Start the loop thread and wait until the emulator listens."""
        if self._loop is not None:
            raise RuntimeError("the emulator is already running")
        loop = asyncio.new_event_loop()
        thread = threading.Thread(target=loop.run_forever, name="scp-emulator", daemon=True)
        thread.start()
        self._loop, self._thread = loop, thread
        try:
            asyncio.run_coroutine_threadsafe(self._server.start(), loop).result(self._timeout)
        except BaseException:
            self._stop_loop()
            raise
        # trust_env=False: a proxy from the environment must never sit between test and emulator.
        self._client = httpx.Client(
            base_url=f"{self.url}/_emulator", timeout=self._timeout, trust_env=False
        )

    def stop(self) -> None:
        """Stop serving and join the thread. Safe to call twice."""
        if self._client is not None:
            self._client.close()
            self._client = None
        loop = self._loop
        if loop is None:
            return
        try:
            asyncio.run_coroutine_threadsafe(self._server.stop(), loop).result(self._timeout)
        finally:
            self._stop_loop()

    def _stop_loop(self) -> None:
        loop, thread = self._loop, self._thread
        self._loop = self._thread = None
        if loop is None:
            return
        loop.call_soon_threadsafe(loop.stop)
        if thread is not None:
            thread.join(self._timeout)
        if not loop.is_running():
            loop.close()

    def __enter__(self) -> Self:
        self.start()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self.stop()

    # --- addresses and credentials -------------------------------------------------------

    @property
    def url(self) -> str:
        """Base URL of the public API, e.g. ``http://127.0.0.1:PORT`` (no trailing /)."""
        return self._server.url

    @property
    def access_key(self) -> str:
        """Access key of the first configured credential."""
        return self.config.credentials[0].access_key

    @property
    def secret_key(self) -> str:
        """Secret key of the first configured credential (a fake one, by design)."""
        return self.config.credentials[0].secret_key

    def scp_env(self) -> dict[str, str]:
        """The ``SCP_*`` variables that point scp-operator (or any client) at this emulator."""
        return {
            "SCP_ENDPOINT": self.url,
            "SCP_ACCESS_KEY": self.access_key,
            "SCP_SECRET_KEY": self.secret_key,
        }

    @property
    def state(self) -> EmulatorState:
        """The live state. Read it only while no request is in flight, or use :meth:`call`."""
        return self._server.state

    def call(self, function: Callable[[EmulatorState], T]) -> T:
        """Run ``function(state)`` on the emulator's loop thread and return its result."""
        loop = self._loop
        if loop is None:
            raise RuntimeError("the emulator is not running")

        async def run() -> T:
            return function(self._server.state)

        return asyncio.run_coroutine_threadsafe(run(), loop).result(self._timeout)

    # --- admin API helpers ---------------------------------------------------------------

    def _admin(self, method: str, path: str, **kwargs: Any) -> Any:
        if self._client is None:
            raise RuntimeError("the emulator is not running")
        response = self._client.request(method, path, **kwargs)
        if response.is_error:
            try:
                message = str(response.json().get("error", response.text))
            except ValueError:
                message = response.text
            raise AdminError(response.status_code, message)
        if response.status_code == 204 or not response.content:
            return None
        return response.json()

    def seed(self, **fields: Any) -> dict[str, Any]:
        """Create a server (fields as for ``POST /_emulator/servers``); returns its admin view."""
        result: dict[str, Any] = self._admin("POST", "/servers", json=fields)
        return result

    def patch(self, server_id: str, **fields: Any) -> dict[str, Any]:
        """Change fields of a server, e.g. ``patch(id, locked=True)``; returns its admin view."""
        result: dict[str, Any] = self._admin("PATCH", f"/servers/{server_id}", json=fields)
        return result

    def remove(self, server_id: str) -> None:
        """Remove a server at once, without a DELETING phase."""
        self._admin("DELETE", f"/servers/{server_id}")

    def server(self, server_id: str) -> dict[str, Any] | None:
        """A server's admin view, or None when it does not exist (any more)."""
        try:
            result: dict[str, Any] = self._admin("GET", f"/servers/{server_id}")
        except AdminError as error:
            if error.status == 404:
                return None
            raise
        return result

    def servers(self) -> list[dict[str, Any]]:
        """All servers, with their emulator-only flags."""
        result: list[dict[str, Any]] = self._admin("GET", "/servers")
        return result

    def requests(
        self, method: str | None = None, path_contains: str | None = None
    ) -> list[dict[str, Any]]:
        """The request log, optionally only one method and/or paths containing a string."""
        params = {
            key: value
            for key, value in (("method", method), ("path_contains", path_contains))
            if value is not None
        }
        result: list[dict[str, Any]] = self._admin("GET", "/requests", params=params)
        return result

    def clear_requests(self) -> None:
        """Forget the request log."""
        self._admin("DELETE", "/requests")

    def fault(self, **spec: Any) -> str:
        """Register a fault (fields as for ``POST /_emulator/faults``); returns its id."""
        result: dict[str, Any] = self._admin("POST", "/faults", json=spec)
        return str(result["id"])

    def faults(self) -> list[dict[str, Any]]:
        """Active faults with ``remaining`` and ``hits``."""
        result: list[dict[str, Any]] = self._admin("GET", "/faults")
        return result

    def remove_fault(self, fault_id: str) -> None:
        """Remove one fault."""
        self._admin("DELETE", f"/faults/{fault_id}")

    def clear_faults(self) -> None:
        """Remove all faults."""
        self._admin("DELETE", "/faults")

    def set_credentials(
        self,
        access_key: str,
        secret_key: str,
        *,
        account_id: str | None = None,
        allowed_actions: list[str] | None = None,
    ) -> dict[str, Any]:
        """Add or replace a credential; returns its view (without the secret)."""
        body = {
            "access_key": access_key,
            "secret_key": secret_key,
            "account_id": account_id,
            "allowed_actions": allowed_actions,
        }
        result: dict[str, Any] = self._admin("PUT", "/credentials", json=body)
        return result

    def remove_credentials(self, access_key: str) -> None:
        """Stop accepting an access key."""
        self._admin("DELETE", f"/credentials/{access_key}")

    def set_latency(self, ms: float, jitter_ms: float = 0.0) -> None:
        """Delay every public request by ``ms`` plus up to ``jitter_ms`` milliseconds."""
        self._admin("PUT", "/latency", json={"ms": ms, "jitter_ms": jitter_ms})

    def set_config(self, **fields: Any) -> dict[str, Any]:
        """Change runtime settings (``delete_delay``, ``timestamp_window``, ...)."""
        result: dict[str, Any] = self._admin("PATCH", "/config", json=fields)
        return result

    def get_config(self) -> dict[str, Any]:
        """The runtime settings."""
        result: dict[str, Any] = self._admin("GET", "/config")
        return result

    def reset(self) -> None:
        """Clear servers, faults, latency and the log (credentials and settings stay)."""
        self._admin("POST", "/reset")
