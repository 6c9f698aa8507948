"""Retry delays: exponential, capped, jittered, never zero.

Kopf has no exponential backoff of its own; a held deletion writes its next attempt's time
(``status.deletion.nextAttemptTime``, waited for by :mod:`scp_operator.handlers.pacing`) from a
delay computed here from Kopf's ``retry`` count (which Kopf persists in the object's status, so
the schedule survives restarts).
"""

from __future__ import annotations

import dataclasses

MIN_DELAY = 1.0


@dataclasses.dataclass(frozen=True)
class Schedule:
    """``base * 2**attempt`` up to ``cap`` seconds."""

    base: float
    cap: float

    def raw(self, attempt: int) -> float:
        """The un-jittered delay: monotone in ``attempt`` up to the cap."""
        exponent = min(max(attempt, 0), 60)
        return float(max(MIN_DELAY, min(self.cap, self.base * (2.0**exponent))))

    def delay(self, attempt: int, jitter: float, *, at_least: float | None = None) -> float:
        """A jittered delay in ``[raw/2, raw]`` ("equal jitter"), never below ``at_least``.

        ``jitter`` is a number in [0, 1) drawn by the caller, so this stays a pure function;
        equal jitter spreads a burst of blocked objects without ever retrying at once.
        """
        raw = self.raw(attempt)
        jitter = min(max(jitter, 0.0), 1.0)
        value = raw / 2 + (raw / 2) * jitter
        if at_least is not None:
            value = max(value, at_least)
        return max(MIN_DELAY, value)
