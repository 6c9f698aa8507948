"""Limits on what the operator may do at once: SCP traffic and deletions.

Kopf runs one worker per object and has no limiter for calls to an external API, so a namespace
of a thousand objects deleted at once would open a thousand requests to SCP. These limits are
shared by every handler (they live on the runtime, on Kopf's memo).
"""

from __future__ import annotations

import asyncio
import collections
import time
from collections.abc import Callable
from types import TracebackType


class RequestLimiter:
    """At most ``concurrency`` requests in flight, and at most ``rate`` starts per second."""

    def __init__(
        self, concurrency: int, rate: float = 0.0, clock: Callable[[], float] = time.monotonic
    ) -> None:
        self._semaphore = asyncio.Semaphore(concurrency)
        self._rate = rate
        self._clock = clock
        self._lock = asyncio.Lock()
        self._next_start = 0.0
        self.in_flight = 0

    async def __aenter__(self) -> None:
        await self._semaphore.acquire()
        try:
            if self._rate > 0:
                async with self._lock:  # a token bucket of size 1: evenly spaced starts
                    now = self._clock()
                    wait = self._next_start - now
                    self._next_start = max(now, self._next_start) + 1.0 / self._rate
                if wait > 0:
                    await asyncio.sleep(wait)
        except BaseException:
            self._semaphore.release()
            raise
        self.in_flight += 1

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.in_flight -= 1
        self._semaphore.release()


class DeletionBudget:
    """The blast-radius limit: at most ``limit`` deletions per sliding ``window`` seconds.

    It counts deletions, not attempts: a slot is taken right before a DELETE is sent (no await
    between the check and the taking, so concurrent handlers cannot both pass) and given back
    when SCP did not accept it, so a few locked servers retrying every few minutes cannot use up
    a window meant for real deletions. An object counts once per window however often its
    DELETE is repeated.

    Kept in memory: a restart starts a new window. That errs towards deleting more after a crash
    loop, which the limit cannot prevent anyway (each restart is a new process); the limit exists
    to stop a runaway mass deletion inside one healthy process, e.g. an unintended namespace
    deletion or a bad sync, long enough for a person to look.
    """

    def __init__(self, limit: int, window: float, clock: Callable[[], float] = time.monotonic):
        self.limit = limit
        self.window = window
        self._clock = clock
        self._spent: collections.deque[tuple[float, str]] = collections.deque()

    def _expire(self, now: float) -> None:
        while self._spent and self._spent[0][0] <= now - self.window:
            self._spent.popleft()

    def _counted(self, uid: str) -> bool:
        return bool(uid) and any(u == uid for _, u in self._spent)

    def wait_time(self, uid: str = "") -> float | None:
        """Seconds until a DELETE may be sent, or None when one may be sent now."""
        if self.limit <= 0:
            return None
        now = self._clock()
        self._expire(now)
        if len(self._spent) < self.limit or self._counted(uid):
            return None
        return max(1.0, self._spent[0][0] + self.window - now)

    def spend(self, uid: str = "") -> bool:
        """Take a slot for ``uid``'s DELETE (call it right before sending); False when ``uid``
        already holds one (a repeated DELETE of one object counts once)."""
        if self.limit <= 0 or self._counted(uid):
            return False
        self._expire(self._clock())
        self._spent.append((self._clock(), uid))
        return True

    def refund(self, uid: str) -> None:
        """Give back the slot ``spend`` just took: SCP did not accept the DELETE."""
        for entry in reversed(self._spent):
            if entry[1] == uid:
                self._spent.remove(entry)
                return

    @property
    def spent(self) -> int:
        """Deletions counted in the current window."""
        self._expire(self._clock())
        return len(self._spent)
