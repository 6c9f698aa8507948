"""Which SCP account an object's calls go to, decided from facts read now, and its client.

:meth:`AccountDirectory.resolve` turns ``spec.accountRef`` (or its absence) into a
:class:`Target` — the HTTP client for that account, with its own pool, request limiter and
metrics label — or a :class:`Refusal` saying why no SCP call may be made for the object. Every
resolve reads the ScpAccount, the namespace's labels (when a selector decides) and the Secret
from the API server, so a changed account, a relabelled namespace or a rotated key counts from
the next call on. Clients are kept per account and rebuilt only when the account's endpoint,
account id or API version change; keys are swapped into the existing client.

Refusal messages are written for the object's owner, a tenant: they name the account (which
they named themselves) but not the Secret or anything else in namespaces they may not see; the
ScpAccount's status carries those details for the cluster admin.
"""

from __future__ import annotations

import dataclasses
import logging

from scp_operator import accounts
from scp_operator.accounts import AccountInvalid, AccountSpec, ClientShape
from scp_operator.credentials import CredentialsUnavailable, SecretCredentials
from scp_operator.kube import KubeReadError
from scp_operator.kube_accounts import AccountReader, SecretProblem
from scp_operator.limits import RequestLimiter
from scp_operator.scp.client import ScpClient
from scp_operator.settings import Settings

logger = logging.getLogger(__name__)

OWN_HINT = "or set spec.deletionPolicy: Orphan to let the object go without touching SCP"


@dataclasses.dataclass(frozen=True)
class Target:
    """Where an object's SCP calls go."""

    name: str  # the ScpAccount's name; accounts.DEFAULT for the operator's own settings
    client: ScpClient
    account_id: str  # the configured SCP account id ("" unknown): proves where a 404 came from


@dataclasses.dataclass(frozen=True)
class Refusal:
    """No SCP call may be made for the object; ``reason`` and ``message`` go to its condition."""

    reason: str
    message: str


@dataclasses.dataclass
class _Entry:
    shape: ClientShape
    client: ScpClient
    keys: SecretCredentials


class AccountDirectory:
    """Resolves account references to clients (the operator's own client for none)."""

    def __init__(
        self, settings: Settings, default: ScpClient, reader: AccountReader | None
    ) -> None:
        self._settings = settings
        self.default = Target(accounts.DEFAULT, default, settings.scp.account_id)
        self._reader = reader
        self._clients: dict[str, _Entry] = {}
        self._retired: list[ScpClient] = []

    async def resolve(self, ref: str | None, namespace: str) -> Target | Refusal:
        """The account for an object in ``namespace`` naming ``ref`` — read now, not cached."""
        if not ref:
            return self.default
        if self._reader is None:  # pragma: no cover - built without Kubernetes (unit tests)
            return Refusal("AccountCheckFailed", "accounts are not available in this process")
        try:
            body = await self._reader.account(ref)
        except KubeReadError as exc:
            return Refusal(
                "AccountCheckFailed", f"cannot read ScpAccount {ref} ({exc}); will retry"
            )
        if body is None:
            return Refusal(
                "AccountNotFound",
                f"ScpAccount {ref} does not exist, so nothing is read from or sent to SCP: ask a "
                f"cluster admin to create it, {OWN_HINT}",
            )
        try:
            spec = accounts.parse(body.get("spec") or {})
        except AccountInvalid as exc:
            return Refusal("AccountInvalid", f"ScpAccount {ref} cannot be used ({exc}); {OWN_HINT}")
        admitted = await self._admitted(spec, namespace)
        if isinstance(admitted, Refusal):
            return admitted
        if not admitted:
            return Refusal(
                "AccountNotAdmitted",
                f"ScpAccount {ref} does not admit namespace {namespace}, so nothing is read "
                f"from or sent to SCP: ask a cluster admin to admit it, {OWN_HINT}",
            )
        return await self.client_for(ref, spec)

    async def _admitted(self, spec: AccountSpec, namespace: str) -> bool | Refusal:
        if not accounts.needs_labels(spec, namespace):
            return accounts.admits(spec, namespace, None)
        assert self._reader is not None
        try:
            labels = await self._reader.namespace_labels(namespace)
        except KubeReadError as exc:
            return Refusal(
                "AccountCheckFailed", f"cannot read namespace {namespace}'s labels ({exc})"
            )
        return accounts.admits(spec, namespace, labels)

    async def client_for(self, name: str, spec: AccountSpec) -> Target | Refusal:
        """The account's client with its current keys (read from the Secret now)."""
        assert self._reader is not None
        ref = spec.credentials_secret_ref
        try:
            keys = await self._reader.secret_keys(
                ref.namespace, ref.name, ref.access_key_key, ref.secret_key_key
            )
        except (SecretProblem, KubeReadError) as exc:
            logger.warning("ScpAccount %s: %s", name, exc)
            return Refusal(
                "AccountCredentialsUnavailable",
                f"the keys of ScpAccount {name} cannot be read (its status says why), so nothing "
                f"is sent to SCP; will retry, {OWN_HINT}",
            )
        entry = self._entry(name, spec)
        try:
            entry.keys.update(keys.access_key, keys.secret_key)
        except CredentialsUnavailable:
            return Refusal(
                "AccountCredentialsUnavailable",
                f"the keys of ScpAccount {name} hold characters a key cannot have; {OWN_HINT}",
            )
        return Target(name, entry.client, spec.account_id)

    def _entry(self, name: str, spec: AccountSpec) -> _Entry:
        op = self._settings.operator
        wanted = accounts.shape(spec, self._settings.scp.api_version)
        entry = self._clients.get(name)
        if entry is not None and entry.shape == wanted:
            return entry
        if entry is not None:
            # In-flight calls may still use it: closed at shutdown, not now.
            self._retired.append(entry.client)
        keys = SecretCredentials(f"ScpAccount {name}")
        client = ScpClient(
            credentials=keys,
            base_url=lambda region: accounts.service_url(spec, region),
            api_version=wanted.api_version,
            account_id=spec.account_id,
            language=self._settings.scp.language,
            timeout=op.http_timeout,
            max_connections=max(op.max_connections, op.max_concurrent_requests),
            ca_bundle=self._settings.scp.ca_bundle,
            limiter=RequestLimiter(op.max_concurrent_requests, op.max_requests_per_second),
            account=name,
        )
        entry = _Entry(wanted, client, keys)
        self._clients[name] = entry
        return entry

    async def aclose(self) -> None:
        """Close every account's pool (the default client is the runtime's to close)."""
        for client in [e.client for e in self._clients.values()] + self._retired:
            await client.aclose()
        self._clients.clear()
        self._retired.clear()
