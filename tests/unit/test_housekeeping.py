"""Memory back after a burst (housekeeping.py): a full collection, then glibc's malloc_trim."""

from __future__ import annotations

import asyncio
import gc
import weakref

import pytest

from scp_operator import housekeeping


class Node:
    def __init__(self) -> None:
        self.other: Node | None = None


def test_a_round_collects_cyclic_garbage_the_oldest_generation_would_keep() -> None:
    a, b = Node(), Node()
    a.other, b.other = b, a  # a cycle: reference counting alone never frees it
    gone = weakref.ref(a)
    gc.collect()
    gc.freeze()  # as after startup: what existed before is not walked again
    try:
        c, d = Node(), Node()
        c.other, d.other = d, c
        watched = weakref.ref(c)
        del c, d
        trims: list[int] = []
        assert housekeeping.tidy(lambda: trims.append(1)) >= 2
        assert watched() is None
        assert trims == [1]  # the allocator is asked to give memory back after the collection
    finally:
        gc.unfreeze()
    del a, b
    gc.collect()
    assert gone() is None


def test_malloc_trim_is_found_on_this_glibc_system() -> None:
    trim = housekeeping._malloc_trim()
    assert trim is not None
    trim()  # returns 0 or 1; must not crash


async def test_the_task_runs_rounds_until_stopped() -> None:
    task = housekeeping.start(interval=0.01)
    try:
        await asyncio.sleep(0.05)
        assert not task.done()
    finally:
        await housekeeping.stop(task)
        gc.unfreeze()
    assert task.cancelled()


@pytest.mark.parametrize(
    ("busy", "busy_before", "since_round", "due"),
    [
        (True, False, 0.0, True),  # during a burst
        (False, True, 0.0, True),  # right after it: the burst's memory goes back
        (False, False, 10.0, False),  # idle: nothing to do
        (False, False, housekeeping.IDLE_INTERVAL, True),  # but now and then anyway
    ],
)
def test_a_round_is_due_while_busy_just_after_and_rarely_when_idle(
    busy: bool, busy_before: bool, since_round: float, due: bool
) -> None:
    assert housekeeping.due(busy, busy_before, since_round) is due
