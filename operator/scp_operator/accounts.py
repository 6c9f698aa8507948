"""ScpAccount: one SCP account, and which namespaces may use it — the model and pure rules.

A VirtualServer names an account in ``spec.accountRef``; without it the operator's own settings
(``SCP_*``) are the account, so existing objects keep working. The rules here decide, from facts
the caller read from the API server just now, whether an object's namespace may use an account
(:func:`admits`) and where the account's API lives (:func:`service_url`). The Kubernetes reads
are in :mod:`scp_operator.kube_accounts`, the resolving and per-account clients in
:mod:`scp_operator.directory`.

The same namespace rule is enforced twice: by the chart's ValidatingAdmissionPolicy when an
object is created (so a tenant cannot name an account that does not admit it), and here before
every SCP call (labels change after creation, and the policy may be switched off).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterable, Mapping
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from scp_operator.model import REGION_PATTERN
from scp_operator.scp import endpoints, versions

GROUP_PLURAL = "scpaccounts"
KIND = "ScpAccount"
DEFAULT = "default"  # metrics label and log name of the operator's own account

NAME_PATTERN = r"^[a-z0-9]([-a-z0-9.]*[a-z0-9])?$"
NAMESPACE_PATTERN = r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$"


class _Camel(BaseModel):
    model_config = ConfigDict(populate_by_name=True, extra="ignore", frozen=True)


class SecretRef(_Camel):
    """Where the account's keys are: a Secret and the two keys of its data."""

    namespace: str = Field(pattern=NAMESPACE_PATTERN, max_length=63)
    name: str = Field(pattern=NAME_PATTERN, max_length=253)
    access_key_key: str = Field("access-key", alias="accessKeyKey", min_length=1)
    secret_key_key: str = Field("secret-key", alias="secretKeyKey", min_length=1)

    def __str__(self) -> str:
        return f"{self.namespace}/{self.name}"


class Requirement(_Camel):
    """One ``matchExpressions`` entry of a label selector."""

    key: str
    operator: Literal["In", "NotIn", "Exists", "DoesNotExist"]
    values: tuple[str, ...] = ()


class NamespaceSelector(_Camel):
    """A metav1.LabelSelector over namespace labels. Empty: every namespace."""

    match_labels: dict[str, str] = Field(default_factory=dict, alias="matchLabels")
    match_expressions: tuple[Requirement, ...] = Field((), alias="matchExpressions")

    def matches(self, labels: Mapping[str, str]) -> bool:
        """Kubernetes' label-selector semantics (all terms must hold)."""
        for key, value in self.match_labels.items():
            if labels.get(key) != value:
                return False
        for req in self.match_expressions:
            present = req.key in labels
            if req.operator == "In" and not (present and labels[req.key] in req.values):
                return False
            if req.operator == "NotIn" and present and labels[req.key] in req.values:
                return False
            if req.operator == "Exists" and not present:
                return False
            if req.operator == "DoesNotExist" and present:
                return False
        return True


class AccountSpec(_Camel):
    """``ScpAccount.spec``, as the operator reads it (the CRD validates the same fields)."""

    credentials_secret_ref: SecretRef = Field(alias="credentialsSecretRef")
    endpoint: str | None = None
    region: str = Field("kr-west1", pattern=REGION_PATTERN)
    environment: Literal["s", "g", "e"] = "e"
    account_id: str = Field("", alias="accountId", max_length=128)
    api_version: str | None = Field(None, alias="apiVersion")
    namespaces: tuple[str, ...] = ()
    namespace_selector: NamespaceSelector | None = Field(None, alias="namespaceSelector")

    @field_validator("endpoint")
    @classmethod
    def _endpoint(cls, value: str | None) -> str | None:
        return endpoints.normalise_base(value) if value else None

    @field_validator("api_version")
    @classmethod
    def _version(cls, value: str | None) -> str | None:
        if value is not None and value not in versions.BUILTIN:
            raise ValueError(f"unknown API version {value!r}; known: {', '.join(versions.BUILTIN)}")
        return value

    @field_validator("account_id")
    @classmethod
    def _account_id(cls, value: str) -> str:
        value = value.strip()
        if value and (not value.isascii() or not value.isprintable() or " " in value):
            raise ValueError("must be printable ASCII without spaces")
        return value


def parse(spec: Mapping[str, object]) -> AccountSpec:
    """The account's spec, or :class:`AccountInvalid` naming the field (never a value)."""
    try:
        return AccountSpec.model_validate(dict(spec))
    except ValidationError as exc:
        parts = []
        for err in exc.errors(include_url=False, include_input=False)[:3]:
            loc = ".".join(str(p) for p in err.get("loc", ()))
            parts.append(
                f"spec.{loc}: {str(err.get('msg', 'invalid')).removeprefix('Value error, ')}"
            )
        raise AccountInvalid("; ".join(parts) or "invalid spec") from None


class AccountInvalid(ValueError):
    """An ScpAccount's spec cannot be used; the message names the field."""


def admits(spec: AccountSpec, namespace: str, labels: Mapping[str, str] | None) -> bool:
    """Whether VirtualServers in ``namespace`` (with these ``labels``) may use the account.

    ``labels`` None means the namespace could not be read (or does not exist): only an explicit
    ``namespaces`` entry admits it then.
    """
    if namespace in spec.namespaces:
        return True
    if spec.namespace_selector is None or labels is None:
        return False
    return spec.namespace_selector.matches(labels)


def needs_labels(spec: AccountSpec, namespace: str) -> bool:
    """Whether :func:`admits` needs the namespace's labels (saves a read when listed)."""
    return namespace not in spec.namespaces and spec.namespace_selector is not None


def service_url(spec: AccountSpec, region: str | None) -> str:
    """Base URL of the account's virtualserver API for a region (the object's, else the
    account's default); raises :class:`endpoints.EndpointError` for a region its environment
    lacks."""
    return endpoints.service_url(
        region=region or spec.region, environment=spec.environment, override=spec.endpoint
    )


@dataclasses.dataclass(frozen=True)
class ClientShape:
    """What a per-account HTTP client is built from; a change rebuilds the client.

    Keys are not part of it: a rotated key is handed to the same client (same pool, limiter and
    metrics), so rotation costs nothing.
    """

    endpoint: str | None
    region: str
    environment: str
    account_id: str
    api_version: str


def shape(spec: AccountSpec, default_api_version: str) -> ClientShape:
    return ClientShape(
        spec.endpoint,
        spec.region,
        spec.environment,
        spec.account_id,
        spec.api_version or default_api_version,
    )


def same_account(
    own_ref: str | None, own_account_id: str, other_ref: str | None, other_account_id: str
) -> bool:
    """Whether two objects' servers live in the same SCP account, as far as can be told.

    The same ``accountRef`` (or both none) is the same account. Different refs are different
    accounts — unless both servers were observed in the same SCP account id (two ScpAccounts,
    or an ScpAccount and the operator's own keys, for one SCP account), in which case one id is
    one server and the guard must count them together.
    """
    if (own_ref or None) == (other_ref or None):
        return True
    return bool(own_account_id) and own_account_id == other_account_id


def shown_refs(refs: Iterable[str], own_namespace: str) -> tuple[str, ...]:
    """Sharers as a reader of this object may see them: names in its own namespace, counts of
    the others (a tenant must not learn the names of another tenant's objects; the operator's
    log names them for the cluster admin)."""
    own, others = [], 0
    for ref in sorted(refs):
        if ref.split("/", 1)[0] == own_namespace:
            own.append(ref)
        else:
            others += 1
    if others:
        own.append(
            f"{others} object{'s' if others > 1 else ''} in "
            f"{'other namespaces' if others > 1 else 'another namespace'}"
        )
    return tuple(own)
