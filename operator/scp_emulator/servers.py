"""Virtual server records: what the admin API takes, what the public API shows, what blocks delete.

A record carries, besides the fields SCP returns, the attachment flags that make SCP refuse a
delete (file storage, LB server group, backup). Those flags are emulator-only: the public
``GET`` does not show them, the admin API does.
"""

from __future__ import annotations

import datetime as dt
import uuid
from dataclasses import dataclass, field
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, field_validator

STATE_DELETING = "DELETING"
"""State shown between an accepted DELETE and the server's disappearance.

What SCP really shows in that window is unknown; clients must treat any state but 404 as
"still there".
"""


class ServerType(BaseModel):
    """Flavour of a server. ``ram`` is in MiB (the real unit is not documented)."""

    model_config = ConfigDict(extra="allow")

    name: str = "s1v2m4"
    vcpus: int = 2
    ram: int = 4096


class Volume(BaseModel):
    """An attached block storage volume and whether it dies with the server."""

    model_config = ConfigDict(extra="allow")

    id: str = Field(default_factory=lambda: str(uuid.uuid4()))
    delete_on_termination: bool = True


def _check_uuid(value: str | None) -> str | None:
    if value is not None:
        uuid.UUID(value)
    return value


class ServerPatch(BaseModel):
    """Fields an admin may set on an existing server; anything omitted is left alone."""

    model_config = ConfigDict(extra="forbid")

    name: str | None = None
    state: str | None = Field(default=None, min_length=1)
    locked: bool | None = None
    file_storage: bool | None = None
    lb_server_group: bool | None = None
    backup: bool | None = None
    auto_scaling_group_id: str | None = None
    account_id: str | None = None
    server_type: ServerType | None = None
    volumes: list[Volume] | None = None
    metadata: dict[str, Any] | None = None
    vpc_id: str | None = None
    image_id: str | None = None
    created_by: str | None = None
    keypair_name: str | None = None
    addresses: list[Any] | None = None


class ServerSpec(ServerPatch):
    """Fields for creating a server. ``id`` must be a UUID and is generated when absent."""

    id: str | None = None
    state: str | None = Field(default="ACTIVE", min_length=1)

    _uuid = field_validator("id")(_check_uuid)


_NULLABLE = frozenset({"auto_scaling_group_id", "vpc_id", "image_id", "keypair_name"})
_EMPTY_WHEN_NULL: dict[str, type[Any]] = {"metadata": dict, "addresses": list, "volumes": list}


def _now() -> dt.datetime:
    return dt.datetime.now(dt.UTC)


@dataclass
class Server:
    """One emulated virtual server, with its emulator-only attachment flags."""

    id: str
    name: str
    state: str
    account_id: str
    locked: bool = False
    file_storage: bool = False
    lb_server_group: bool = False
    backup: bool = False
    auto_scaling_group_id: str | None = None
    server_type: ServerType = field(default_factory=ServerType)
    volumes: list[Volume] = field(default_factory=lambda: [Volume()])
    metadata: dict[str, Any] = field(default_factory=dict)
    vpc_id: str | None = field(default_factory=lambda: str(uuid.uuid4()))
    image_id: str | None = field(default_factory=lambda: str(uuid.uuid4()))
    created_by: str = "emulator"
    keypair_name: str | None = None
    addresses: list[Any] = field(default_factory=list)
    disk_config: str = "MANUAL"
    created_at: dt.datetime = field(default_factory=_now)
    modified_at: dt.datetime = field(default_factory=_now)
    delete_at: float | None = None
    """Monotonic time at which a DELETING server disappears; None while it stays."""

    @classmethod
    def from_spec(cls, spec: ServerSpec, *, default_account_id: str) -> Server:
        """Build a record, filling what the spec leaves out with plausible values."""
        server_id = spec.id or str(uuid.uuid4())
        server = cls(
            id=server_id,
            name=spec.name or f"vm-{server_id[:8]}",
            state=spec.state or "ACTIVE",
            account_id=spec.account_id or default_account_id,
        )
        server.apply(spec, skip=frozenset({"id"}))
        server.modified_at = server.created_at
        return server

    def apply(self, patch: ServerPatch, *, skip: frozenset[str] = frozenset()) -> None:
        """Set the fields the patch names and touch ``modified_at``.

        A null resets a list or map to empty and an optional id to unset; for the other fields
        (name, state, flags) a null is ignored rather than stored. Leaving the DELETING state
        cancels a pending disappearance, so an admin can "rescue" a server mid-deletion.
        """
        for name in sorted(patch.model_fields_set - skip):
            value = getattr(patch, name)
            if value is None:
                if name in _EMPTY_WHEN_NULL:
                    value = _EMPTY_WHEN_NULL[name]()
                elif name not in _NULLABLE:
                    continue
            setattr(self, name, value)
        if self.state != STATE_DELETING:
            self.delete_at = None
        self.modified_at = _now()

    def blockers(self) -> list[str]:
        """What makes SCP refuse a delete (the seed's list): a lock, File Storage, an LB server
        group (not for servers an Auto-Scaling Group created) or a Backup. Shown in the admin
        view only: SCP's 409 does not say which.
        """
        found = ["lock"] if self.locked else []
        if self.file_storage:
            found.append("file storage")
        if self.lb_server_group and not self.auto_scaling_group_id:
            found.append("LB server group")
        if self.backup:
            found.append("backup")
        return found

    def public_view(self) -> dict[str, Any]:
        """The flat object ``GET /v1/servers/{id}`` returns.

        ``created_at`` carries a zone and ``modified_at`` does not, on purpose: SCP has been seen
        sending both forms, and clients should parse leniently.
        """
        return {
            "id": self.id,
            "name": self.name,
            "state": self.state,
            "locked": self.locked,
            "account_id": self.account_id,
            "created_at": self.created_at.isoformat(timespec="microseconds").replace("+00:00", "Z"),
            "modified_at": self.modified_at.replace(tzinfo=None).isoformat(timespec="microseconds"),
            "created_by": self.created_by,
            "server_type": self.server_type.model_dump(mode="json"),
            "volumes": [volume.model_dump(mode="json") for volume in self.volumes],
            "metadata": dict(self.metadata),
            "disk_config": self.disk_config,
            "vpc_id": self.vpc_id,
            "image_id": self.image_id,
            "addresses": list(self.addresses),
            "auto_scaling_group_id": self.auto_scaling_group_id,
            "keypair_name": self.keypair_name,
            "security_groups": [],
        }

    def admin_view(self) -> dict[str, Any]:
        """The public object plus the emulator-only attachment flags."""
        return {
            **self.public_view(),
            "file_storage": self.file_storage,
            "lb_server_group": self.lb_server_group,
            "backup": self.backup,
            "blockers": self.blockers(),
        }
