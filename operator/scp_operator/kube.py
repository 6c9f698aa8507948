"""The Kubernetes reads and writes the operator makes itself (Kopf does the rest).

Every fact that lets a server be deleted or an object be released is read here, from the API
server, at the moment of the decision — never from a watch cache or an index, which lag, are
per process and cannot see other shards:

* the VirtualServer CRD (:class:`CrdReader`): when a CRD is deleted the API server deletes every
  object of it, and those deletions must not delete cloud servers (the owner removed a type, not
  a fleet);
* the objects naming one server (:meth:`CrdReader.naming`), by a LIST with the field selector
  ``spec.serverId`` (a CRD ``selectableField``), for the shared-server guard;
* every object with our finalizer (:meth:`CrdReader.holding`), for the CRD cascade, which Kopf
  no longer serves once the CRD terminates.

The official client is synchronous; calls run in a small dedicated thread pool.

Size: about 300 lines, one class: the reads share one client, one pool and one error mapping
(:class:`KubeReadError`), and a reader checking that no failure can look like "nothing there"
needs to see them together. The account reads live in :mod:`scp_operator.kube_accounts`.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import functools
import logging
import threading
from collections.abc import Callable, Sequence
from typing import Any, TypeVar

from scp_operator.constants import CRD_NAME, FINALIZER, GROUP, PLURAL, VERSION
from scp_operator.crd_state import CrdState

logger = logging.getLogger(__name__)
T = TypeVar("T")

#: Page size of the cascade's LIST: bounded memory whatever the number of objects.
PAGE = 500


class KubeReadError(Exception):
    """The API server could not be asked; the message is short and safe to show."""


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

    def __init__(self, timeout: float = 10.0, threads: int = 8) -> None:
        self._timeout = timeout
        self._api: Any = None
        self._pool = concurrent.futures.ThreadPoolExecutor(threads, thread_name_prefix="kube")
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

    async def _run(self, fn: Callable[..., T], *args: Any) -> T:
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(self._pool, functools.partial(fn, *args))

    async def run(self, fn: Callable[..., T], *args: Any) -> T:
        """Run a blocking call of the official client in this reader's thread pool."""
        return await self._run(fn, *args)

    def api_client(self) -> Any:
        """The official client's ``ApiClient`` (configuration loaded once)."""
        return self._client().api_client

    def _objects(self) -> Any:
        import kubernetes

        self._client()  # configuration loaded
        return kubernetes.client.CustomObjectsApi(self._api.api_client)

    async def naming(self, server_id: str) -> list[dict[str, Any]]:
        """Every VirtualServer, in any namespace, whose ``spec.serverId`` is ``server_id``.

        Asked of the API server with a field selector, in the canonical lower-case spelling and
        in upper case (objects stored before the CRD required lower case). Raises
        :class:`KubeReadError` when the API server cannot answer, so the caller holds.
        """
        spellings = dict.fromkeys((server_id.lower(), server_id.upper()))
        found: dict[str, dict[str, Any]] = {}
        for listing in await asyncio.gather(*(self._run(self._naming, s) for s in spellings)):
            for item in listing:
                found[str(item.get("metadata", {}).get("uid"))] = item
        return list(found.values())

    def _naming(self, spelling: str) -> list[dict[str, Any]]:
        from kubernetes.client.exceptions import ApiException

        try:
            listing = self._objects().list_cluster_custom_object(
                GROUP,
                VERSION,
                PLURAL,
                field_selector=f"spec.serverId={spelling}",
                _request_timeout=self._timeout,
            )
        except ApiException as exc:
            if exc.status == 400 and "field label" in str(exc.body):
                raise KubeReadError(
                    "the installed VirtualServer CRD has no selectable field spec.serverId: "
                    "apply this version's CRD (crds/ or the chart's crds/ folder)"
                ) from None
            raise KubeReadError(f"LIST virtualservers answered HTTP {exc.status}") from None
        except Exception as exc:
            raise KubeReadError(f"LIST virtualservers failed: {type(exc).__name__}") from None
        items: list[dict[str, Any]] = listing.get("items") or []
        return items

    async def holding(self, namespaces: Sequence[str] = ()) -> list[dict[str, Any]]:
        """Every VirtualServer (in ``namespaces``, or all) that still carries our finalizer.

        Read page by page; an API error raises :class:`KubeReadError`.
        """
        return await self._run(self._holding, tuple(namespaces))

    def _holding(self, namespaces: tuple[str, ...]) -> list[dict[str, Any]]:
        from kubernetes.client.exceptions import ApiException

        api = self._objects()
        result: list[dict[str, Any]] = []
        for ns in namespaces or (None,):
            token: str | None = None
            while True:
                kwargs: dict[str, Any] = {"limit": PAGE, "_request_timeout": self._timeout}
                if token:
                    kwargs["_continue"] = token
                try:
                    if ns is None:
                        page = api.list_cluster_custom_object(GROUP, VERSION, PLURAL, **kwargs)
                    else:
                        page = api.list_namespaced_custom_object(
                            GROUP, VERSION, ns, PLURAL, **kwargs
                        )
                except ApiException as exc:
                    if exc.status == 404:
                        break  # the CRD is gone: nothing holds any more
                    raise KubeReadError(f"LIST virtualservers answered HTTP {exc.status}") from None
                except Exception as exc:
                    raise KubeReadError(
                        f"LIST virtualservers failed: {type(exc).__name__}"
                    ) from None
                for item in page.get("items") or []:
                    if FINALIZER in (item.get("metadata", {}).get("finalizers") or ()):
                        result.append(item)
                token = (page.get("metadata") or {}).get("continue")
                if not token:
                    break
        return result

    async def release(
        self, namespace: str, name: str, finalizers: Sequence[str], ours: str
    ) -> bool:
        """Remove our finalizer with a JSON patch guarded by the finalizer list; False: retry.

        Used only for the CRD cascade, when Kopf no longer serves the resource.
        """
        return await self._run(self._release, namespace, name, finalizers, ours)

    def _release(self, namespace: str, name: str, finalizers: Sequence[str], ours: str) -> bool:
        from kubernetes.client.exceptions import ApiException

        api = self._objects()
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
                result = await self._run(self._read)
            except BaseException:  # never leave callers hanging
                result = CrdState.UNKNOWN
            batch.set_result(result)
