"""Which VirtualServers one operator process owns when several share the work (scale-out).

Why a module of its own: the split is Kubernetes' sharded list and watch (the
``ShardedListAndWatch`` feature gate): a list or watch with a ``shardSelector`` such as
``shardRange(object.metadata.uid, '0x0000000000000000', '0x8000000000000000')`` returns only
the objects whose uid hashes into the range. Everything that must agree with the API server
about that split lives here, pure and tested on its own: the hash, the range arithmetic, the
plan (``SCP_OPERATOR_SHARDS``, ``SCP_OPERATOR_SHARD_INDEX``, ``SCP_OPERATOR_SHARD_RANGES``) and
its validation, the selector string, and the in-range test the handlers use to make sure an
object outside the shard is never acted on.

The API server's rules (``k8s.io/apimachinery/pkg/sharding``): the hash is 64-bit FNV-1a of the
uid string's bytes; a range is ``[start, end)`` written as single-quoted ``0x`` plus exactly 16
lowercase hex digits, except the exclusive end of the whole space, ``0x10000000000000000``
(2^64). FNV-1a is six lines with published test vectors, so it is written here rather than
pulled in as a dependency (the PyPI packages for it are small, unmaintained or C extensions).
"""

from __future__ import annotations

import dataclasses
import itertools
import re
from collections.abc import Sequence

#: The size of the hash space: every 64-bit FNV-1a value lies in ``[0, SPACE)``.
SPACE = 1 << 64
#: The most shards the operator accepts (the chart's schema says the same).
MAX_SHARDS = 64
#: The field the API server hashes; the uid never changes, so an object never changes shard.
FIELD = "object.metadata.uid"

_FNV_OFFSET = 0xCBF29CE484222325
_FNV_PRIME = 0x100000001B3
_BOUND = re.compile(r"^0x(?:[0-9a-f]{16}|10000000000000000)$")


class PlanError(ValueError):
    """A shard plan that would leave objects without a shard, or give some two."""


def uid_hash(uid: str) -> int:
    """64-bit FNV-1a of ``uid``'s UTF-8 bytes: the value the API server compares with ranges."""
    value = _FNV_OFFSET
    for byte in uid.encode():
        value = ((value ^ byte) * _FNV_PRIME) % SPACE
    return value


def format_bound(value: int) -> str:
    """A bound as the API server requires it: ``0x`` + 16 lowercase hex digits, or 2^64."""
    if not 0 <= value <= SPACE:
        raise ValueError(f"{value} is outside the hash space [0, 2^64]")
    return "0x10000000000000000" if value == SPACE else f"0x{value:016x}"


def parse_bound(text: str) -> int:
    """A bound written as :func:`format_bound` writes it; anything else is refused."""
    text = text.strip()
    if not _BOUND.match(text):
        raise PlanError(
            f"{text!r} is not a bound: write 0x and exactly 16 lowercase hex digits "
            "(or 0x10000000000000000 for the end of the space)"
        )
    return int(text, 16)


@dataclasses.dataclass(frozen=True, order=True)
class ShardRange:
    """Uid hashes ``start`` (inclusive) to ``end`` (exclusive)."""

    start: int
    end: int

    def __post_init__(self) -> None:
        if not 0 <= self.start < self.end <= SPACE:
            raise PlanError(f"{self} is empty or outside the hash space")

    def __str__(self) -> str:
        return f"{format_bound(self.start)}-{format_bound(self.end)}"

    def contains(self, hashed: int) -> bool:
        return self.start <= hashed < self.end

    def owns(self, uid: str) -> bool:
        """Whether the object with this uid belongs to this range."""
        return self.contains(uid_hash(uid))

    def overlaps(self, other: ShardRange) -> bool:
        return self.start < other.end and other.start < self.end

    @property
    def whole(self) -> bool:
        return self.start == 0 and self.end == SPACE

    def selector(self) -> str:
        """The ``shardSelector`` the API server understands for this range."""
        return f"shardRange({FIELD}, '{format_bound(self.start)}', '{format_bound(self.end)}')"

    @classmethod
    def parse(cls, text: str) -> ShardRange:
        """``0x…-0x…`` (as :meth:`__str__` writes it)."""
        start, sep, end = text.strip().partition("-")
        if not sep:
            raise PlanError(f"{text.strip()!r} is not a range: write START-END, e.g. {WHOLE}")
        return cls(parse_bound(start), parse_bound(end))


WHOLE = ShardRange(0, SPACE)


def equal_ranges(count: int) -> list[ShardRange]:
    """``count`` ranges of (nearly) equal size: shard i owns [⌊i·2^64/N⌋, ⌊(i+1)·2^64/N⌋)."""
    if not 1 <= count <= MAX_SHARDS:
        raise PlanError(f"the number of shards must be between 1 and {MAX_SHARDS}, not {count}")
    return [ShardRange(i * SPACE // count, (i + 1) * SPACE // count) for i in range(count)]


def check_plan(ranges: Sequence[ShardRange]) -> None:
    """Refuse a plan whose ranges do not cover the hash space exactly once.

    The message names the first problem exactly (the gap or the overlap, as bounds): a gap means
    objects nobody deletes, an overlap objects two processes act on at once.
    """
    ordered = sorted(ranges)
    if not ordered:
        raise PlanError("no ranges")
    if ordered[0].start != 0:
        raise PlanError(
            f"the ranges must start at {format_bound(0)}: "
            f"gap {format_bound(0)}-{format_bound(ordered[0].start)}"
        )
    for before, after in itertools.pairwise(ordered):
        if after.start > before.end:
            raise PlanError(
                f"gap {format_bound(before.end)}-{format_bound(after.start)} "
                f"between {before} and {after}"
            )
        if after.start < before.end:
            overlap = ShardRange(after.start, min(before.end, after.end))
            raise PlanError(f"overlap {overlap} between {before} and {after}")
    if ordered[-1].end != SPACE:
        raise PlanError(
            f"the ranges must end at {format_bound(SPACE)}: "
            f"gap {format_bound(ordered[-1].end)}-{format_bound(SPACE)}"
        )


def parse_plan(text: str, count: int) -> list[ShardRange]:
    """``SCP_OPERATOR_SHARD_RANGES``: comma-separated ranges, one per shard, in shard order."""
    parts = [part for part in text.split(",") if part.strip()]
    ranges = [ShardRange.parse(part) for part in parts]
    if len(ranges) != count:
        raise PlanError(f"{len(ranges)} range(s) given for {count} shard(s): give one per shard")
    check_plan(ranges)
    return ranges


@dataclasses.dataclass(frozen=True)
class Shard:
    """This process's part of the work: shard ``index`` of ``count``, owning ``range``."""

    index: int
    count: int
    range: ShardRange

    @property
    def sharded(self) -> bool:
        """False for the default single process, which owns everything and asks for no shard."""
        return self.count > 1

    def selector(self) -> str | None:
        """The ``shardSelector`` for lists and watches; None when not sharded."""
        return self.range.selector() if self.sharded else None

    def owns(self, uid: str) -> bool:
        return self.range.owns(uid)

    @property
    def lease_suffix(self) -> str:
        """Appended to the Lease name: one Lease per shard, so shards run side by side while
        two processes of the same shard never do."""
        return f"-shard-{self.index}-of-{self.count}" if self.sharded else ""

    def __str__(self) -> str:
        return f"shard {self.index} of {self.count} (uid hashes {self.range})"


def plan(count: int, index: int, ranges: str = "") -> Shard:
    """The shard for these settings; :class:`PlanError` when they do not make a valid plan."""
    if not 1 <= count <= MAX_SHARDS:
        raise PlanError(f"the number of shards must be between 1 and {MAX_SHARDS}, not {count}")
    if not 0 <= index < count:
        raise PlanError(f"shard index {index} is not below the number of shards ({count})")
    chosen = parse_plan(ranges, count) if ranges.strip() else equal_ranges(count)
    return Shard(index=index, count=count, range=chosen[index])


def out_of_shard_message(uid: str, shard: Shard) -> str:
    """What an out-of-range object means, for the log and the error that stops the operator."""
    return (
        f"object uid {uid} (hash {format_bound(uid_hash(uid))}) is outside this {shard}: "
        "the API server ignores shardSelector: enable the ShardedListAndWatch feature gate, "
        "or run one shard"
    )
