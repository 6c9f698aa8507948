"""The few Kubernetes reads the operator makes itself (Kopf does the rest).

Only one: the VirtualServer CRD, read right before every DELETE. When a CRD is deleted, the API
server deletes every object of it; those deletions must not delete cloud servers (the owner
removed a type, not a fleet), so the handler has to know — authoritatively, not from a watch
that may lag — whether the CRD is going.
"""

from __future__ import annotations

import asyncio
import logging
import threading
from collections.abc import Sequence
from typing import Any

from scp_operator.constants import CRD_NAME, GROUP, PLURAL, VERSION
from scp_operator.decision import CrdState

logger = logging.getLogger(__name__)


def _load_config() -> object:
    import kubernetes

    config = kubernetes.client.Configuration()
    try:
        kubernetes.config.load_incluster_config(  # type: ignore[no-untyped-call]
            client_configuration=config
        )
    except kubernetes.config.ConfigException:
        kubernetes.config.load_kube_config(  # type: ignore[no-untyped-call]
            client_configuration=config
        )
    return config


def list_virtualservers(namespaces: Sequence[str] = ()) -> list[str]:
    """``namespace/name`` of every VirtualServer (in ``namespaces``, or everywhere).

    A missing CRD means there are none. Other API errors propagate: the caller must not take
    "could not look" for "nothing there".
    """
    import kubernetes
    from kubernetes.client.exceptions import ApiException

    api: Any = kubernetes.client.CustomObjectsApi(kubernetes.client.ApiClient(_load_config()))
    items: list[Any] = []
    try:
        if namespaces:
            for ns in namespaces:
                items += api.list_namespaced_custom_object(GROUP, VERSION, ns, PLURAL)["items"]
        else:
            items = api.list_cluster_custom_object(GROUP, VERSION, PLURAL)["items"]
    except ApiException as exc:
        if exc.status == 404:
            return []
        raise RuntimeError(f"HTTP {exc.status} {exc.reason}") from None
    return sorted(f"{i['metadata']['namespace']}/{i['metadata']['name']}" for i in items)


class CrdReader:
    """Reads the CRD's state with the official ``kubernetes`` client, in a worker thread."""

    def __init__(self, timeout: float = 10.0) -> None:
        self._timeout = timeout
        self._api: Any = None
        self._lock = threading.Lock()
        self._reading = asyncio.Lock()  # one read at a time
        self._batch: asyncio.Future[CrdState] | None = None  # the next read, not yet started
        self.reads = 0

    def _client(self) -> Any:
        with self._lock:
            if self._api is None:
                import kubernetes  # heavy; imported when first needed

                api_client = kubernetes.client.ApiClient(_load_config())
                self._api = kubernetes.client.ApiextensionsV1Api(api_client)
            return self._api

    def _read(self) -> CrdState:
        from kubernetes.client.exceptions import ApiException

        try:
            crd = self._client().read_custom_resource_definition(
                CRD_NAME, _request_timeout=self._timeout
            )
        except ApiException as exc:
            if exc.status == 404:
                return CrdState.GONE
            logger.warning("Cannot read CRD %s: HTTP %s", CRD_NAME, exc.status)
            return CrdState.UNKNOWN
        except Exception as exc:  # any failure means "unknown", which holds the object
            logger.warning("Cannot read CRD %s: %s", CRD_NAME, type(exc).__name__)
            return CrdState.UNKNOWN
        return CrdState.TERMINATING if crd.metadata.deletion_timestamp else CrdState.PRESENT

    async def release(
        self, namespace: str, name: str, finalizers: Sequence[str], ours: str, rv: str
    ) -> bool:
        """Remove our finalizer with a merge patch guarded by ``rv``; False if it must be retried.

        Used only for the CRD cascade, when Kopf no longer serves the resource.
        """
        return await asyncio.to_thread(self._release, namespace, name, finalizers, ours, rv)

    def _release(
        self, namespace: str, name: str, finalizers: Sequence[str], ours: str, rv: str
    ) -> bool:
        import kubernetes
        from kubernetes.client.exceptions import ApiException

        self._client()  # configuration loaded
        api: Any = kubernetes.client.CustomObjectsApi(self._api.api_client)
        current = list(finalizers)
        for _ in range(3):
            if ours not in current:
                return True
            # Guarded by the finalizers themselves (not resourceVersion: the cascade keeps
            # changing the objects and Kopf no longer watches them), so another controller's
            # finalizer change is never overwritten.
            ops = [
                {"op": "test", "path": "/metadata/finalizers", "value": current},
                {
                    "op": "replace",
                    "path": "/metadata/finalizers",
                    "value": [f for f in current if f != ours],
                },
            ]
            try:
                api.patch_namespaced_custom_object(
                    GROUP,
                    VERSION,
                    namespace,
                    PLURAL,
                    name,
                    ops,
                    _content_type="application/json-patch+json",
                    _request_timeout=self._timeout,
                )
                return True
            except ApiException as exc:
                if exc.status == 404:
                    return True  # already gone
                if exc.status not in (409, 422):
                    logger.warning(
                        "CRD cascade: %s/%s: HTTP %s %s",
                        namespace,
                        name,
                        exc.status,
                        str(exc.body)[:300],
                    )
                    return False
            except Exception as exc:
                logger.warning("CRD cascade: %s/%s: %s", namespace, name, type(exc).__name__)
                return False
            try:  # finalizers changed meanwhile: read them again (list is what RBAC grants)
                found = api.list_namespaced_custom_object(
                    GROUP,
                    VERSION,
                    namespace,
                    PLURAL,
                    field_selector=f"metadata.name={name}",
                    _request_timeout=self._timeout,
                )["items"]
            except ApiException:
                return False
            if not found:
                return True
            current = list(found[0]["metadata"].get("finalizers") or [])
        return False

    async def state(self) -> CrdState:
        """The CRD's state, from a read that started after this call.

        Concurrent callers share reads: a caller joins the next read that has not started yet,
        never one already in flight, so every answer is at least as fresh as the question. That
        keeps the check authoritative (a CRD deletion before the object's deletion is always
        seen) while a drain of a thousand objects costs a handful of reads, not a thousand.
        """
        if self._batch is None:
            self._batch = asyncio.get_running_loop().create_future()
            asyncio.create_task(self._read_for(self._batch))  # noqa: RUF006  (kept by the future)
        return await asyncio.shield(self._batch)

    async def _read_for(self, batch: asyncio.Future[CrdState]) -> None:
        async with self._reading:
            if self._batch is batch:
                self._batch = None  # closed: later callers wait for the next read
            try:
                self.reads += 1
                result = await asyncio.to_thread(self._read)
            except BaseException:  # never leave callers hanging
                result = CrdState.UNKNOWN
            batch.set_result(result)
