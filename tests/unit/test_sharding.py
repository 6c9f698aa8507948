"""The shard arithmetic (scp_operator.sharding) agrees with the API server's and never leaves an
object without a shard or gives one to two shards."""

from __future__ import annotations

import itertools
import uuid

import pytest
from hypothesis import given
from hypothesis import strategies as st

from scp_operator import sharding
from scp_operator.sharding import SPACE, PlanError, ShardRange


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        # Published FNV-1a 64-bit test vectors (Fowler/Noll/Vo), and Go's hash/fnv tests.
        ("", 0xCBF29CE484222325),
        ("a", 0xAF63DC4C8601EC8C),
        ("foobar", 0x85944171F73967E8),
        ("abc", 0xE71FA2190541574B),
    ],
)
def test_the_hash_is_fnv_1a_64(text: str, expected: int) -> None:
    assert sharding.uid_hash(text) == expected


def test_bounds_are_written_as_the_api_server_requires() -> None:
    assert sharding.format_bound(0) == "0x0000000000000000"
    assert sharding.format_bound(SPACE) == "0x10000000000000000"
    assert sharding.format_bound(0xABC) == "0x0000000000000abc"
    with pytest.raises(ValueError, match="outside the hash space"):
        sharding.format_bound(SPACE + 1)


@pytest.mark.parametrize(
    "text",
    ["0x0", "0X0000000000000000", "0x000000000000000A", "0x20000000000000000", "1000", "0x-1"],
)
def test_a_bound_in_any_other_form_is_refused(text: str) -> None:
    with pytest.raises(PlanError, match="16 lowercase hex digits"):
        sharding.parse_bound(text)


def test_the_selector_is_the_api_servers_syntax() -> None:
    assert ShardRange(0, 1 << 63).selector() == (
        "shardRange(object.metadata.uid, '0x0000000000000000', '0x8000000000000000')"
    )
    assert ShardRange(1 << 63, SPACE).selector() == (
        "shardRange(object.metadata.uid, '0x8000000000000000', '0x10000000000000000')"
    )


def test_equal_ranges_follow_the_documented_formula() -> None:
    assert [str(r) for r in sharding.equal_ranges(3)] == [
        "0x0000000000000000-0x5555555555555555",
        "0x5555555555555555-0xaaaaaaaaaaaaaaaa",
        "0xaaaaaaaaaaaaaaaa-0x10000000000000000",
    ]
    assert sharding.equal_ranges(1) == [sharding.WHOLE]


def test_one_shard_is_not_sharded_and_asks_for_no_selector() -> None:
    shard = sharding.plan(1, 0)
    assert not shard.sharded
    assert shard.selector() is None
    assert shard.lease_suffix == ""
    assert shard.owns("any-uid")


def test_a_shard_names_its_lease_and_selector() -> None:
    shard = sharding.plan(3, 1)
    assert shard.lease_suffix == "-shard-1-of-3"
    assert shard.selector() == shard.range.selector()


@pytest.mark.parametrize(
    ("plan", "problem"),
    [
        (
            "0x0000000000000001-0x10000000000000000",
            "must start at 0x0000000000000000: gap 0x0000000000000000-0x0000000000000001",
        ),
        (
            "0x0000000000000000-0xffffffffffffffff",
            "must end at 0x10000000000000000: gap 0xffffffffffffffff-0x10000000000000000",
        ),
        ("0x8000000000000000-0x0000000000000000", "is empty"),
        ("0x0000000000000000", "is not a range"),
    ],
)
def test_a_plan_that_does_not_cover_the_space_is_refused_exactly(plan: str, problem: str) -> None:
    with pytest.raises(PlanError) as refused:
        sharding.parse_plan(plan, 1)
    assert problem in str(refused.value)


def test_ranges_may_be_listed_in_any_order_one_per_shard() -> None:
    plan = "0x8000000000000000-0x10000000000000000,0x0000000000000000-0x8000000000000000"
    shard = sharding.plan(2, 0, plan)
    assert shard.range == ShardRange(1 << 63, SPACE)


def test_the_out_of_shard_message_says_what_to_do() -> None:
    message = sharding.out_of_shard_message("u-1", sharding.plan(2, 0))
    assert "enable the ShardedListAndWatch feature gate, or run one shard" in message
    assert "shard 0 of 2" in message


@st.composite
def plans(draw: st.DrawFn) -> list[ShardRange]:
    """A valid uneven plan: sorted distinct cut points between 0 and 2^64, shuffled."""
    cuts = draw(st.lists(st.integers(1, SPACE - 1), unique=True, max_size=63))
    bounds = [0, *sorted(cuts), SPACE]
    ranges = [ShardRange(a, b) for a, b in itertools.pairwise(bounds)]
    return draw(st.permutations(ranges))


@given(plan=plans(), uid=st.text())
def test_every_uid_lands_in_exactly_one_shard_of_any_valid_plan(
    plan: list[ShardRange], uid: str
) -> None:
    text = ",".join(str(r) for r in plan)
    shards = [sharding.plan(len(plan), i, text) for i in range(len(plan))]
    assert sum(shard.owns(uid) for shard in shards) == 1


@given(count=st.integers(1, sharding.MAX_SHARDS), uid=st.uuids())
def test_every_uid_lands_in_exactly_one_equal_shard(count: int, uid: object) -> None:
    shards = [sharding.plan(count, i) for i in range(count)]
    assert sum(shard.owns(str(uid)) for shard in shards) == 1


@given(plan=plans(), data=st.data())
def test_removing_or_widening_a_range_is_always_refused(
    plan: list[ShardRange], data: st.DataObject
) -> None:
    if len(plan) < 2:
        return
    dropped = data.draw(st.integers(0, len(plan) - 1))
    with pytest.raises(PlanError, match=r"gap|must start|must end"):
        sharding.check_plan([r for i, r in enumerate(plan) if i != dropped])
    ordered = sorted(plan)
    first = ordered[0]
    widened = [ShardRange(first.start, ordered[1].start + 1), *ordered[1:]]
    with pytest.raises(PlanError, match="overlap"):
        sharding.check_plan(widened)


# ---- where the shard is used: Kopf's options and the handlers' range check ---------------------


def test_kopf_lists_and_watches_only_this_shards_virtualservers() -> None:
    import kopf

    from scp_operator.constants import GROUP, PLURAL, VERSION
    from scp_operator.handlers import startup

    options = kopf.OperatorSettings()
    startup.set_kopf_options(options, sharding.plan(2, 1))
    resource = kopf.Resource(GROUP, VERSION, PLURAL)
    assert options.watching.shard_selectors.collect(resource) == [
        "shardRange(object.metadata.uid, '0x8000000000000000', '0x10000000000000000')"
    ]
    crds = kopf.Resource("apiextensions.k8s.io", "v1", "customresourcedefinitions")
    assert options.watching.shard_selectors.collect(crds) == []  # the CRD is never sharded
    unsharded = kopf.OperatorSettings()
    startup.set_kopf_options(unsharded, sharding.plan(1, 0))
    assert len(unsharded.watching.shard_selectors) == 0


class _Operator:
    def __init__(self, shard: sharding.Shard) -> None:
        self.shard = shard


class _Settings:
    def __init__(self, shard: sharding.Shard) -> None:
        self.operator = _Operator(shard)


class _Runtime:
    def __init__(self, shard: sharding.Shard) -> None:
        self.settings = _Settings(shard)


def _uid_in(shard: sharding.Shard, inside: bool) -> str:
    return next(u for u in map(_uid, range(10_000)) if shard.owns(u) == inside)


def _uid(n: int) -> str:
    """A deterministic uid shaped like the API server's (similar short strings hash close)."""
    return str(uuid.uuid5(uuid.NAMESPACE_OID, str(n)))


def test_an_object_outside_the_shard_is_refused_and_stops_the_operator_once(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    import kopf

    from scp_operator import lease
    from scp_operator.handlers import virtualservers

    stops: list[None] = []
    monkeypatch.setattr(lease, "stop_process", lambda: stops.append(None))
    shard = sharding.plan(2, 0)
    memo = kopf.Memo()
    memo.runtime = _Runtime(shard)
    virtualservers.refuse_outside_shard(_uid_in(shard, True), memo)  # its own: nothing happens
    assert stops == []
    foreign = _uid_in(shard, False)
    for _ in range(2):
        with pytest.raises(kopf.TemporaryError) as refused:
            virtualservers.refuse_outside_shard(foreign, memo)
        assert "enable the ShardedListAndWatch feature gate" in str(refused.value)
    assert stops == [None]  # one stop, however many objects arrive meanwhile


def test_the_cascade_keeps_only_this_shards_objects() -> None:
    from scp_operator import cascade

    shard = sharding.plan(3, 2)
    items = [{"metadata": {"uid": _uid(n)}} for n in range(300)]
    kept = cascade.mine(items, shard)
    assert kept == [i for i in items if shard.owns(i["metadata"]["uid"])]
    assert 0 < len(kept) < len(items)
    assert cascade.mine(items, sharding.plan(1, 0)) == items
