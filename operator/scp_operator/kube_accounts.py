"""Kubernetes reads and writes for accounts: ScpAccounts, their Secrets, namespace labels.

Each is read from the API server when a decision needs it (never from a watch cache): the
account and the namespace's labels decide whether an object may reach SCP at all, and the Secret
holds the keys, so a rotated key is used from the next call on. Secrets are read one by one with
``get`` (RBAC grants exactly the referenced Secrets); nothing here lists or watches Secrets.

The calls are JSON requests over the process's one :class:`~scp_operator.kube.KubeClient`
(shared with :class:`~scp_operator.kube.CrdReader`).
Errors become :class:`~scp_operator.kube.KubeReadError` with a short message that never carries
a Secret's content.
"""

from __future__ import annotations

import base64
import binascii
import dataclasses
from typing import Any

from scp_operator.accounts import GROUP_PLURAL
from scp_operator.constants import GROUP, PLURAL, VERSION
from scp_operator.kube import KubeClient, KubeReadError, describe_failure, http_status
from scp_operator.kube_http import MERGE_PATCH, path

PAGE = 500

_RAISE: Any = object()  # ``missing`` default: a 404 is an error like any other


async def _ask(
    kube: KubeClient,
    what: str,
    method: str,
    url: str,
    *,
    missing: Any = _RAISE,
    **request: Any,
) -> Any:
    """Make one API request; a 404 gives ``missing`` (when given), anything else that goes wrong
    becomes :class:`KubeReadError` naming ``what`` and the status, never a body."""
    try:
        return await kube.request(method, url, **request)
    except KubeReadError:
        raise
    except Exception as exc:
        if http_status(exc) == 404 and missing is not _RAISE:
            return missing
        raise KubeReadError(describe_failure(what, exc)) from None


_ACCOUNTS = f"{GROUP}/{VERSION}"


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
    """Reads accounts, Secrets and namespaces through the process's one Kubernetes client."""

    def __init__(self, kube: KubeClient, timeout: float = 10.0) -> None:
        self._kube = kube
        self._timeout = timeout

    # --- ScpAccount -----------------------------------------------------------------------------

    async def account(self, name: str) -> dict[str, Any] | None:
        """The ScpAccount ``name``, or None when it does not exist."""
        found: dict[str, Any] | None = await _ask(
            self._kube,
            f"GET scpaccounts/{name}",
            "GET",
            path(_ACCOUNTS, GROUP_PLURAL, name=name),
            missing=None,
            timeout=self._timeout,
        )
        return found

    async def accounts(self) -> list[dict[str, Any]]:
        """Every ScpAccount (an absent CRD means none)."""
        listing: dict[str, Any] = await _ask(
            self._kube,
            "LIST scpaccounts",
            "GET",
            path(_ACCOUNTS, GROUP_PLURAL),
            missing={},  # no CRD: no accounts
            timeout=self._timeout,
        )
        items: list[dict[str, Any]] = listing.get("items") or []
        return items

    async def write_status(self, name: str, status: dict[str, Any]) -> None:
        """Merge-patch the account's status subresource."""
        await _ask(
            self._kube,
            f"PATCH scpaccounts/{name}/status",
            "PATCH",
            path(_ACCOUNTS, GROUP_PLURAL, name=name, subresource="status"),
            missing=None,  # deleted meanwhile
            body={"status": status},
            content_type=MERGE_PATCH,
            timeout=self._timeout,
        )

    async def users(self, name: str) -> int:
        """How many VirtualServers name the account (``spec.accountRef``, a selectable field)."""
        count, token = 0, None
        while True:
            params: dict[str, str | int] = {
                "fieldSelector": f"spec.accountRef={name}",
                "limit": PAGE,
            }
            if token:
                params["continue"] = token
            page: dict[str, Any] = await _ask(
                self._kube,
                "LIST virtualservers",
                "GET",
                path(_ACCOUNTS, PLURAL),
                params=params,
                timeout=self._timeout,
            )
            count += len(page.get("items") or [])
            token = (page.get("metadata") or {}).get("continue")
            if not token:
                return count

    # --- namespaces -----------------------------------------------------------------------------

    async def namespace_labels(self, name: str) -> dict[str, str] | None:
        """The namespace's labels, or None when it does not exist."""
        ns: dict[str, Any] | None = await _ask(
            self._kube,
            f"GET namespaces/{name}",
            "GET",
            path("v1", "namespaces", name=name),
            missing=None,
            timeout=self._timeout,
        )
        return None if ns is None else _labels(ns)

    async def namespaces(self, label_selector: str | None) -> dict[str, dict[str, str]]:
        """The namespaces matching ``label_selector`` (None: every one), with their labels."""
        params: dict[str, str | int] = {"labelSelector": label_selector} if label_selector else {}
        listing: dict[str, Any] = await _ask(
            self._kube,
            "LIST namespaces",
            "GET",
            path("v1", "namespaces"),
            params=params,
            timeout=self._timeout,
        )
        return {
            str((ns.get("metadata") or {}).get("name")): _labels(ns)
            for ns in listing.get("items") or []
        }

    # --- Secrets --------------------------------------------------------------------------------

    async def secret_keys(
        self, namespace: str, name: str, access_key_key: str, secret_key_key: str
    ) -> SecretKeys:
        """The two keys from the Secret, or :class:`SecretProblem` saying what is wrong."""
        where = f"Secret {namespace}/{name}"
        try:
            secret = await self._kube.request(
                "GET",
                path("v1", "secrets", namespace=namespace, name=name),
                timeout=self._timeout,
            )
        except KubeReadError:
            raise
        except Exception as exc:
            status = http_status(exc)
            if status == 404:
                raise SecretProblem("SecretNotFound", f"{where} does not exist") from None
            if status == 403:
                raise SecretProblem(
                    "SecretForbidden",
                    f"the operator may not read {where}: grant it (the chart's accounts or "
                    "accountSecrets value)",
                ) from None
            raise KubeReadError(describe_failure(f"GET {where}", exc)) from None
        data = secret.get("data") or {}
        if not isinstance(data, dict):
            data = {}
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


def _labels(namespace: dict[str, Any]) -> dict[str, str]:
    labels = (namespace.get("metadata") or {}).get("labels") or {}
    return {str(k): str(v) for k, v in labels.items()} if isinstance(labels, dict) else {}
