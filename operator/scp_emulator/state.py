"""The emulator's whole mutable world: servers, credentials, faults, latency, the request log.

Both the public and the admin API work on one :class:`EmulatorState`, and in-process tests may
use it directly (``EmulatorServer.state``). It is not locked: touch it only from the event loop
the server runs on (``ThreadedEmulator.call`` does that for other threads).

Deleted servers disappear lazily: each read first drops servers whose delay has run out. That
needs no timers, so state stays correct whatever loop or thread looks at it.
"""

from __future__ import annotations

import asyncio
import contextlib
import random
import time
from collections.abc import Callable
from typing import Any

from .config import DEFAULT_ACCOUNT_ID, Credential, EmulatorConfig, RuntimeSettings
from .faults import Fault, FaultSpec, Latency
from .requestlog import RequestLogEntry, utc_timestamp
from .servers import STATE_DELETING, Server, ServerPatch, ServerSpec


class EmulatorState:
    """Servers, credentials, faults and the request log of one running emulator."""

    def __init__(
        self,
        config: EmulatorConfig | None = None,
        *,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        config = config or EmulatorConfig()
        self.settings: RuntimeSettings = config.runtime_settings()
        self.credentials: dict[str, Credential] = {c.access_key: c for c in config.credentials}
        self.requests: list[RequestLogEntry] = []
        """Public requests, oldest first (bounded by ``request_log_limit``)."""
        self.faults: list[Fault] = []
        """Active faults in the order they are tried."""
        self.latency = Latency()
        self._servers: dict[str, Server] = {}
        self._clock = clock
        self._seq = 0
        self._log_limit = config.request_log_limit
        self._shutdown = asyncio.Event()
        for spec in config.servers:
            self.add_server(spec)

    # --- servers -------------------------------------------------------------------------

    def add_server(self, spec: ServerSpec | None = None, /, **fields: Any) -> Server:
        """Create a server from a spec or from keyword fields (see :class:`ServerSpec`).

        Raises ValueError when the id is taken or a field is invalid.
        """
        if spec is None:
            spec = ServerSpec.model_validate(fields)
        elif fields:
            raise TypeError("pass either a ServerSpec or keyword fields, not both")
        self._purge()
        server = Server.from_spec(spec, default_account_id=self.default_account_id())
        if server.id in self._servers:
            raise ValueError(f"server {server.id} already exists")
        self._servers[server.id] = server
        return server

    def default_account_id(self) -> str:
        """Account of servers created without one, so they are visible to an account-bound key.

        The configured ``default_account_id``, else the first credential's account, else a
        fixed fake account.
        """
        if self.settings.default_account_id:
            return self.settings.default_account_id
        for credential in self.credentials.values():
            if credential.account_id:
                return credential.account_id
        return DEFAULT_ACCOUNT_ID

    def get_server(self, server_id: str) -> Server | None:
        """The server with this id, or None once it is gone."""
        self._purge()
        return self._servers.get(server_id)

    def list_servers(self) -> list[Server]:
        """All servers that still exist (DELETING ones included), oldest first."""
        self._purge()
        return list(self._servers.values())

    def update_server(
        self, server_id: str, patch: ServerPatch | None = None, /, **fields: Any
    ) -> Server:
        """Change some fields of a server (see :class:`ServerPatch`); KeyError if unknown."""
        if patch is None:
            patch = ServerPatch.model_validate(fields)
        elif fields:
            raise TypeError("pass either a ServerPatch or keyword fields, not both")
        server = self.get_server(server_id)
        if server is None:
            raise KeyError(server_id)
        server.apply(patch)
        return server

    def remove_server(self, server_id: str) -> bool:
        """Drop a server at once, without passing through DELETING. False if unknown."""
        self._purge()
        return self._servers.pop(server_id, None) is not None

    def begin_delete(self, server: Server) -> None:
        """Start deleting: DELETING now, gone after ``delete_delay`` (0: at once; None: never)."""
        if server.state == STATE_DELETING:
            return
        delay = self.settings.delete_delay
        server.apply(ServerPatch(state=STATE_DELETING))
        if delay == 0:
            self._servers.pop(server.id, None)
        elif delay is not None:
            server.delete_at = self._clock() + delay

    def _purge(self) -> None:
        now = self._clock()
        gone = [
            server_id
            for server_id, server in self._servers.items()
            if server.delete_at is not None and server.delete_at <= now
        ]
        for server_id in gone:
            del self._servers[server_id]

    # --- credentials ---------------------------------------------------------------------

    def set_credential(self, credential: Credential | None = None, /, **fields: Any) -> Credential:
        """Add a credential or replace the one with the same access key."""
        if credential is None:
            credential = Credential.model_validate(fields)
        elif fields:
            raise TypeError("pass either a Credential or keyword fields, not both")
        self.credentials[credential.access_key] = credential
        return credential

    def remove_credential(self, access_key: str) -> bool:
        """Stop accepting an access key (e.g. to test rotation). False if unknown."""
        return self.credentials.pop(access_key, None) is not None

    # --- faults and latency --------------------------------------------------------------

    def add_fault(self, spec: FaultSpec | None = None, /, **fields: Any) -> Fault:
        """Register a fault (see :class:`FaultSpec`); it is tried after those added before."""
        if spec is None:
            spec = FaultSpec.model_validate(fields)
        elif fields:
            raise TypeError("pass either a FaultSpec or keyword fields, not both")
        fault = Fault(spec)
        self.faults.append(fault)
        return fault

    def remove_fault(self, fault_id: str) -> bool:
        """Remove one fault. False if unknown (or already used up)."""
        before = len(self.faults)
        self.faults = [fault for fault in self.faults if fault.id != fault_id]
        return len(self.faults) != before

    def clear_faults(self) -> None:
        """Remove all faults."""
        self.faults.clear()

    def take_fault(self, method: str, path: str) -> Fault | None:
        """The first fault matching this request, counted as fired (and dropped when used up)."""
        for fault in self.faults:
            if not fault.matches(method, path):
                continue
            fault.hits += 1
            if fault.remaining is not None:
                fault.remaining -= 1
                if fault.remaining <= 0:
                    self.faults.remove(fault)
            return fault
        return None

    def set_latency(self, ms: float, jitter_ms: float = 0.0) -> None:
        """Delay every public request by ``ms`` plus up to ``jitter_ms`` milliseconds."""
        self.latency = Latency(ms=ms, jitter_ms=jitter_ms)

    def latency_seconds(self) -> float:
        """This request's share of the configured latency, in seconds."""
        jitter = random.uniform(0, self.latency.jitter_ms) if self.latency.jitter_ms else 0.0
        return (self.latency.ms + jitter) / 1000

    # --- request log ---------------------------------------------------------------------

    def log_request(self, **fields: Any) -> RequestLogEntry:
        """Append an entry (``seq`` and ``time`` are filled in) and return it for updating."""
        self._seq += 1
        entry = RequestLogEntry(seq=self._seq, time=utc_timestamp(), **fields)
        self.requests.append(entry)
        excess = len(self.requests) - self._log_limit
        if excess > 0:
            del self.requests[:excess]
        return entry

    def find_requests(
        self, method: str | None = None, path_contains: str | None = None
    ) -> list[RequestLogEntry]:
        """Logged requests, optionally only one method and/or paths containing a string."""
        return [
            entry
            for entry in self.requests
            if (method is None or entry.method == method.upper())
            and (path_contains is None or path_contains in entry.path)
        ]

    def clear_requests(self) -> None:
        """Forget all logged requests (sequence numbers keep counting)."""
        self.requests.clear()

    # --- lifecycle -----------------------------------------------------------------------

    def reset(self) -> None:
        """Clear servers, faults, latency and the request log; keep credentials and settings."""
        self._servers.clear()
        self.faults.clear()
        self.latency = Latency()
        self.requests.clear()

    def shutdown(self) -> None:
        """Wake every request sleeping in :meth:`sleep` so the server can stop promptly."""
        self._shutdown.set()

    async def sleep(self, seconds: float) -> None:
        """Sleep, but return early when the emulator shuts down."""
        if seconds <= 0:
            return
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._shutdown.wait(), timeout=seconds)
