"""The Kubernetes calls of the periodic re-read (:mod:`scp_operator.resync`), made outside Kopf.

Kopf writes a handler's status patch and posts its events, but only for an object it is handling
at that moment, in that object's own task. The re-read walks every object from one task, so it
does both itself, over the shared :class:`~scp_operator.kube.KubeClient`:

* :func:`pages` lists the VirtualServers a page at a time, so a sweep never holds more than one
  page of bodies, whatever the number of objects;
* :func:`patch_status` writes a status merge patch that carries the ``resourceVersion`` it was
  computed from: if the object changed since the page was read (a deletion started, Kopf wrote
  its own status), the API server refuses the write with 409 and nothing is overwritten — the
  next sweep reads it again;
* :func:`post_event` posts an Event the way Kopf does (same reporting component), so
  ``kubectl describe`` shows the re-read's warnings next to the handlers' ones.

Nothing here decides anything: a failure is returned or raised for the caller to skip the object.
"""

from __future__ import annotations

import datetime
from collections.abc import AsyncIterator, Callable, Mapping, Sequence
from typing import Any

from scp_operator.constants import GROUP, PLURAL, VERSION
from scp_operator.kube import KubeClient, KubeReadError, describe_failure, http_status
from scp_operator.kube_http import MERGE_PATCH, path

_API = f"{GROUP}/{VERSION}"
#: Objects per LIST page of a sweep (bounded memory, and short requests for the API server).
PAGE = 250
#: Kubernetes refuses longer event messages (Kopf cuts at the same length).
MAX_MESSAGE = 1024
#: The "From" column of ``kubectl describe``, as for the events Kopf posts for us.
COMPONENT = "scp-operator"


async def pages(
    kube: KubeClient,
    namespaces: Sequence[str] = (),
    *,
    keep: Callable[[dict[str, Any]], bool] = lambda _item: True,
    shard_selector: str = "",
    request_timeout: float = 30.0,
) -> AsyncIterator[tuple[list[dict[str, Any]], int | None]]:
    """Yield ``(items, remaining)`` a page at a time: the items ``keep`` accepts (e.g. this
    shard's), and the API server's estimate of the objects still to come (``None`` when it gives
    none).

    A 404 (the CRD is gone) ends the listing; a 410 (the continue token expired during a long
    sweep) ends it too — the next sweep starts over. Anything else raises :class:`KubeReadError`.
    """
    for ns in namespaces or (None,):
        token: str | None = None
        while True:
            params: dict[str, str | int] = {"limit": PAGE}
            if token:
                params["continue"] = token
            if shard_selector:  # this shard's objects only (``keep`` checks the hash too)
                params["shardSelector"] = shard_selector
            try:
                page = await kube.request(
                    "GET",
                    path(_API, PLURAL, namespace=ns),
                    params=params,
                    timeout=request_timeout,
                )
            except KubeReadError:
                raise
            except Exception as exc:
                if http_status(exc) in (404, 410):
                    break
                raise KubeReadError(describe_failure("LIST virtualservers", exc)) from None
            meta = page.get("metadata") or {}
            remaining = meta.get("remainingItemCount")
            kept = [item for item in page.get("items") or [] if keep(item)]
            yield kept, remaining if isinstance(remaining, int) else None
            token = meta.get("continue")
            if not token:
                break


async def patch_status(
    kube: KubeClient, namespace: str, name: str, status: Mapping[str, Any], resource_version: str
) -> bool:
    """Merge ``status`` into the object's status if it is still at ``resource_version``.

    Returns False when the object changed or went meanwhile (409, 404): nothing was written.
    Anything else raises :class:`KubeReadError`.
    """
    body = {"metadata": {"resourceVersion": resource_version}, "status": dict(status)}
    try:
        await kube.request(
            "PATCH",
            path(_API, PLURAL, namespace=namespace, name=name, subresource="status"),
            body=body,
            content_type=MERGE_PATCH,
        )
    except KubeReadError:
        raise
    except Exception as exc:
        if http_status(exc) in (404, 409):
            return False
        raise KubeReadError(describe_failure(f"PATCH {namespace}/{name} status", exc)) from None
    return True


async def post_event(
    kube: KubeClient, involved: Mapping[str, Any], *, warning: bool, reason: str, message: str
) -> None:
    """Post an Event about ``involved`` (an object body). Raises :class:`KubeReadError`."""
    meta = involved.get("metadata") or {}
    namespace = str(meta.get("namespace") or "default")
    if len(message) > MAX_MESSAGE:
        message = message[: MAX_MESSAGE - 3] + "..."
    now = datetime.datetime.now(datetime.UTC).isoformat()
    body = {
        "metadata": {"namespace": namespace, "generateName": "scp-operator-"},
        "type": "Warning" if warning else "Normal",
        "reason": reason,
        "message": message,
        "action": "Observe",
        "reportingComponent": COMPONENT,
        "reportingInstance": COMPONENT,
        "source": {"component": COMPONENT},
        "involvedObject": {
            "apiVersion": f"{GROUP}/{VERSION}",
            "kind": "VirtualServer",
            "namespace": namespace,
            "name": meta.get("name"),
            "uid": meta.get("uid"),
        },
        "firstTimestamp": now,
        "lastTimestamp": now,
        "eventTime": now,
    }

    try:
        await kube.request("POST", path("v1", "events", namespace=namespace), body=body)
    except KubeReadError:
        raise
    except Exception as exc:
        raise KubeReadError(describe_failure(f"POST event for {namespace}", exc)) from None
