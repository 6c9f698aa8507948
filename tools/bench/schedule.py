"""What the backoff schedule predicts for an object SCP keeps answering 409.

The operator's delete handler runs with Kopf's ``retry`` count (0 on the first attempt) and, on
409, raises ``TemporaryError(delay=Schedule.delay(retry, jitter))`` with the fast schedule. So
call ``k`` happens ``sum(delay(i, jitter_i) for i < k)`` after the first one, plus whatever time
each cycle spends on the SCP answer and the Kubernetes round trips (ignored here: with zero
overhead the count is an upper bound).
"""

from __future__ import annotations

import random
import statistics
from typing import Any

from scp_operator.backoff import Schedule


def call_times(
    schedule: Schedule, horizon: float, jitters: list[float] | None = None
) -> list[float]:
    """Times (from the first call) of the calls made before ``horizon`` seconds.

    ``jitters`` are the handler's draws, one per attempt; missing draws repeat the last one.
    """
    times, t, attempt = [], 0.0, 0
    draws = jitters or [0.5]
    while t < horizon:
        times.append(t)
        jitter = draws[min(attempt, len(draws) - 1)]
        t += schedule.delay(attempt, jitter)
        attempt += 1
    return times


def gap_bounds(schedule: Schedule, attempt: int) -> tuple[float, float]:
    """The shortest and longest delay after attempt ``attempt`` (jitter 0 and jitter 1)."""
    return schedule.delay(attempt, 0.0), schedule.delay(attempt, 1.0)


def predict(
    schedule: Schedule, horizon: float, draws: int = 10_000, seed: int = 20251126
) -> dict[str, Any]:
    """Calls in the first ``horizon`` seconds: the distribution over jitter draws, and bounds."""
    rng = random.Random(seed)
    counts = sorted(
        len(call_times(schedule, horizon, [rng.random() for _ in range(200)])) for _ in range(draws)
    )
    return {
        "schedule": {"base": schedule.base, "cap": schedule.cap},
        "horizon_s": horizon,
        "calls_median": statistics.median(counts),
        "calls_p95": counts[int(0.95 * (len(counts) - 1))],
        "calls_min": counts[0],
        "calls_max": counts[-1],
        "calls_if_jitter_always_0": len(call_times(schedule, horizon, [0.0])),
        "calls_if_jitter_always_1": len(call_times(schedule, horizon, [1.0])),
        "first_delays_s": [round(schedule.raw(k), 2) for k in range(12)],
    }
