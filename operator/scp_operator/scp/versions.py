"""The virtualserver API versions the operator knows, and how supported each one still is.

The built-in table is the seed document's (the DELETE call is the same in all four versions);
at startup the operator also reads the live list from the service root and warns when the
configured version is deprecated or past its minimum support date there.
"""

from __future__ import annotations

import dataclasses
import datetime
import enum
from collections.abc import Mapping
from typing import Any


class Status(enum.StrEnum):
    """Lifecycle status of an API version, as SCP names it."""

    CURRENT = "CURRENT"
    SUPPORTED = "SUPPORTED"
    DEPRECATED = "DEPRECATED"
    UNKNOWN = "UNKNOWN"


@dataclasses.dataclass(frozen=True)
class ApiVersion:
    """One API version with its status and minimum-support date (``None``: no end announced)."""

    version: str
    status: Status
    supported_until: datetime.date | None


BUILTIN: Mapping[str, ApiVersion] = {
    v.version: v
    for v in (
        ApiVersion("1.3", Status.CURRENT, None),
        ApiVersion("1.2", Status.SUPPORTED, datetime.date(2026, 8, 31)),
        ApiVersion("1.1", Status.DEPRECATED, datetime.date(2026, 5, 31)),
        ApiVersion("1.0", Status.DEPRECATED, datetime.date(2025, 12, 31)),
    )
}
DEFAULT_VERSION = "1.3"


def newest(table: Mapping[str, ApiVersion] = BUILTIN) -> str:
    """The CURRENT version of a table, else the highest number."""
    current = [v.version for v in table.values() if v.status is Status.CURRENT]
    if current:
        return current[0]
    return max(table, key=lambda v: tuple(int(p) for p in v.split(".")))


def parse_version_list(payload: Any) -> dict[str, ApiVersion]:
    """Read the service root's ``{"versions": [{"id": "v1.3", ...}]}``; raise ValueError if not.

    Lenient about details (unknown statuses, missing or odd dates) and strict about shape, because
    a root that does not answer with a version list is probably not SCP at all.
    """
    if not isinstance(payload, dict) or not isinstance(payload.get("versions"), list):
        raise ValueError("the service root did not answer with a version list")
    table: dict[str, ApiVersion] = {}
    for item in payload["versions"]:
        if not isinstance(item, dict) or not isinstance(item.get("id"), str):
            continue
        version = item["id"].removeprefix("v")
        try:
            status = Status(str(item.get("status", "")).upper())
        except ValueError:
            status = Status.UNKNOWN
        table[version] = ApiVersion(version, status, _parse_date(item.get("not_before")))
    if not table:
        raise ValueError("the service root's version list is empty")
    return table


def _parse_date(value: Any) -> datetime.date | None:
    if not isinstance(value, str) or not value:
        return None
    text = value.strip()[:10].replace("/", "-")
    if len(text) == 8 and text.isdigit():
        text = f"{text[:4]}-{text[4:6]}-{text[6:]}"
    try:
        return datetime.date.fromisoformat(text)
    except ValueError:
        return None


def support_warning(
    version: str, table: Mapping[str, ApiVersion], today: datetime.date
) -> str | None:
    """A one-line warning when ``version`` is deprecated, unlisted or past its support date."""
    info = table.get(version)
    best = newest(table)
    if info is None:
        return f"SCP API version {version} is not in the service's version list; use {best}"
    if info.supported_until is not None and info.supported_until < today:
        return (
            f"SCP API version {version} is past its minimum support date "
            f"{info.supported_until.isoformat()} and may stop working at any time; "
            f"set SCP_API_VERSION={best}"
        )
    if info.status is Status.DEPRECATED:
        until = info.supported_until.isoformat() if info.supported_until else "an unannounced date"
        return f"SCP API version {version} is deprecated (supported until {until}); use {best}"
    return None
