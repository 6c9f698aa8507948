"""The virtualserver API version table and the ``Scp-Api-Version`` header check.

SCP selects an API micro-version per request with ``Scp-Api-Version: virtualserver X.Y`` and
publishes its version list, unsigned, at the service root. Deprecated versions stop working once
their not-before date comes; the emulator can enforce that (``reject_expired_versions``) so that
clients can be tested against a version being switched off.
"""

from __future__ import annotations

import datetime as dt
import re
from dataclasses import dataclass
from typing import Any

from pydantic import BaseModel, ConfigDict, Field

SERVICE_NAME = "virtualserver"
_HEADER_RE = re.compile(r"^\s*(?P<service>\S+)\s+(?P<version>\d+\.\d+)\s*$")


class ApiVersion(BaseModel):
    """One row of the service's version list, in the shape the root document publishes.

    Extra keys are kept and published as given, so a test can mimic fields this emulator does
    not know about.
    """

    model_config = ConfigDict(extra="allow")

    id: str = Field(pattern=r"^v\d+\.\d+$", description="e.g. v1.3")
    status: str = Field(description="CURRENT, SUPPORTED or DEPRECATED")
    not_before: dt.date | None = None

    @property
    def number(self) -> str:
        """The version as the header spells it: ``1.3`` for ``v1.3``."""
        return self.id.removeprefix("v")

    def document(self) -> dict[str, Any]:
        """The JSON row for ``GET /`` (dates as ISO strings, null when unset)."""
        return self.model_dump(mode="json")


def default_versions() -> list[ApiVersion]:
    """The table from the DELETE API page (see the seed document)."""
    return [
        ApiVersion(id="v1.3", status="CURRENT", not_before=None),
        ApiVersion(id="v1.2", status="SUPPORTED", not_before=dt.date(2026, 8, 31)),
        ApiVersion(id="v1.1", status="DEPRECATED", not_before=dt.date(2026, 5, 31)),
        ApiVersion(id="v1.0", status="DEPRECATED", not_before=dt.date(2025, 12, 31)),
    ]


@dataclass(frozen=True)
class VersionVerdict:
    """The outcome of checking one request's version header: a version, or why not."""

    version: ApiVersion | None
    error: str | None = None


def current_version(versions: list[ApiVersion]) -> ApiVersion | None:
    """The version that answers requests without a header: the first CURRENT, else the first."""
    for version in versions:
        if version.status.upper() == "CURRENT":
            return version
    return versions[0] if versions else None


def check_version_header(
    header: str | None,
    versions: list[ApiVersion],
    *,
    reject_expired: bool,
    today: dt.date,
) -> VersionVerdict:
    """Resolve ``Scp-Api-Version`` against the configured table.

    A missing header means the current version (as the seed page says). A version whose
    not-before date has come is refused only when ``reject_expired`` is set: the seed says such
    versions are "no longer supported", but when the real gateway starts refusing is unknown.
    """
    if header is None or not header.strip():
        version = current_version(versions)
        if version is None:
            return VersionVerdict(None, "Unsupported API version: no versions are configured")
        return VersionVerdict(version)
    match = _HEADER_RE.match(header)
    if match is None or match["service"] != SERVICE_NAME:
        return VersionVerdict(None, f"Unsupported API version {header!r}")
    number = match["version"]
    for version in versions:
        if version.number == number:
            if reject_expired and version.not_before is not None and today >= version.not_before:
                return VersionVerdict(
                    None,
                    f"Unsupported API version {header!r}: "
                    f"not supported since {version.not_before.isoformat()}",
                )
            return VersionVerdict(version)
    return VersionVerdict(None, f"Unsupported API version {header!r}")
