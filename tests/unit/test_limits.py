"""The request limiter and the blast-radius budget."""

import asyncio

from scp_operator.limits import DeletionBudget, RequestLimiter


async def test_limiter_never_exceeds_its_concurrency() -> None:
    limiter = RequestLimiter(3)
    peak = 0

    async def one() -> None:
        nonlocal peak
        async with limiter:
            peak = max(peak, limiter.in_flight)
            await asyncio.sleep(0.01)

    await asyncio.gather(*(one() for _ in range(20)))
    assert peak == 3
    assert limiter.in_flight == 0


async def test_rate_limit_spaces_the_starts() -> None:
    limiter = RequestLimiter(10, rate=50.0)
    loop = asyncio.get_running_loop()
    starts: list[float] = []

    async def one() -> None:
        async with limiter:
            starts.append(loop.time())

    await asyncio.gather(*(one() for _ in range(6)))
    assert starts[-1] - starts[0] >= 5 / 50.0 * 0.9


def test_budget_holds_beyond_the_limit_until_the_window_moves() -> None:
    now = [0.0]
    budget = DeletionBudget(2, 60.0, clock=lambda: now[0])
    assert budget.wait_time() is None
    budget.spend()
    budget.spend()
    assert budget.wait_time() == 60.0
    now[0] = 30.0
    assert budget.wait_time() == 30.0
    now[0] = 60.5
    assert budget.wait_time() is None
    assert budget.spent == 0


def test_budget_zero_means_unlimited() -> None:
    budget = DeletionBudget(0, 60.0)
    for _ in range(1000):
        budget.spend()
    assert budget.wait_time() is None


def test_budget_counts_deletions_not_attempts() -> None:
    """Defect 8: a few locked servers retrying used up the window meant for real deletions."""
    now = [0.0]
    budget = DeletionBudget(2, 3600.0, clock=lambda: now[0])
    for attempt in range(10):  # a locked server: every DELETE answered 409, the slot given back
        now[0] = attempt * 60.0
        assert budget.wait_time("locked") is None
        assert budget.spend("locked")
        budget.refund("locked")
    assert budget.spent == 0
    assert budget.spend("a")  # accepted: kept
    assert not budget.spend("a")  # the same object again counts once
    assert budget.wait_time("b") is None
    assert budget.spend("b")
    assert budget.wait_time("c") is not None
    assert budget.wait_time("a") is None  # a repeated DELETE of a counted object may go
