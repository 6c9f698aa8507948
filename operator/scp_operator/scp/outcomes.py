"""SCP's answers as typed outcomes.

The HTTP status is the reliable signal; the body's detail is shown to people when it parses and
never relied on. Everything the decision table needs is in :class:`Outcome`, so the decision
layer never touches HTTP.
"""

from __future__ import annotations

import dataclasses
import email.utils
import enum
import json
import math
import time
from typing import Any

MAX_DETAIL = 300


class Verdict(enum.StrEnum):
    """What an answer means for the operator."""

    ACCEPTED = "Accepted"  # DELETE 202
    FOUND = "Found"  # GET 200
    GONE = "Gone"  # 404
    CONFLICT = "Conflict"  # 409: locked or attached resources
    UNAUTHORIZED = "Unauthorized"  # 401: bad keys or clock skew
    FORBIDDEN = "Forbidden"  # 403: missing IAM permission (or an unknown route)
    THROTTLED = "Throttled"  # 429
    UNAVAILABLE = "Unavailable"  # 5xx, 408, timeouts, connection errors
    REJECTED = "Rejected"  # any other answer
    NO_CREDENTIALS = "CredentialsUnavailable"  # no call was possible


@dataclasses.dataclass(frozen=True)
class Outcome:
    """One answer from SCP (or the failure to get one)."""

    kind: Verdict
    status: int | None = None
    detail: str | None = None
    retry_after: float | None = None
    body: dict[str, Any] | None = None

    def describe(self) -> str:
        """Short words for conditions and events: ``409 Conflict: Server is locked``."""
        head = f"{self.status} {self.kind.value}" if self.status else self.kind.value
        return f"{head}: {self.detail}" if self.detail else head


def classify(status: int, *, method: str) -> Verdict:
    """Map an HTTP status to an outcome kind."""
    if status == 202 and method == "DELETE":
        return Verdict.ACCEPTED
    if status == 200 and method == "GET":
        return Verdict.FOUND
    mapping = {
        404: Verdict.GONE,
        409: Verdict.CONFLICT,
        401: Verdict.UNAUTHORIZED,
        403: Verdict.FORBIDDEN,
    }
    if status in mapping:
        return mapping[status]
    if status == 429:
        return Verdict.THROTTLED
    if status >= 500 or status == 408:
        return Verdict.UNAVAILABLE
    return Verdict.REJECTED


def from_response(*, method: str, status: int, content: bytes, headers: dict[str, str]) -> Outcome:
    """Build an outcome from a raw answer; never raises, whatever the headers or body hold.

    The status line is the reliable part of an answer: if reading the rest fails for any reason
    (a bug here, a header no parser expected), the outcome falls back to the status alone, so a
    202 to a DELETE is never lost to a malformed detail.
    """
    try:
        return _from_response(method=method, status=status, content=content, headers=headers)
    except Exception:  # deliberately total: the status must survive any body
        return from_status(method=method, status=status, headers=headers)


def _from_response(*, method: str, status: int, content: bytes, headers: dict[str, str]) -> Outcome:
    kind = classify(status, method=method)
    parsed = parse_json(content)
    body = parsed if kind is Verdict.FOUND and isinstance(parsed, dict) else None
    if kind is Verdict.FOUND and body is None:
        # A 200 without a JSON object is not a server we can read: say so, keep everything.
        return Outcome(Verdict.REJECTED, status, "SCP answered 200 without a JSON object")
    detail = None if kind in (Verdict.ACCEPTED, Verdict.FOUND) else error_detail(parsed, content)
    return Outcome(kind, status, detail, parse_retry_after(headers.get("retry-after")), body)


def from_status(
    *,
    method: str,
    status: int,
    headers: dict[str, str] | None = None,
    note: str | None = None,
) -> Outcome:
    """An outcome from the status code alone, for answers whose body cannot be used.

    ``note`` says why (shown to people; never shown for an acceptance, which needs no words).
    A GET 200 without a readable body is no server we can observe, so it is REJECTED as in
    :func:`from_response`. Never raises.
    """
    kind = classify(status, method=method)
    if kind is Verdict.FOUND:
        return Outcome(
            Verdict.REJECTED, status, note or "SCP answered 200 but its body was unusable"
        )
    retry_after = parse_retry_after((headers or {}).get("retry-after"))
    return Outcome(kind, status, None if kind is Verdict.ACCEPTED else note, retry_after)


def error_detail(parsed: Any, raw: bytes) -> str | None:
    """SCP's error message from any of the shapes seen in the wild, shortened.

    ``{"errors":[{"detail": str | [str]}]}``, ``{"message": ...}``, or a 400 list of
    ``{loc, msg}``. HTML and other non-JSON bodies give a neutral note, not their markup.
    """
    texts: list[str] = []
    if isinstance(parsed, dict):
        errors = parsed.get("errors")
        if isinstance(errors, list):
            for err in errors:
                if isinstance(err, dict):
                    texts.extend(_strings(err.get("detail") or err.get("message")))
        for key in ("detail", "message", "error"):
            texts.extend(_strings(parsed.get(key)))
    elif isinstance(parsed, list):
        for item in parsed:
            if isinstance(item, dict) and isinstance(item.get("msg"), str):
                loc = item.get("loc")
                where = ".".join(str(p) for p in loc) if isinstance(loc, list) else ""
                texts.append(f"{where}: {item['msg']}" if where else item["msg"])
    elif raw.strip():
        return "the answer was not JSON"
    text = "; ".join(dict.fromkeys(t.strip() for t in texts if t.strip()))
    if not text:
        return None
    text = " ".join(text.split())
    return text if len(text) <= MAX_DETAIL else text[: MAX_DETAIL - 1] + "…"


def _strings(value: Any) -> list[str]:
    if isinstance(value, str):
        return [value]
    if isinstance(value, list):
        return [v for v in value if isinstance(v, str)]
    return []


def parse_json(content: bytes) -> Any:
    """JSON from an answer, or None for anything else (huge, binary, hostile nesting...)."""
    if not content or len(content) > 1_000_000:
        return None
    try:
        return json.loads(content)
    except (ValueError, UnicodeDecodeError, RecursionError):
        return None


def parse_retry_after(value: str | None, *, now: float | None = None) -> float | None:
    """Seconds from a ``Retry-After`` header (delta-seconds or HTTP date), capped at one hour.

    Only ASCII digits are delta-seconds (RFC 9110's DIGIT): ``str.isdigit`` also accepts ``²``
    and other digits ``float`` cannot read, and a header must never raise out of here. Any value
    that is neither form, or that breaks a parser, is no hint at all (None).
    """
    try:
        return _retry_after_seconds(value, now=now)
    except Exception:  # a header from the network must never raise
        return None


def _retry_after_seconds(value: str | None, *, now: float | None) -> float | None:
    if not value:
        return None
    value = value.strip()
    seconds: float | None
    if value.isascii() and value.isdigit():
        seconds = float(value)
    else:
        try:
            when = email.utils.parsedate_to_datetime(value)
        except (TypeError, ValueError):
            return None
        seconds = when.timestamp() - (time.time() if now is None else now)
    if math.isnan(seconds):
        return None
    return min(max(seconds, 0.0), 3600.0)
