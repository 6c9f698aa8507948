"""Kubernetes reads and writes for accounts: ScpAccounts, their Secrets, namespace labels.

Each is read from the API server when a decision needs it (never from a watch cache): the
account and the namespace's labels decide whether an object may reach SCP at all, and the Secret
holds the keys, so a rotated key is used from the next call on. Secrets are read one by one with
``get`` (RBAC grants exactly the referenced Secrets); nothing here lists or watches Secrets.

Errors become :class:`~scp_operator.kube.KubeReadError` with a short message that never carries
a Secret's content.
"""

from __future__ import annotations

import base64
import binascii
import dataclasses
import functools
from collections.abc import Callable
from typing import Any, TypeVar, cast

from scp_operator.accounts import GROUP_PLURAL
from scp_operator.constants import GROUP, PLURAL, VERSION
from scp_operator.kube import CrdReader, KubeReadError

PAGE = 500

T = TypeVar("T")
_RAISE: Any = object()  # ``missing`` default: a 404 is an error like any other


def _ask(what: str, call: Callable[[], T], *, missing: Any = _RAISE) -> T:
    """Run one blocking API call; a 404 gives ``missing`` (when given), anything else that goes
    wrong becomes :class:`KubeReadError` naming ``what`` and the status, never a body."""
    from kubernetes.client.exceptions import ApiException

    try:
        return call()
    except ApiException as exc:
        if exc.status == 404 and missing is not _RAISE:
            return cast(T, missing)
        raise KubeReadError(f"{what} answered HTTP {exc.status}") from None
    except Exception as exc:
        raise KubeReadError(f"{what} failed: {type(exc).__name__}") from None


@dataclasses.dataclass(frozen=True)
class SecretKeys:
    """Two values out of a Secret; ``missing`` names keys that were absent or not readable."""

    access_key: str
    secret_key: str

    def __repr__(self) -> str:
        return "SecretKeys(access_key='***', secret_key='***')"


class SecretProblem(Exception):
    """The Secret exists (or not) but cannot give the keys; ``reason`` is a condition reason."""

    def __init__(self, reason: str, message: str) -> None:
        super().__init__(message)
        self.reason = reason


class AccountReader:
    """Reads accounts, Secrets and namespaces through the CRD reader's client and threads."""

    def __init__(self, kube: CrdReader, timeout: float = 10.0) -> None:
        self._kube = kube
        self._timeout = timeout

    def _custom(self) -> Any:
        import kubernetes

        return kubernetes.client.CustomObjectsApi(self._kube.api_client())

    def _core(self) -> Any:
        import kubernetes

        return kubernetes.client.CoreV1Api(self._kube.api_client())

    # --- ScpAccount -----------------------------------------------------------------------------

    async def account(self, name: str) -> dict[str, Any] | None:
        """The ScpAccount ``name``, or None when it does not exist."""
        return await self._kube.run(self._account, name)

    def _account(self, name: str) -> dict[str, Any] | None:
        found: dict[str, Any] | None = _ask(
            f"GET scpaccounts/{name}",
            lambda: self._custom().get_cluster_custom_object(
                GROUP, VERSION, GROUP_PLURAL, name, _request_timeout=self._timeout
            ),
            missing=None,
        )
        return found

    async def accounts(self) -> list[dict[str, Any]]:
        """Every ScpAccount (an absent CRD means none)."""
        return await self._kube.run(self._accounts)

    def _accounts(self) -> list[dict[str, Any]]:
        listing: dict[str, Any] = _ask(
            "LIST scpaccounts",
            lambda: self._custom().list_cluster_custom_object(
                GROUP, VERSION, GROUP_PLURAL, _request_timeout=self._timeout
            ),
            missing={},  # no CRD: no accounts
        )
        items: list[dict[str, Any]] = listing.get("items") or []
        return items

    async def write_status(self, name: str, status: dict[str, Any]) -> None:
        """Merge-patch the account's status subresource."""
        await self._kube.run(self._write_status, name, status)

    def _write_status(self, name: str, status: dict[str, Any]) -> None:
        _ask(
            f"PATCH scpaccounts/{name}/status",
            lambda: self._custom().patch_cluster_custom_object_status(
                GROUP,
                VERSION,
                GROUP_PLURAL,
                name,
                {"status": status},
                _request_timeout=self._timeout,
            ),
            missing=None,  # deleted meanwhile
        )

    async def users(self, name: str) -> int:
        """How many VirtualServers name the account (``spec.accountRef``, a selectable field)."""
        return await self._kube.run(self._users, name)

    def _users(self, name: str) -> int:
        api, count, token = self._custom(), 0, None
        while True:
            kwargs: dict[str, Any] = {
                "field_selector": f"spec.accountRef={name}",
                "limit": PAGE,
                "_request_timeout": self._timeout,
            }
            if token:
                kwargs["_continue"] = token
            page: dict[str, Any] = _ask(
                "LIST virtualservers",
                functools.partial(api.list_cluster_custom_object, GROUP, VERSION, PLURAL, **kwargs),
            )
            count += len(page.get("items") or [])
            token = (page.get("metadata") or {}).get("continue")
            if not token:
                return count

    # --- namespaces -----------------------------------------------------------------------------

    async def namespace_labels(self, name: str) -> dict[str, str] | None:
        """The namespace's labels, or None when it does not exist."""
        return await self._kube.run(self._namespace_labels, name)

    def _namespace_labels(self, name: str) -> dict[str, str] | None:
        ns = _ask(
            f"GET namespaces/{name}",
            lambda: self._core().read_namespace(name, _request_timeout=self._timeout),
            missing=None,
        )
        return None if ns is None else dict(ns.metadata.labels or {})

    async def namespaces(self, label_selector: str | None) -> dict[str, dict[str, str]]:
        """The namespaces matching ``label_selector`` (None: every one), with their labels."""
        return await self._kube.run(self._namespaces, label_selector)

    def _namespaces(self, label_selector: str | None) -> dict[str, dict[str, str]]:
        kwargs: dict[str, Any] = {"_request_timeout": self._timeout}
        if label_selector:
            kwargs["label_selector"] = label_selector
        listing = _ask("LIST namespaces", lambda: self._core().list_namespace(**kwargs))
        return {ns.metadata.name: dict(ns.metadata.labels or {}) for ns in listing.items}

    # --- Secrets --------------------------------------------------------------------------------

    async def secret_keys(
        self, namespace: str, name: str, access_key_key: str, secret_key_key: str
    ) -> SecretKeys:
        """The two keys from the Secret, or :class:`SecretProblem` saying what is wrong."""
        return await self._kube.run(
            self._secret_keys, namespace, name, access_key_key, secret_key_key
        )

    def _secret_keys(
        self, namespace: str, name: str, access_key_key: str, secret_key_key: str
    ) -> SecretKeys:
        from kubernetes.client.exceptions import ApiException

        where = f"Secret {namespace}/{name}"
        try:
            secret = self._core().read_namespaced_secret(
                name, namespace, _request_timeout=self._timeout
            )
        except ApiException as exc:
            if exc.status == 404:
                raise SecretProblem("SecretNotFound", f"{where} does not exist") from None
            if exc.status == 403:
                raise SecretProblem(
                    "SecretForbidden",
                    f"the operator may not read {where}: grant it (the chart's accounts or "
                    "accountSecrets value)",
                ) from None
            raise KubeReadError(f"GET {where} answered HTTP {exc.status}") from None
        except Exception as exc:
            raise KubeReadError(f"GET {where} failed: {type(exc).__name__}") from None
        data = secret.data or {}
        values = []
        for key in (access_key_key, secret_key_key):
            raw = data.get(key)
            if not raw:
                raise SecretProblem(
                    "SecretKeyMissing", f"{where} has no key {key!r} (or it is empty)"
                )
            try:
                value = base64.b64decode(raw, validate=True).decode("ascii").strip()
            except (binascii.Error, UnicodeDecodeError):
                raise SecretProblem(
                    "SecretMalformed",
                    f"{where}: key {key!r} does not hold an ASCII key",
                ) from None
            if not value:
                raise SecretProblem("SecretKeyMissing", f"{where}: key {key!r} is empty")
            values.append(value)
        return SecretKeys(values[0], values[1])
