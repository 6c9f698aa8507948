"""The VirtualServer resource as Python types.

The CRD in ``crds/`` is the source of truth for the API server; these models are what the
handlers read and write: every status patch the operator sends is a :class:`VirtualServerStatus`
serialised by :func:`dump` (see :mod:`scp_operator.reporting`).
``tests/unit/test_model_crd_agreement.py`` keeps the models and the CRD in step field by field, so
a field added to one and forgotten in the other fails the build.
"""

from __future__ import annotations

import dataclasses
import enum
from collections.abc import Iterable, Mapping
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, field_validator

from scp_operator.constants import PROTECTION_ANNOTATION

UUID_PATTERN = r"^[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}$"
REGION_PATTERN = r"^[a-z]{2}-[a-z]+[0-9]+$"


class DeletionPolicy(enum.StrEnum):
    """What happens to the cloud server when the resource is deleted."""

    DELETE = "Delete"
    ORPHAN = "Orphan"


class _Camel(BaseModel):
    model_config = ConfigDict(populate_by_name=True, extra="ignore", frozen=True)


class VirtualServerSpec(_Camel):
    """Desired binding between a Kubernetes object and one SCP virtual server."""

    server_id: str = Field(alias="serverId", pattern=UUID_PATTERN)
    region: str | None = Field(default=None, pattern=REGION_PATTERN)
    deletion_policy: DeletionPolicy = Field(default=DeletionPolicy.DELETE, alias="deletionPolicy")
    account_ref: str | None = Field(
        default=None,
        alias="accountRef",
        pattern=r"^[a-z0-9]([-a-z0-9.]*[a-z0-9])?$",
        max_length=253,
    )

    @field_validator("server_id")
    @classmethod
    def _canonical(cls, value: str) -> str:
        """SCP ids are lower-case UUIDs: an upper-case copy names the same server."""
        return value.lower()


class VolumeObservation(_Camel):
    """One block storage volume of the server, as SCP listed it."""

    id: str
    # None: SCP did not say (reported as possibly kept after a deletion)
    delete_on_termination: bool | None = Field(default=None, alias="deleteOnTermination")


class ServerObservation(_Camel):
    """What SCP last said about the server (``GET /v1/servers/{id}``), and where it said it.

    ``endpoint`` and ``account_id`` make a later 404 checkable: only a 404 from the same place
    is evidence that the server is gone.
    """

    name: str | None = None
    state: str | None = None
    locked: bool | None = None
    endpoint: str | None = None
    account_id: str | None = Field(default=None, alias="accountId")
    # Which volumes SCP terminates with the server: after SCP accepts a deletion, the ones it
    # keeps are named in a VolumesRetained event (they are still billed). None: not read.
    volumes: list[VolumeObservation] | None = None


class Condition(_Camel):
    """A Kubernetes-style condition (``metav1.Condition`` shape)."""

    type: str
    status: str
    reason: str
    message: str = ""
    last_transition_time: str = Field(alias="lastTransitionTime")
    observed_generation: int | None = Field(default=None, alias="observedGeneration")


class DeletionProgress(_Camel):
    """Counters of the deletion attempts against SCP.

    Read back from ``status.deletion`` and written again with the changes: :func:`dump` leaves
    out what was never set, so ``attempts`` appears only once a DELETE was made.
    """

    attempts: int = 0
    last_attempt_time: str | None = Field(default=None, alias="lastAttemptTime")
    last_http_status: int | None = Field(default=None, alias="lastHttpStatus")
    last_message: str | None = Field(default=None, alias="lastMessage")
    accepted_time: str | None = Field(default=None, alias="acceptedTime")
    next_attempt_time: str | None = Field(default=None, alias="nextAttemptTime")


class VirtualServerStatus(_Camel):
    """Written by the operator only, through the status subresource."""

    server: ServerObservation | None = None
    conditions: list[Condition] = Field(default_factory=list)
    deletion: DeletionProgress | None = None
    kopf: dict[str, Any] | None = None  # Kopf's progress and diff-base (handlers/startup.py)


def dump(model: BaseModel, *, remove: Iterable[str] = ()) -> dict[str, Any]:
    """Serialise a model for a JSON merge patch: camelCase, only the fields that were set, no nulls.

    "Only the fields that were set": a model read from the object and then changed writes back
    what it read plus the change, and a partial :class:`VirtualServerStatus` writes only its part.
    ``remove`` names fields by their dotted camelCase path (``deletion.acceptedTime``) to write
    as an explicit null, which is how a merge patch deletes a stored field.
    """
    data = model.model_dump(by_alias=True, exclude_unset=True, exclude_none=True, mode="json")
    for path in remove:
        *parents, leaf = path.split(".")
        node = data
        for key in parents:
            node = node.setdefault(key, {})
        node[leaf] = None
    return data


#: Values of the protection annotation, lower-cased: these protect, these do not; any other
#: value protects too (a value nobody can read must not be the reason a server is deleted).
PROTECT_VALUES = frozenset({"true", "yes", "1", "on"})
UNPROTECT_VALUES = frozenset({"false", "no", "0", "off", ""})


@dataclasses.dataclass(frozen=True)
class Protection:
    """What the deletion-protection annotation says."""

    protected: bool
    note: str = ""  # words for the condition when the value was not the plain "true"


def protection(annotations: Mapping[str, Any] | Any) -> Protection:
    """Read the deletion-protection annotation, failing safe.

    ``true``/``yes``/``1``/``on`` (any case) protect; absent or ``false``/``no``/``0``/``off``
    do not. Any other value also protects, with a note saying it was not understood: an owner
    who wrote ``"enabled"`` meant protection, and a deleted server cannot be brought back.
    """
    raw = (
        (annotations or {}).get(PROTECTION_ANNOTATION) if isinstance(annotations, Mapping) else None
    )
    if raw is None:
        return Protection(False)
    value = str(raw).strip().lower()
    if value in UNPROTECT_VALUES:
        return Protection(False)
    if value == "true":
        return Protection(True)
    shown = str(raw)[:40]
    if value in PROTECT_VALUES:
        return Protection(True, f"is {shown!r} (read as true)")
    return Protection(
        True,
        f'is {shown!r}, which is not understood, so it protects (use "true" or "false")',
    )
