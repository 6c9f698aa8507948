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
  no longer serves once the CRD terminates — with a sharded operator, only its shard's objects
  (``shardSelector``; see :mod:`scp_operator.sharding`). The shared-server guard's LIST is
  never limited to a shard: an object naming the same server in another shard still guards it.

Calls are JSON requests on the event loop, over one :class:`KubeClient` per process (one
aiohttp session with a bounded pool, :mod:`scp_operator.kube_http`), shared with
:mod:`scp_operator.kube_accounts`; there are no threads.

Size: about 400 lines, two classes: the reads share one client, one pool and one error mapping
(:class:`KubeReadError`), and a reader checking that no failure can look like "nothing there"
needs to see them together. The account reads live in :mod:`scp_operator.kube_accounts`.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Sequence
from typing import Any

from scp_operator.constants import CRD_NAME, FINALIZER, GROUP, PLURAL, VERSION
from scp_operator.crd_state import CrdState
from scp_operator.kube_http import (
    CONNECTIONS,
    JSON_PATCH,
    Connection,
    KubeApiError,
    KubeReadError,
    path,
)

__all__ = ["CONNECTIONS", "PAGE", "CrdReader", "KubeClient", "KubeReadError", "list_virtualservers"]

logger = logging.getLogger(__name__)

#: Page size of the cascade's LIST: bounded memory whatever the number of objects.
PAGE = 500

#: The process's Kubernetes connection (see :class:`scp_operator.kube_http.Connection`: at most
#: ``connections`` requests in flight, queued before their timeout starts; after ``aclose``
#: every request raises rather than look like "nothing there").
KubeClient = Connection

_API = f"{GROUP}/{VERSION}"

#: Only the metadata of an object (``PartialObjectMetadata``), else the whole object: the CRD's
#: state is in its metadata, and its schema (about half of it) need not be encoded by the API
#: server and decoded here for every batched read during a mass deletion.
METADATA_ONLY = "application/json;as=PartialObjectMetadata;g=meta.k8s.io;v=v1,application/json"


async def list_virtualservers(
    namespaces: Sequence[str] = (), client: KubeClient | None = None
) -> list[str]:
    """``namespace/name`` of every VirtualServer (in ``namespaces``, or everywhere).

    A missing CRD means there are none. Any other failure raises :class:`KubeReadError`: the
    caller must not take "could not look" for "nothing there".
    """
    items = await list_virtualserver_objects(namespaces, client)
    return sorted(f"{i['metadata']['namespace']}/{i['metadata']['name']}" for i in items)


async def list_virtualserver_objects(
    namespaces: Sequence[str] = (),
    client: KubeClient | None = None,
    *,
    shard_selector: str | None = None,
    keep: Callable[[dict[str, Any]], bool] = lambda _item: True,
) -> list[dict[str, Any]]:
    """Every VirtualServer (in ``namespaces``, or everywhere; with ``shard_selector``, what the
    API server returns for it) that ``keep`` accepts. Errors as :func:`list_virtualservers`."""
    own = client is None
    kube = KubeClient() if client is None else client
    try:
        return await _list_pages(
            kube,
            tuple(namespaces),
            request_timeout=10.0,
            shard_selector=shard_selector,
            keep=keep,
        )
    finally:
        if own:
            await kube.aclose()


async def read_virtualserver(kube: KubeClient, namespace: str, name: str) -> dict[str, Any] | None:
    """The VirtualServer as the API server has it now, or None when it is gone. Any other
    failure raises :class:`KubeReadError`."""
    try:
        return await kube.request("GET", path(_API, PLURAL, namespace=namespace, name=name))
    except KubeReadError:
        raise
    except Exception as exc:
        if http_status(exc) == 404:
            return None
        raise KubeReadError(
            describe_failure(f"GET virtualservers {namespace}/{name}", exc)
        ) from None


async def _list_pages(
    kube: KubeClient,
    namespaces: tuple[str, ...],
    *,
    request_timeout: float,
    keep: Callable[[dict[str, Any]], bool] = lambda _item: True,
    shard_selector: str | None = None,
) -> list[dict[str, Any]]:
    """The VirtualServers in ``namespaces`` (empty: all) that ``keep`` accepts, ``PAGE`` at a time.

    With ``shard_selector``, only that shard's (when the API server honours it: callers that
    must be sure also filter by hash themselves).

    Only kept items stay in memory. A 404 (the CRD is gone) ends a namespace's listing with what
    was read; anything else that goes wrong raises :class:`KubeReadError`.
    """
    result: list[dict[str, Any]] = []
    for ns in namespaces or (None,):
        token: str | None = None
        while True:
            params: dict[str, str | int] = {"limit": PAGE}
            if token:
                params["continue"] = token
            if shard_selector:
                params["shardSelector"] = shard_selector
            try:
                page = await kube.request(
                    "GET", path(_API, PLURAL, namespace=ns), params=params, timeout=request_timeout
                )
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
    return exc.status if isinstance(exc, KubeApiError) else None


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
        try:
            crd = await self.client.request(
                "GET",
                path("apiextensions.k8s.io/v1", "customresourcedefinitions", name=CRD_NAME),
                accept=METADATA_ONLY,
                timeout=self._timeout,
            )
        except Exception as exc:  # any failure means "unknown", which holds the object
            status = http_status(exc)
            if status == 404:
                return CrdState.GONE
            if status is not None:
                logger.warning("Cannot read CRD %s: HTTP %s", CRD_NAME, status)
            else:
                logger.warning("Cannot read CRD %s: %s", CRD_NAME, type(exc).__name__)
            return CrdState.UNKNOWN
        deleting = (crd.get("metadata") or {}).get("deletionTimestamp")
        return CrdState.TERMINATING if deleting else CrdState.PRESENT

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
        try:
            answer = await self.client.request(
                "GET",
                path(_API, PLURAL),
                params={"fieldSelector": f"spec.serverId={spelling}"},
                timeout=self._timeout,
            )
        except KubeReadError:
            raise
        except Exception as exc:
            if isinstance(exc, KubeApiError) and exc.status == 400 and "field label" in exc.message:
                raise KubeReadError(
                    "the installed VirtualServer CRD has no selectable field spec.serverId: "
                    "apply this version's CRD (crds/ or the chart's crds/ folder)"
                ) from None
            raise KubeReadError(describe_failure("LIST virtualservers", exc)) from None
        items: list[dict[str, Any]] = answer.get("items") or []
        return items

    async def holding(
        self, namespaces: Sequence[str] = (), *, shard_selector: str | None = None
    ) -> list[dict[str, Any]]:
        """Every VirtualServer (in ``namespaces``, or all; in the shard ``shard_selector`` names,
        when given) that still carries our finalizer.

        Read page by page; an API error raises :class:`KubeReadError`.
        """
        return await _list_pages(
            self.client,
            tuple(namespaces),
            request_timeout=self._timeout,
            keep=lambda item: FINALIZER in (item.get("metadata", {}).get("finalizers") or ()),
            shard_selector=shard_selector,
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

            try:
                await self.client.request(
                    "PATCH",
                    path(_API, PLURAL, namespace=namespace, name=name),
                    body=ops,
                    content_type=JSON_PATCH,
                    timeout=self._timeout,
                )
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
                        exc.message if isinstance(exc, KubeApiError) else "",
                    )
                    return False

            try:  # finalizers changed meanwhile: read them again (list is what RBAC grants)
                reread = await self.client.request(
                    "GET",
                    path(_API, PLURAL, namespace=namespace),
                    params={"fieldSelector": f"metadata.name={name}"},
                    timeout=self._timeout,
                )
                found = reread.get("items") or []
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
