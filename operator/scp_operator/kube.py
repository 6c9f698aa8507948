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

Calls go through ``kubernetes_asyncio`` on the event loop, over one :class:`KubeClient` per
process (one ``ApiClient``, one bounded connection pool), shared with
:mod:`scp_operator.kube_accounts`; there are no threads.

Size: about 400 lines, two classes: the reads share one client, one pool and one error mapping
(:class:`KubeReadError`), and a reader checking that no failure can look like "nothing there"
needs to see them together. The account reads live in :mod:`scp_operator.kube_accounts`.
"""

from __future__ import annotations

import asyncio
import logging
import os
from collections.abc import Awaitable, Callable, Sequence
from typing import Any, TypeVar

from scp_operator.constants import CRD_NAME, FINALIZER, GROUP, PLURAL, VERSION
from scp_operator.crd_state import CrdState

logger = logging.getLogger(__name__)
T = TypeVar("T")

#: Page size of the cascade's LIST: bounded memory whatever the number of objects.
PAGE = 500

#: Requests in flight to the API server at most, per :class:`KubeClient` (see there).
CONNECTIONS = 8


class KubeReadError(Exception):
    """The API server could not be asked; the message is short and safe to show."""


async def load_configuration() -> Any:
    """The client configuration: the pod's service account when in a cluster, else kubeconfig.

    ``kubernetes_asyncio`` is imported where it is first needed (here and in the calls): about
    0.4 s of imports that CLI commands which never talk to Kubernetes (``check`` without
    ``--account``, ``server get``) do not pay.
    """
    from kubernetes_asyncio import config
    from kubernetes_asyncio.client import Configuration

    configuration = Configuration()
    try:
        config.load_incluster_config(  # type: ignore[no-untyped-call]
            client_configuration=configuration
        )
    except config.ConfigException:
        # $KUBECONFIG as it is now: the library reads it once, when first imported.
        await config.load_kube_config(
            config_file=os.environ.get("KUBECONFIG") or None, client_configuration=configuration
        )
    return configuration


class KubeClient:
    """One ``kubernetes_asyncio`` ``ApiClient``, made on first use and closed by :meth:`aclose`.

    At most ``connections`` requests are in flight; more wait here for a free slot, *before*
    their request timeout starts. aiohttp would also queue them (its connector limit), but with
    the timeout already running, so a burst — a drain of a thousand objects, each reading its
    account, namespace, Secret and sharers — would turn into timeouts, and then holds, that
    only mean "we queued", not "the API server is away". Waiting here keeps the timeout the
    time the API server takes, as it was when the calls ran in a thread pool of that size.

    After :meth:`aclose` every call raises :class:`KubeReadError` (a read after shutdown must
    hold, never look like "nothing there") instead of quietly opening a new pool nobody closes.
    """

    def __init__(
        self,
        connections: int = CONNECTIONS,
        configure: Callable[[], Awaitable[Any]] = load_configuration,
    ) -> None:
        self._connections = connections
        self._configure = configure
        self._api: Any = None
        self._opening = asyncio.Lock()
        self._slots = asyncio.Semaphore(connections)
        self._closed = False

    async def _api_client(self) -> Any:
        async with self._opening:
            if self._closed:
                raise KubeReadError("the Kubernetes client is closed")
            if self._api is None:
                from kubernetes_asyncio.client import ApiClient

                # The library logs every response body at DEBUG, a Secret's keys included, and
                # `kopf run --debug` puts the root logger at DEBUG: keep that logger above it.
                logging.getLogger("kubernetes_asyncio.client.rest").setLevel(logging.INFO)
                configuration = await self._configure()
                # Bounded on purpose: the library's default lets 100 connections open at once,
                # and a drain of a thousand objects would open them all — a TLS handshake and
                # an API-server request slot (--max-requests-inflight, shared with every
                # controller in the cluster) each — only to be queued by the API server's
                # fairness limits, which count per client, not per connection. The slots above
                # keep this many requests in flight; the pool holds no more sockets than that.
                configuration.connection_pool_maxsize = self._connections
                self._api = ApiClient(configuration)
            return self._api

    async def call(self, request: Callable[[Any], Awaitable[T]]) -> T:
        """``await request(api_client)`` in one of the slots (the request makes one call)."""
        async with self._slots:
            return await request(await self._api_client())

    async def aclose(self) -> None:
        """Close the connection pool; later calls raise :class:`KubeReadError`."""
        async with self._opening:
            self._closed = True
            api, self._api = self._api, None
        if api is not None:
            await api.close()


def _custom_objects(api_client: Any) -> Any:
    from kubernetes_asyncio.client import CustomObjectsApi

    return CustomObjectsApi(api_client)


async def list_virtualservers(
    namespaces: Sequence[str] = (), client: KubeClient | None = None
) -> list[str]:
    """``namespace/name`` of every VirtualServer (in ``namespaces``, or everywhere).

    A missing CRD means there are none. Any other failure raises :class:`KubeReadError`: the
    caller must not take "could not look" for "nothing there".
    """
    own = client is None
    kube = KubeClient() if client is None else client
    try:
        items = await _list_pages(kube, tuple(namespaces), request_timeout=10.0)
    finally:
        if own:
            await kube.aclose()
    return sorted(f"{i['metadata']['namespace']}/{i['metadata']['name']}" for i in items)


async def _list_pages(
    kube: KubeClient,
    namespaces: tuple[str, ...],
    *,
    request_timeout: float,
    keep: Callable[[dict[str, Any]], bool] = lambda _item: True,
) -> list[dict[str, Any]]:
    """The VirtualServers in ``namespaces`` (empty: all) that ``keep`` accepts, ``PAGE`` at a time.

    Only kept items stay in memory. A 404 (the CRD is gone) ends a namespace's listing with what
    was read; anything else that goes wrong raises :class:`KubeReadError`.
    """
    result: list[dict[str, Any]] = []
    for ns in namespaces or (None,):
        token: str | None = None
        while True:
            kwargs: dict[str, Any] = {"limit": PAGE, "_request_timeout": request_timeout}
            if token:
                kwargs["_continue"] = token

            async def one_page(
                api_client: Any, ns: str | None = ns, kwargs: dict[str, Any] = kwargs
            ) -> Any:
                api = _custom_objects(api_client)
                if ns is None:
                    return await api.list_cluster_custom_object(GROUP, VERSION, PLURAL, **kwargs)
                return await api.list_namespaced_custom_object(GROUP, VERSION, ns, PLURAL, **kwargs)

            try:
                page: dict[str, Any] = await kube.call(one_page)
            except KubeReadError:
                raise
            except Exception as exc:
                if http_status(exc) == 404:
                    break  # the CRD is gone: nothing there any more
                raise KubeReadError(describe_failure("LIST virtualservers", exc)) from None
            result.extend(item for item in page.get("items") or [] if keep(item))
            token = (page.get("metadata") or {}).get("continue")
            if not token:
                break
    return result


def http_status(exc: BaseException) -> int | None:
    """The HTTP status of an API error, None when the API server did not answer."""
    from kubernetes_asyncio.client.exceptions import ApiException

    return exc.status if isinstance(exc, ApiException) else None


def describe_failure(what: str, exc: BaseException) -> str:
    """``what`` and the HTTP status or the exception's type: never a body, never a value."""
    status = http_status(exc)
    if status is not None:
        return f"{what} answered HTTP {status}"
    return f"{what} failed: {type(exc).__name__}"


class CrdReader:
    """Reads the CRD's state, the objects naming a server, and releases for the cascade."""

    def __init__(self, client: KubeClient | None = None, timeout: float = 10.0) -> None:
        self.client = client if client is not None else KubeClient()
        self._timeout = timeout
        self._reading = asyncio.Lock()  # one read at a time
        self._batch: asyncio.Future[CrdState] | None = None  # the next read, not yet started
        self.reads = 0

    async def _read(self) -> CrdState:
        async def read(api_client: Any) -> Any:
            from kubernetes_asyncio.client import ApiextensionsV1Api

            return await ApiextensionsV1Api(api_client).read_custom_resource_definition(
                CRD_NAME, _request_timeout=self._timeout
            )

        try:
            crd = await self.client.call(read)
        except Exception as exc:  # any failure means "unknown", which holds the object
            status = http_status(exc)
            if status == 404:
                return CrdState.GONE
            if status is not None:
                logger.warning("Cannot read CRD %s: HTTP %s", CRD_NAME, status)
            else:
                logger.warning("Cannot read CRD %s: %s", CRD_NAME, type(exc).__name__)
            return CrdState.UNKNOWN
        return CrdState.TERMINATING if crd.metadata.deletion_timestamp else CrdState.PRESENT

    async def naming(self, server_id: str) -> list[dict[str, Any]]:
        """Every VirtualServer, in any namespace, whose ``spec.serverId`` is ``server_id``.

        Asked of the API server with a field selector, in the canonical lower-case spelling and
        in upper case (objects stored before the CRD required lower case). Raises
        :class:`KubeReadError` when the API server cannot answer, so the caller holds.
        """
        spellings = dict.fromkeys((server_id.lower(), server_id.upper()))
        found: dict[str, dict[str, Any]] = {}
        for listing in await asyncio.gather(*(self._naming(s) for s in spellings)):
            for item in listing:
                found[str(item.get("metadata", {}).get("uid"))] = item
        return list(found.values())

    async def _naming(self, spelling: str) -> list[dict[str, Any]]:
        async def listing(api_client: Any) -> Any:
            return await _custom_objects(api_client).list_cluster_custom_object(
                GROUP,
                VERSION,
                PLURAL,
                field_selector=f"spec.serverId={spelling}",
                _request_timeout=self._timeout,
            )

        try:
            answer: dict[str, Any] = await self.client.call(listing)
        except KubeReadError:
            raise
        except Exception as exc:
            if http_status(exc) == 400 and "field label" in str(getattr(exc, "body", "")):
                raise KubeReadError(
                    "the installed VirtualServer CRD has no selectable field spec.serverId: "
                    "apply this version's CRD (crds/ or the chart's crds/ folder)"
                ) from None
            raise KubeReadError(describe_failure("LIST virtualservers", exc)) from None
        items: list[dict[str, Any]] = answer.get("items") or []
        return items

    async def holding(self, namespaces: Sequence[str] = ()) -> list[dict[str, Any]]:
        """Every VirtualServer (in ``namespaces``, or all) that still carries our finalizer.

        Read page by page; an API error raises :class:`KubeReadError`.
        """
        return await _list_pages(
            self.client,
            tuple(namespaces),
            request_timeout=self._timeout,
            keep=lambda item: FINALIZER in (item.get("metadata", {}).get("finalizers") or ()),
        )

    async def release(
        self, namespace: str, name: str, finalizers: Sequence[str], ours: str
    ) -> bool:
        """Remove our finalizer with a JSON patch guarded by the finalizer list; False: retry.

        Used only for the CRD cascade, when Kopf no longer serves the resource.
        """
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

            async def patch(api_client: Any, ops: list[dict[str, Any]] = ops) -> Any:
                return await _custom_objects(api_client).patch_namespaced_custom_object(
                    GROUP,
                    VERSION,
                    namespace,
                    PLURAL,
                    name,
                    ops,
                    _content_type="application/json-patch+json",
                    _request_timeout=self._timeout,
                )

            try:
                await self.client.call(patch)
                return True
            except Exception as exc:
                status = http_status(exc)
                if status == 404:
                    return True  # already gone
                if status is None:
                    logger.warning("CRD cascade: %s/%s: %s", namespace, name, type(exc).__name__)
                    return False
                if status not in (409, 422):
                    logger.warning(
                        "CRD cascade: %s/%s: HTTP %s %s",
                        namespace,
                        name,
                        status,
                        str(getattr(exc, "body", ""))[:300],
                    )
                    return False

            async def reread(api_client: Any) -> Any:
                return await _custom_objects(api_client).list_namespaced_custom_object(
                    GROUP,
                    VERSION,
                    namespace,
                    PLURAL,
                    field_selector=f"metadata.name={name}",
                    _request_timeout=self._timeout,
                )

            try:  # finalizers changed meanwhile: read them again (list is what RBAC grants)
                found = (await self.client.call(reread))["items"]
            except Exception:
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
                result = await self._read()
            except BaseException:  # never leave callers hanging
                result = CrdState.UNKNOWN
            batch.set_result(result)
