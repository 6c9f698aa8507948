"""The retry schedule: exponential, capped, jittered, never zero."""

import pytest

from scp_operator.backoff import MIN_DELAY, Schedule


def test_raw_schedule_doubles_up_to_the_cap() -> None:
    s = Schedule(5, 900)
    assert [s.raw(n) for n in range(9)] == [5, 10, 20, 40, 80, 160, 320, 640, 900]
    assert s.raw(10_000) == 900


@pytest.mark.parametrize("jitter", [0.0, 0.3, 0.999, -1, 7])
def test_jitter_stays_within_half_to_full(jitter: float) -> None:
    s = Schedule(5, 900)
    for n in range(15):
        assert s.raw(n) / 2 <= s.delay(n, jitter) <= s.raw(n)


def test_never_zero_even_with_a_tiny_base() -> None:
    assert Schedule(0.001, 0.001).delay(0, 0.0) == MIN_DELAY


def test_retry_after_is_a_floor() -> None:
    assert Schedule(5, 900).delay(0, 0.0, at_least=42) == 42


def test_blocked_object_makes_few_calls_in_its_first_hour() -> None:
    """The default 409 schedule, worst case (shortest jitter): calls in 3600 s."""
    s = Schedule(5, 900)
    t, calls, n = 0.0, 0, 0
    while t < 3600:
        calls += 1
        t += s.delay(n, 0.0)
        n += 1
    assert calls <= 20
