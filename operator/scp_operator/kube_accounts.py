"""Kubernetes reads and writes for accounts: ScpAccounts, their Secrets, namespace labels.

Each is read from the API server when a decision needs it (never from a watch cache): the
account and the namespace's labels decide whether an object may reach SCP at all, and the Secret
holds the keys, so a rotated key is used from the next call on. Secrets are read one by one with
``get`` (RBAC grants exactly the referenced Secrets); nothing here lists or watches Secrets.

The calls are ``kubernetes_asyncio`` coroutines over the process's one
:class:`~scp_operator.kube.KubeClient` (shared with :class:`~scp_operator.kube.CrdReader`).
Errors become :class:`~scp_operator.kube.KubeReadError` with a short message that never carries
a Secret's content.
"""

from __future__ import annotations

import base64
import binascii
import dataclasses
from collections.abc import Awaitable, Callable
from typing import Any, TypeVar, cast

from scp_operator.accounts import GROUP_PLURAL
from scp_operator.constants import GROUP, PLURAL, VERSION
from scp_operator.kube import KubeClient, KubeReadError, describe_failure, http_status

PAGE = 500

T = TypeVar("T")
_RAISE: Any = object()  # ``missing`` default: a 404 is an error like any other


async def _ask(
    kube: KubeClient,
    what: str,
    request: Callable[[Any], Awaitable[T]],
    *,
    missing: Any = _RAISE,
) -> T:
    """Make one API call; a 404 gives ``missing`` (when given), anything else that goes wrong
    becomes :class:`KubeReadError` naming ``what`` and the status, never a body."""
    try:
        return await kube.call(request)
    except KubeReadError:
        raise
    except Exception as exc:
        if http_status(exc) == 404 and missing is not _RAISE:
            return cast(T, missing)
        raise KubeReadError(describe_failure(what, exc)) from None


def _custom(api_client: Any) -> Any:
    from kubernetes_asyncio.client import CustomObjectsApi

    return CustomObjectsApi(api_client)


def _core(api_client: Any) -> Any:
    from kubernetes_asyncio.client import CoreV1Api

    return CoreV1Api(api_client)


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
            lambda c: _custom(c).get_cluster_custom_object(
                GROUP, VERSION, GROUP_PLURAL, name, _request_timeout=self._timeout
            ),
            missing=None,
        )
        return found

    async def accounts(self) -> list[dict[str, Any]]:
        """Every ScpAccount (an absent CRD means none)."""
        listing: dict[str, Any] = await _ask(
            self._kube,
            "LIST scpaccounts",
            lambda c: _custom(c).list_cluster_custom_object(
                GROUP, VERSION, GROUP_PLURAL, _request_timeout=self._timeout
            ),
            missing={},  # no CRD: no accounts
        )
        items: list[dict[str, Any]] = listing.get("items") or []
        return items

    async def write_status(self, name: str, status: dict[str, Any]) -> None:
        """Merge-patch the account's status subresource."""
        await _ask(
            self._kube,
            f"PATCH scpaccounts/{name}/status",
            lambda c: _custom(c).patch_cluster_custom_object_status(
                GROUP,
                VERSION,
                GROUP_PLURAL,
                name,
                {"status": status},
                # Named: for a dict body kubernetes_asyncio would pick JSON patch, not merge.
                _content_type="application/merge-patch+json",
                _request_timeout=self._timeout,
            ),
            missing=None,  # deleted meanwhile
        )

    async def users(self, name: str) -> int:
        """How many VirtualServers name the account (``spec.accountRef``, a selectable field)."""
        count, token = 0, None
        while True:
            kwargs: dict[str, Any] = {
                "field_selector": f"spec.accountRef={name}",
                "limit": PAGE,
                "_request_timeout": self._timeout,
            }
            if token:
                kwargs["_continue"] = token

            async def one_page(api_client: Any, kwargs: dict[str, Any] = kwargs) -> Any:
                return await _custom(api_client).list_cluster_custom_object(
                    GROUP, VERSION, PLURAL, **kwargs
                )

            page: dict[str, Any] = await _ask(self._kube, "LIST virtualservers", one_page)
            count += len(page.get("items") or [])
            token = (page.get("metadata") or {}).get("continue")
            if not token:
                return count

    # --- namespaces -----------------------------------------------------------------------------

    async def namespace_labels(self, name: str) -> dict[str, str] | None:
        """The namespace's labels, or None when it does not exist."""
        ns = await _ask(
            self._kube,
            f"GET namespaces/{name}",
            lambda c: _core(c).read_namespace(name, _request_timeout=self._timeout),
            missing=None,
        )
        return None if ns is None else dict(ns.metadata.labels or {})

    async def namespaces(self, label_selector: str | None) -> dict[str, dict[str, str]]:
        """The namespaces matching ``label_selector`` (None: every one), with their labels."""
        kwargs: dict[str, Any] = {"_request_timeout": self._timeout}
        if label_selector:
            kwargs["label_selector"] = label_selector
        listing = await _ask(
            self._kube, "LIST namespaces", lambda c: _core(c).list_namespace(**kwargs)
        )
        return {ns.metadata.name: dict(ns.metadata.labels or {}) for ns in listing.items}

    # --- Secrets --------------------------------------------------------------------------------

    async def secret_keys(
        self, namespace: str, name: str, access_key_key: str, secret_key_key: str
    ) -> SecretKeys:
        """The two keys from the Secret, or :class:`SecretProblem` saying what is wrong."""
        where = f"Secret {namespace}/{name}"
        try:
            secret = await self._kube.call(
                lambda c: _core(c).read_namespaced_secret(
                    name, namespace, _request_timeout=self._timeout
                )
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
