"""Configuration of one emulator instance: where it listens, whom it trusts, how it behaves.

Everything here can also be changed at run time through the admin API (credentials, delays,
versions); the config is only the starting point, so tests can build one in a single line.
"""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, ConfigDict, Field, field_validator

from .routes import ACTIONS
from .servers import ServerSpec
from .versions import ApiVersion, default_versions

DEFAULT_ACCESS_KEY = "EMULATORACCESSKEY"
"""Fake access key used when none is configured. Not a secret: it only opens the emulator."""
DEFAULT_SECRET_KEY = "EMULATORSECRETKEY"
"""Fake secret key paired with :data:`DEFAULT_ACCESS_KEY`."""
DEFAULT_ACCOUNT_ID = "0e5a9ad5c1a14c2f8f4a6a7d3b2c1e00"
"""Account of seeded servers when neither they nor any credential name one."""


class Credential(BaseModel):
    """One access key pair the emulator accepts, with optional restrictions.

    ``allowed_actions`` models an IAM policy: None allows everything, a list allows only those
    actions (``LIST``, ``GET``, ``DELETE``, ``LOCK``, ``UNLOCK``) and answers anything else
    with 403. ``account_id``, when set, must be sent and signed as ``Scp-AccountId``.
    """

    model_config = ConfigDict(extra="forbid")

    access_key: str = Field(min_length=1)
    secret_key: str = Field(min_length=1, repr=False)
    account_id: str | None = None
    allowed_actions: frozenset[str] | None = None

    @field_validator("allowed_actions")
    @classmethod
    def _known_actions(cls, value: frozenset[str] | None) -> frozenset[str] | None:
        if value is None:
            return None
        upper = frozenset(action.upper() for action in value)
        unknown = upper - ACTIONS
        if unknown:
            raise ValueError(
                f"unknown actions {sorted(unknown)}; known actions are {sorted(ACTIONS)}"
            )
        return upper

    def public_view(self) -> dict[str, Any]:
        """What the admin API may show about this credential: everything but the secret."""
        return {
            "access_key": self.access_key,
            "account_id": self.account_id,
            "allowed_actions": (
                None if self.allowed_actions is None else sorted(self.allowed_actions)
            ),
        }


def _default_credentials() -> list[Credential]:
    return [Credential(access_key=DEFAULT_ACCESS_KEY, secret_key=DEFAULT_SECRET_KEY)]


class RuntimeSettings(BaseModel):
    """The behaviour knobs that ``GET/PATCH /_emulator/config`` reads and changes."""

    model_config = ConfigDict(extra="forbid", validate_assignment=True)

    delete_delay: float | None = Field(
        default=1.0,
        ge=0,
        description="Seconds a deleted server stays DELETING before it is gone; "
        "0 removes it at once, null keeps it DELETING until removed through the admin API.",
    )
    timestamp_window: float = Field(
        default=300.0,
        gt=0,
        description="Accepted distance, in seconds and in either direction, between "
        "Scp-Timestamp and the emulator's clock.",
    )
    reject_expired_versions: bool = Field(
        default=False,
        description="Answer 400 to API versions whose not_before date has come.",
    )
    versions: list[ApiVersion] = Field(default_factory=default_versions)
    public_url: str | None = Field(
        default=None,
        description="Base URL clients use when a proxy sits in front of the emulator; "
        "signatures over it are accepted besides those over the Host header.",
    )
    fault_timeout: float = Field(
        default=600.0,
        gt=0,
        description="How long a 'timeout' fault holds a request before answering 504.",
    )
    default_account_id: str | None = Field(
        default=None,
        description="Account of servers created without one; null: the account of the first "
        "credential that has one, else a fixed fake account.",
    )

    @field_validator("public_url")
    @classmethod
    def _strip_slash(cls, value: str | None) -> str | None:
        if value is None:
            return None
        if not value.startswith(("http://", "https://")):
            raise ValueError("public_url must start with http:// or https://")
        return value.rstrip("/")


class EmulatorConfig(RuntimeSettings):
    """Everything needed to start an emulator; the runtime knobs plus address and seed data."""

    host: str = "127.0.0.1"
    port: int = Field(default=0, ge=0, le=65535, description="0 picks a free port.")
    credentials: list[Credential] = Field(default_factory=_default_credentials)
    servers: list[ServerSpec] = Field(
        default_factory=list, description="Servers that exist when the emulator starts."
    )
    request_log_limit: int = Field(
        default=10_000,
        ge=1,
        description="Oldest request log entries are dropped beyond this many.",
    )

    def runtime_settings(self) -> RuntimeSettings:
        """A separate, mutable copy of the runtime knobs for the running emulator."""
        return RuntimeSettings.model_validate(
            self.model_dump(include=set(RuntimeSettings.model_fields))
        )
