"""The VirtualServer resource as Python types.

The CRD in ``crds/`` is the source of truth for the API server; these models are what the
handlers read and write. ``tests/unit/test_model_crd_agreement.py`` keeps the two in step field
by field, so a field added to one and forgotten in the other fails the build.
"""

from __future__ import annotations

import enum
from typing import Any

from pydantic import BaseModel, ConfigDict, Field

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


class ServerObservation(_Camel):
    """What SCP last said about the server (``GET /v1/servers/{id}``)."""

    name: str | None = None
    state: str | None = None
    locked: bool | None = None


class Condition(_Camel):
    """A Kubernetes-style condition (``metav1.Condition`` shape)."""

    type: str
    status: str
    reason: str
    message: str = ""
    last_transition_time: str = Field(alias="lastTransitionTime")
    observed_generation: int | None = Field(default=None, alias="observedGeneration")


class DeletionProgress(_Camel):
    """Counters of the deletion attempts against SCP."""

    attempts: int = 0
    last_attempt_time: str | None = Field(default=None, alias="lastAttemptTime")
    last_http_status: int | None = Field(default=None, alias="lastHttpStatus")
    last_message: str | None = Field(default=None, alias="lastMessage")
    accepted_time: str | None = Field(default=None, alias="acceptedTime")


class VirtualServerStatus(_Camel):
    """Written by the operator only, through the status subresource."""

    server: ServerObservation | None = None
    conditions: list[Condition] = Field(default_factory=list)
    deletion: DeletionProgress | None = None
    kopf: dict[str, Any] | None = None  # Kopf's progress and diff-base storage (see handlers)


def dump(model: BaseModel) -> dict[str, Any]:
    """Serialise a model the way the API server stores it: camelCase, no nulls."""
    return model.model_dump(by_alias=True, exclude_none=True, mode="json")


def is_protected(annotations: dict[str, str] | Any) -> bool:
    """True when the deletion-protection annotation says ``"true"`` (case-insensitive).

    Anything else — absent, ``"false"``, garbage — is not protection: an annotation that cannot
    be read as true must not be taken as a reason to keep a server the owner asked to delete,
    but it is also never a reason to delete one (the deletion is still the owner's own request).
    """
    value = (annotations or {}).get(PROTECTION_ANNOTATION)
    return isinstance(value, str) and value.strip().lower() == "true"
