"""All configuration, loaded once at startup and validated before Kopf starts.

``SCP_*`` describes the cloud (keys, region, endpoint, API version); ``SCP_OPERATOR_*`` the
operator's own behaviour. A bad value stops the operator with one line naming the variable:
a typo in a deletion operator's settings must never be discovered at deletion time.

Size: about 370 lines, most of them one ``Field`` per variable with its bounds and the
description the README settings table repeats (tests/unit/test_docs.py keeps the
two in step); the validators that relate fields (backoff caps, the shard plan) need the fields
beside them, so the module is not split by topic.
"""

from __future__ import annotations

import difflib
import re
from collections.abc import Mapping
from pathlib import Path
from typing import Literal

from pydantic import Field, SecretStr, ValidationError, field_validator, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from scp_operator import sharding
from scp_operator.model import REGION_PATTERN
from scp_operator.scp import endpoints, versions


class SettingsError(Exception):
    """A setting is invalid; the message names the environment variable."""


class ScpSettings(BaseSettings):
    """The cloud side: ``SCP_*``."""

    model_config = SettingsConfigDict(env_prefix="SCP_", extra="ignore", frozen=True)

    access_key: SecretStr | None = Field(None, description="SCP access key.")
    secret_key: SecretStr | None = Field(None, description="SCP secret key.")
    credentials_dir: Path | None = Field(
        None, description="Mounted Secret directory with files access-key and secret-key."
    )
    region: str = Field("kr-west1", pattern=REGION_PATTERN, description="Default region.")
    environment: Literal["s", "g", "e"] = Field("e", description="SCP environment letter.")
    endpoint: str | None = Field(None, description="Explicit base URL; overrides region/env.")
    api_version: str = Field(versions.DEFAULT_VERSION, description="virtualserver API version.")
    account_id: str = Field("", description="Optional account id (signed, Scp-AccountId).")
    language: Literal["en-US", "ko-KR"] = Field("en-US", description="Accept-Language.")
    ca_bundle: Path | None = Field(
        None, description="PEM bundle of extra trusted CAs (SSL_CERT_FILE is honoured too)."
    )

    @field_validator("api_version")
    @classmethod
    def _known_version(cls, value: str) -> str:
        value = value.strip().removeprefix("virtualserver ").removeprefix("v")
        if value not in versions.BUILTIN:
            known = ", ".join(versions.BUILTIN)
            raise ValueError(f"unknown API version {value!r}; known: {known}")
        return value

    @field_validator("endpoint")
    @classmethod
    def _valid_endpoint(cls, value: str | None) -> str | None:
        """Stored in the form httpx sends (see ``endpoints.normalise_base``), or refused."""
        return endpoints.normalise_base(value) if value else None

    @field_validator("account_id")
    @classmethod
    def _sendable_account_id(cls, value: str) -> str:
        """The account id is signed and sent as the ``Scp-AccountId`` header, so it must be
        printable ASCII without spaces: anything else would fail every call deep inside the HTTP
        client (or be changed on the wire and fail the signature). The value is not echoed.
        """
        value = value.strip()
        if value and (
            not value.isascii() or not value.isprintable() or any(c.isspace() for c in value)
        ):
            raise ValueError(
                "holds characters an HTTP header cannot carry (non-ASCII, spaces or control "
                "characters); it must be the plain account id, or empty"
            )
        return value

    @field_validator("credentials_dir")
    @classmethod
    def _is_directory(cls, value: Path | None) -> Path | None:
        if value is not None and not value.is_dir():
            raise ValueError(f"{value} is not a directory")
        return value

    @field_validator("ca_bundle")
    @classmethod
    def _is_file(cls, value: Path | None) -> Path | None:
        if value is not None and not value.is_file():
            raise ValueError(f"{value} is not a readable file")
        return value

    @model_validator(mode="after")
    def _consistent(self) -> ScpSettings:
        if (self.access_key is None) != (self.secret_key is None):
            missing = "SCP_SECRET_KEY" if self.secret_key is None else "SCP_ACCESS_KEY"
            raise ValueError(f"{missing} must be set together with the other key")
        for name, key in (("SCP_ACCESS_KEY", self.access_key), ("SCP_SECRET_KEY", self.secret_key)):
            if key is not None and not key.get_secret_value().strip():
                raise ValueError(f"{name} is set but empty")
        if self.endpoint is None:
            try:
                endpoints.service_url(region=self.region, environment=self.environment)
            except endpoints.EndpointError as exc:
                raise ValueError(f"SCP_REGION/SCP_ENVIRONMENT: {exc}") from None
        return self

    def service_url(self, region: str | None = None) -> str:
        """Base URL for a region (the object's, else the default)."""
        return endpoints.service_url(
            region=region or self.region, environment=self.environment, override=self.endpoint
        )


class OperatorSettings(BaseSettings):
    """The operator's own knobs: ``SCP_OPERATOR_*``."""

    model_config = SettingsConfigDict(env_prefix="SCP_OPERATOR_", extra="ignore", frozen=True)

    confirm_deletion: bool = Field(
        False, description="Keep the finalizer after 202 until GET answers 404."
    )
    confirm_poll_interval: float = Field(10.0, ge=1, description="Seconds between confirm GETs.")
    http_timeout: float = Field(30.0, gt=0, le=300, description="Seconds per SCP request.")
    max_connections: int = Field(
        16, ge=1, le=1000, description="SCP connection pool size (at least the concurrency)."
    )
    backoff_base: float = Field(
        5.0, gt=0, description="First retry delay (s) for 409, throttling and outages."
    )
    backoff_cap: float = Field(900.0, gt=0, description="Longest retry delay (s) for those.")
    slow_backoff_base: float = Field(
        60.0, gt=0, description="First retry delay (s) for auth errors and unknown answers."
    )
    slow_backoff_cap: float = Field(1800.0, gt=0, description="Longest slow retry delay (s).")
    hold_recheck_interval: float = Field(
        60.0, ge=1, description="Re-check delay (s) for protected or shared servers."
    )
    event_repeat_interval: float = Field(
        900.0, ge=0, description="Repeat an unchanged warning event at most this often (s)."
    )
    check_versions: bool = Field(True, description="Read SCP's live version list at startup.")
    max_concurrent_requests: int = Field(
        16, ge=1, le=1000, description="SCP requests in flight at most, across all objects."
    )
    max_requests_per_second: float = Field(
        0.0, ge=0, description="SCP request rate limit (token bucket); 0 means no limit."
    )
    metrics_port: int = Field(
        9090, ge=0, le=65535, description="Port of the Prometheus /metrics endpoint; 0 disables."
    )
    dry_run: bool = Field(
        False, description="Never call DELETE: report what would be deleted and hold."
    )
    max_deletions_per_window: int = Field(
        0,
        ge=0,
        description="Blast-radius limit: accepted DELETEs (one per object) per window; 0: none.",
    )
    deletion_window: float = Field(
        3600.0, gt=0, description="Length (s) of the blast-radius window."
    )
    lease_name: str = Field(
        "scp-operator",
        max_length=239,  # room for the "-ns-<10 hex>" suffix of namespaced mode (253 in all)
        pattern=r"^([a-z0-9]([-a-z0-9.]*[a-z0-9])?)?$",
        description=(
            "Lease that keeps a second operator instance from running at the same time (two "
            "blast-radius budgets, two endpoints); empty disables it: unsafe, for tests only."
        ),
    )
    lease_namespace: str = Field(
        "kube-system",
        max_length=63,
        pattern=r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$",
        description="Namespace of that Lease: one fixed place, so releases in any namespace meet.",
    )
    lease_duration: int = Field(
        15,
        ge=2,
        le=3600,
        description="Seconds a Lease lasts unrenewed; renewed every third of it.",
    )
    shards: int = Field(
        1,
        ge=1,
        le=sharding.MAX_SHARDS,
        description=(
            "Operator processes sharing the VirtualServers by uid hash (needs the API server's "
            "ShardedListAndWatch feature gate when above 1); 1: no sharding."
        ),
    )
    shard_index: int = Field(
        0, ge=0, lt=sharding.MAX_SHARDS, description="This process's shard: 0 to SHARDS-1."
    )
    shard_ranges: str = Field(
        "",
        description=(
            "Optional uneven plan: comma-separated 0x…-0x… uid-hash ranges, one per shard, "
            "covering the hash space exactly once; empty: equal ranges."
        ),
    )

    account_recheck_interval: float = Field(
        300.0,
        ge=5,
        le=86400,
        description="Seconds between re-checks of each ScpAccount's keys (status.conditions).",
    )
    resync_interval: float = Field(
        600.0,
        ge=0,
        le=86400,
        description=(
            "Seconds between periodic re-reads of each server's state from SCP; 0 disables them."
        ),
    )
    kube_connections: int = Field(
        16,
        ge=4,
        le=256,
        description=(
            "Connections Kopf may open to the Kubernetes API for its requests (patches, events, "
            "lists), besides one per watch stream."
        ),
    )

    @field_validator("resync_interval")
    @classmethod
    def _resync_off_or_bounded(cls, value: float) -> float:
        """Below 30 s every object would cost an SCP read every few seconds: a fleet of
        objects would spend the request limiter on re-reads instead of deletions."""
        if 0 < value < 30:
            raise ValueError("must be 0 (off) or between 30 and 86400 seconds")
        return value

    @model_validator(mode="after")
    def _shard_plan(self) -> OperatorSettings:
        """A plan with a gap leaves objects nobody deletes, an overlap gives some to two
        processes: refused at startup, naming the variable and the exact gap or overlap."""
        if self.shard_index >= self.shards:
            raise ValueError(
                f"SCP_OPERATOR_SHARD_INDEX: {self.shard_index} is not below "
                f"SCP_OPERATOR_SHARDS ({self.shards})"
            )
        try:
            sharding.plan(self.shards, self.shard_index, self.shard_ranges)
        except sharding.PlanError as exc:
            raise ValueError(f"SCP_OPERATOR_SHARD_RANGES: {exc}") from None
        # A Lease name's limit, whichever shard this is: every shard of the plan must fit.
        longest = sharding.plan(self.shards, self.shards - 1, self.shard_ranges).lease_suffix
        room = 253 - len("-ns-0123456789") - len(longest)
        if self.lease_name and len(self.lease_name) > room:
            raise ValueError(
                f"SCP_OPERATOR_LEASE_NAME: at most {room} characters with "
                f"SCP_OPERATOR_SHARDS={self.shards} (the shard's Lease name adds a suffix)"
            )
        return self

    @property
    def shard(self) -> sharding.Shard:
        """This process's shard (the whole hash space when not sharded)."""
        return sharding.plan(self.shards, self.shard_index, self.shard_ranges)

    @model_validator(mode="after")
    def _caps(self) -> OperatorSettings:
        if self.backoff_cap < self.backoff_base:
            raise ValueError("SCP_OPERATOR_BACKOFF_CAP must not be below SCP_OPERATOR_BACKOFF_BASE")
        if self.slow_backoff_cap < self.slow_backoff_base:
            raise ValueError(
                "SCP_OPERATOR_SLOW_BACKOFF_CAP must not be below SCP_OPERATOR_SLOW_BACKOFF_BASE"
            )
        return self


class Settings:
    """Both halves, loaded together."""

    def __init__(self, scp: ScpSettings, operator: OperatorSettings) -> None:
        self.scp = scp
        self.operator = operator


def load() -> Settings:
    """Load and validate everything from the environment, or raise :class:`SettingsError`."""
    try:
        scp = ScpSettings()
    except ValidationError as exc:
        raise SettingsError(_explain(exc, "SCP_")) from None
    try:
        operator = OperatorSettings()
    except ValidationError as exc:
        raise SettingsError(_explain(exc, "SCP_OPERATOR_")) from None
    return Settings(scp, operator)


def _explain(exc: ValidationError, prefix: str) -> str:
    """One line per problem, each naming the variable and never echoing a value of a secret."""
    lines = []
    for err in exc.errors(include_url=False, include_input=False):
        loc = [str(p) for p in err.get("loc", ()) if p != "__root__"]
        message = str(err.get("msg", "invalid")).removeprefix("Value error, ")
        if loc:
            lines.append(f"{prefix}{loc[0].upper()}: {message}")
        else:
            lines.append(message)
    return "; ".join(lines)


#: ``SCP_*`` variables the project uses that are not settings of the operator, so they must not
#: be reported as unknown when they reach its environment (a developer's shell, CI):
#: ``SCP_OPERATOR_CACHE_DIR`` — where tools/*/build.sh and the benchmark cache what they build;
#: ``SCP_OPERATOR_REPO_ROOT`` — the checkout scp_testenv builds the control plane from;
#: ``SCP_FAULT_SEED`` / ``SCP_FAULT_BUDGET`` — the e2e fault suite (docs/faults.md).
#: The chart sets nothing else: its ConfigMap holds settings only.
KNOWN_NON_SETTINGS = frozenset(
    {"SCP_OPERATOR_CACHE_DIR", "SCP_OPERATOR_REPO_ROOT", "SCP_FAULT_SEED", "SCP_FAULT_BUDGET"}
)
#: Prefixes of other programs' variables: the SCP emulator's (``SCP_EMULATOR_ACCESS_KEY``, ...).
KNOWN_NON_SETTING_PREFIXES = ("SCP_EMULATOR_",)
#: Variables Kubernetes injects for every Service in the pod's namespace ("service links"): the
#: chart's own ``<release>-metrics`` Service gives ``SCP_OPERATOR_METRICS_SERVICE_HOST``,
#: ``SCP_OPERATOR_METRICS_PORT_9090_TCP`` and the like to every pod of the release named
#: ``scp-operator``. A bare ``<SERVICE>_PORT`` is recognised by its value (``tcp://ip:port``).
_SERVICE_LINK = re.compile(
    r"_SERVICE_HOST$|_SERVICE_PORT(_[A-Z0-9_]+)?$|_PORT_\d+_(TCP|UDP|SCTP)(_(PROTO|PORT|ADDR))?$"
)
_SERVICE_LINK_VALUE = re.compile(r"^(tcp|udp|sctp)://", re.IGNORECASE)


def known_variables() -> frozenset[str]:
    """Every ``SCP_*`` / ``SCP_OPERATOR_*`` variable the settings read."""
    names = {f"SCP_{name.upper()}" for name in ScpSettings.model_fields}
    names |= {f"SCP_OPERATOR_{name.upper()}" for name in OperatorSettings.model_fields}
    return frozenset(names)


def unknown_variables(environ: Mapping[str, str]) -> list[tuple[str, str | None]]:
    """``SCP_*`` variables in ``environ`` that nothing reads, each with the closest setting's
    name (or None), sorted. Values are looked at only to recognise a Kubernetes service link;
    they are never returned."""
    known = known_variables()
    found = []
    for name, value in environ.items():
        upper = name.upper()  # pydantic-settings reads names case-insensitively
        if not upper.startswith("SCP_") or upper in known or upper in KNOWN_NON_SETTINGS:
            continue
        if upper.startswith(KNOWN_NON_SETTING_PREFIXES) or _SERVICE_LINK.search(upper):
            continue
        if upper.endswith("_PORT") and _SERVICE_LINK_VALUE.match(value):
            continue
        close = difflib.get_close_matches(upper, sorted(known), n=1)
        found.append((name, close[0] if close else None))
    return sorted(found)


def unknown_variables_warning(environ: Mapping[str, str]) -> str | None:
    """One line naming every unknown ``SCP_*`` variable (and the setting it may be a typo of),
    or None. A misspelt setting is otherwise silently ignored — and the operator then runs with
    the default, which for a switch like ``SCP_OPERATOR_DRY_RUN`` is the dangerous value."""
    unknown = unknown_variables(environ)
    if not unknown:
        return None
    named = ", ".join(
        f"{name} (did you mean {close}?)" if close else name for name, close in unknown
    )
    return f"Unknown SCP_* environment variable(s), ignored: {named}"
