"""Injected faults: answers the real SCP (or what sits in front of it) may give on a bad day.

A fault matches public requests by method and path regex and replaces the normal answer:
a chosen status with optional body and headers (e.g. 503 with ``Retry-After``), a connection
reset, a request that hangs past any client timeout, an HTML error page from a proxy, or a body
that is not JSON. ``times`` bounds how often it fires, so a test can script "fail twice, then
succeed"; ``process_first`` lets the API act before the fault eats the answer, the case where a
client must not assume that a failed call changed nothing.
"""

from __future__ import annotations

import re
import uuid
from dataclasses import dataclass, field
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator

FaultKind = Literal["status", "reset", "timeout", "html", "garbage"]

DEFAULT_STATUS: dict[str, int] = {"status": 500, "html": 502, "garbage": 500, "timeout": 504}
"""Status used when a fault does not name one."""

HTML_PAGE = (
    "<html>\r\n<head><title>{status} Bad Gateway</title></head>\r\n<body>\r\n"
    "<center><h1>{status} Bad Gateway</h1></center>\r\n<hr><center>nginx</center>\r\n"
    "</body>\r\n</html>\r\n"
)
"""What a reverse proxy typically sends when the service behind it is down."""

GARBAGE_BODY = b'{"errors": [{"status": \x00\xff<<not json'
"""A body that starts like JSON and is neither JSON nor UTF-8: the nastiest case for a parser."""


class FaultSpec(BaseModel):
    """What to match and what to answer instead; the body of ``POST /_emulator/faults``."""

    model_config = ConfigDict(extra="forbid")

    kind: FaultKind
    method: str | None = Field(default=None, description="Match only this method.")
    path_regex: str | None = Field(
        default=None, description="Match paths where this regex is found (re.search)."
    )
    status: int | None = Field(default=None, ge=100, le=599)
    body: Any = Field(
        default=None,
        description="JSON value, or a string sent as is; default: an SCP error body.",
    )
    headers: dict[str, str] = Field(default_factory=dict)
    times: int | None = Field(
        default=None, ge=1, description="Fire this many times, then disappear; null: forever."
    )
    latency_ms: float = Field(default=0.0, ge=0, description="Wait this long before answering.")
    process_first: bool = Field(
        default=False,
        description="Handle the request normally first (e.g. really start the delete), then "
        "answer with the fault: the answer is lost, the effect is not.",
    )

    @field_validator("path_regex")
    @classmethod
    def _compiles(cls, value: str | None) -> str | None:
        if value is not None:
            re.compile(value)
        return value

    @field_validator("method")
    @classmethod
    def _upper(cls, value: str | None) -> str | None:
        return None if value is None else value.upper()


@dataclass
class Fault:
    """A registered fault with its id and how many firings it has left."""

    spec: FaultSpec
    id: str = field(default_factory=lambda: uuid.uuid4().hex[:12])
    remaining: int | None = None
    hits: int = 0

    def __post_init__(self) -> None:
        if self.remaining is None:
            self.remaining = self.spec.times

    def matches(self, method: str, path: str) -> bool:
        """Whether this fault applies to ``method path`` (it may still be used up)."""
        if self.spec.method is not None and self.spec.method != method.upper():
            return False
        return self.spec.path_regex is None or re.search(self.spec.path_regex, path) is not None

    @property
    def status(self) -> int:
        """The status this fault answers with."""
        return self.spec.status or DEFAULT_STATUS.get(self.spec.kind, 500)

    def view(self) -> dict[str, Any]:
        """The admin API's JSON for this fault."""
        return {
            "id": self.id,
            **self.spec.model_dump(mode="json"),
            "remaining": self.remaining,
            "hits": self.hits,
        }


class Latency(BaseModel):
    """Delay added to every public request: ``ms`` plus a uniform random share of ``jitter_ms``."""

    model_config = ConfigDict(extra="forbid")

    ms: float = Field(default=0.0, ge=0)
    jitter_ms: float = Field(default=0.0, ge=0)
