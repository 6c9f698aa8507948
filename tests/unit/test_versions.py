"""API version table and support warnings."""

import datetime

import pytest

from scp_operator.scp import versions

TODAY = datetime.date(2026, 11, 26)


def test_builtin_table_matches_the_seed() -> None:
    assert list(versions.BUILTIN) == ["1.3", "1.2", "1.1", "1.0"]
    assert versions.BUILTIN["1.3"].status is versions.Status.CURRENT
    assert versions.BUILTIN["1.2"].supported_until == datetime.date(2026, 8, 31)
    assert versions.newest() == "1.3"


def test_default_version_is_current_and_gives_no_warning() -> None:
    assert versions.support_warning(versions.DEFAULT_VERSION, versions.BUILTIN, TODAY) is None


@pytest.mark.parametrize("old", ["1.2", "1.1", "1.0"])
def test_every_older_version_is_past_support_today(old: str) -> None:
    warning = versions.support_warning(old, versions.BUILTIN, TODAY)
    assert warning is not None
    assert "past its minimum support date" in warning
    assert "SCP_API_VERSION=1.3" in warning


def test_deprecated_before_its_date_still_warns() -> None:
    warning = versions.support_warning("1.1", versions.BUILTIN, datetime.date(2026, 1, 1))
    assert warning is not None
    assert "deprecated" in warning


def test_live_list_is_parsed_leniently() -> None:
    table = versions.parse_version_list(
        {
            "versions": [
                {"id": "v1.3", "status": "current", "not_before": None},
                {"id": "v1.2", "status": "SUPPORTED", "not_before": "20260831"},
                {"id": "v1.1", "status": "weird", "not_before": "not a date"},
                {"junk": True},
            ]
        }
    )
    assert table["1.3"].status is versions.Status.CURRENT
    assert table["1.2"].supported_until == datetime.date(2026, 8, 31)
    assert table["1.1"].status is versions.Status.UNKNOWN
    assert table["1.1"].supported_until is None


@pytest.mark.parametrize("payload", [None, [], {"versions": "x"}, {"versions": []}, {"other": 1}])
def test_a_root_without_a_version_list_is_refused(payload: object) -> None:
    with pytest.raises(ValueError, match="version list"):
        versions.parse_version_list(payload)


def test_version_missing_from_live_list_warns() -> None:
    table = versions.parse_version_list({"versions": [{"id": "v1.4", "status": "CURRENT"}]})
    assert "not in the service's version list" in (
        versions.support_warning("1.3", table, TODAY) or ""
    )
