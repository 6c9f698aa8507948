"""Which volumes outlive a deleted server: the words of the VolumesRetained event, and the bounded
reading of SCP's ``volumes`` list they come from."""

from __future__ import annotations

from typing import Any

import pytest

from scp_operator import volumes
from scp_operator.model import VolumeObservation
from scp_operator.scp.answers import MAX_VOLUMES, describe_volumes

SID = "2a9be312-5d4b-4bc8-b2ae-35100fa9241f"


def vols(*flags: bool | None) -> list[VolumeObservation]:
    return [VolumeObservation(id=f"vol-{i}", delete_on_termination=f) for i, f in enumerate(flags)]


def test_nothing_is_said_when_every_volume_dies_with_the_server() -> None:
    assert volumes.report(SID, vols(True, True)) is None
    assert volumes.report(SID, []) is None


def test_kept_volumes_are_named_and_counted() -> None:
    said = volumes.report(SID, vols(True, False, None))
    assert said is not None
    reason, message = said
    assert reason == "VolumesRetained"
    # a missing flag is reported as kept: silence would read as "nothing left behind"
    assert "2 block storage volumes" in message
    assert "vol-1, vol-2" in message
    assert "vol-0" not in message
    assert SID in message


def test_a_long_list_names_ten_and_counts_the_rest() -> None:
    said = volumes.report(SID, vols(*([False] * 25)))
    assert said is not None
    assert "vol-9 and 15 more" in said[1]
    assert "vol-10" not in said[1]


def test_unread_volumes_are_reported_as_unknown_not_as_nothing() -> None:
    said = volumes.report(SID, None)
    assert said is not None
    assert said[0] == "VolumesUnknown"
    assert "never read" in said[1]


@pytest.mark.parametrize(
    ("body", "expected"),
    [
        (None, None),
        ({}, None),
        ({"volumes": "not a list"}, None),
        ({"volumes": []}, []),
        (
            {"volumes": [{"id": "v1", "delete_on_termination": False}, "junk", {"no": "id"}]},
            [{"id": "v1", "delete_on_termination": False}],
        ),
        (
            {"volumes": [{"id": "v2", "delete_on_termination": "yes"}]},
            [{"id": "v2", "delete_on_termination": None}],  # wrong type: unknown, reported kept
        ),
    ],
)
def test_scps_volume_list_is_read_defensively(body: Any, expected: Any) -> None:
    assert describe_volumes(body) == expected


def test_a_hostile_volume_list_is_bounded_in_count_length_and_characters() -> None:
    body = {"volumes": [{"id": "x\n" * 100, "delete_on_termination": False}] * 1000}
    seen = describe_volumes(body)
    assert seen is not None
    assert len(seen) == MAX_VOLUMES
    assert all(len(v["id"]) <= 64 and "\n" not in v["id"] for v in seen)
