"""An SCP virtualserver API emulator: a real HTTP server on loopback for tests and sandboxes.

It verifies request signatures the way SCP's gateway does, keeps virtual servers and answers
202/404/409/401/403/400 like SCP, and can inject latency and faults. See ``docs/emulator.md``.
"""

from __future__ import annotations

from .config import (
    DEFAULT_ACCESS_KEY,
    DEFAULT_SECRET_KEY,
    Credential,
    EmulatorConfig,
    RuntimeSettings,
)
from .faults import Fault, FaultSpec, Latency
from .requestlog import RequestLogEntry
from .server import EmulatorServer
from .servers import Server, ServerPatch, ServerSpec
from .signing import compute_signature
from .state import EmulatorState
from .versions import ApiVersion

__all__ = [
    "DEFAULT_ACCESS_KEY",
    "DEFAULT_SECRET_KEY",
    "ApiVersion",
    "Credential",
    "EmulatorConfig",
    "EmulatorServer",
    "EmulatorState",
    "Fault",
    "FaultSpec",
    "Latency",
    "RequestLogEntry",
    "RuntimeSettings",
    "Server",
    "ServerPatch",
    "ServerSpec",
    "compute_signature",
]
