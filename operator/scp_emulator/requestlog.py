"""The request log: what each public request looked like and how the emulator judged it.

Tests assert on this log rather than only on what their client saw ("exactly one DELETE was
sent", "the retry carried a fresh timestamp", "the signature was valid"). It never holds a
secret or a signature value.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import asdict, dataclass
from typing import Any, Literal

Verdict = Literal[
    "ok",
    "bad-signature",
    "stale-timestamp",
    "unknown-key",
    "bad-version",
    "forbidden",
    "fault",
]
"""How the emulator judged a request. ``ok`` covers every answer from the API proper,
including 404 and 409; the others name the gate that refused it (or an injected fault)."""


@dataclass
class RequestLogEntry:
    """One public request. ``status`` stays None while the request is still being answered
    (or when a fault reset the connection), so a hung request is visible in the log."""

    seq: int
    time: str
    method: str
    path: str
    url: str
    api_version: str | None
    access_key: str | None
    account_id: str | None
    timestamp: str | None
    signature_valid: bool
    verdict: Verdict = "ok"
    status: int | None = None
    server_id: str | None = None
    action: str | None = None
    detail: str | None = None
    fault_id: str | None = None

    def as_dict(self) -> dict[str, Any]:
        """JSON-ready copy for the admin API."""
        return asdict(self)


def utc_timestamp() -> str:
    """Wall-clock time of arrival, ISO 8601 in UTC with milliseconds."""
    return dt.datetime.now(dt.UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")
