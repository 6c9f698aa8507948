"""The operator's own Kubernetes API connection: JSON over one bounded aiohttp session.

Kopf talks to the API server over aiohttp with credentials from its login handlers; the
operator's own calls (:mod:`scp_operator.kube`, :mod:`scp_operator.kube_accounts`,
:mod:`scp_operator.lease`, :mod:`scp_operator.kube_status`) use the same library and the same
credentials (:func:`connection_info`: Kopf's own service-account and kubeconfig logins), over a
session of their own.

Why not a generated client library (``kubernetes_asyncio`` until issue 10): the operator makes
about a dozen kinds of JSON requests and needs none of a generated client's models, yet that
library imported all of them at startup — 36 MiB of a 101 MiB idle process, measured — and its
aiohttp session looked up proxy variables and ``~/.netrc`` in a thread for every request, about
a tenth of the operator's CPU in a 1 000-object drain (profiled with py-spy). aiohttp is
already here for Kopf and the metrics endpoint.

What is kept from before, on purpose:

* at most ``connections`` requests in flight, and a request waits for a slot *before* its
  timeout starts, so a burst queues here instead of turning into timeouts that only mean
  "we queued" (see :class:`Connection`);
* a failure never looks like "nothing there": an HTTP error raises :class:`KubeApiError` with the
  status, anything else (refused, reset, timed out) propagates for the caller to map;
* nothing from a response body reaches an exception text or a log: a Secret's keys are bodies.

Credentials are read when the connection opens and again after a 401 (a service-account token
is rotated by the kubelet; the request is retried once with the new one).
"""

from __future__ import annotations

import asyncio
import dataclasses
import json
import logging
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping
from typing import Any
from urllib.parse import quote

import aiohttp
import kopf

logger = logging.getLogger(__name__)

#: Requests in flight to the API server at most, per :class:`Connection` by default.
CONNECTIONS = 8

#: A JSON merge patch (RFC 7386): what every status write and finalizer-free patch here is.
MERGE_PATCH = "application/merge-patch+json"
#: A JSON patch (RFC 6902): the finalizer release, whose ``test`` makes it conditional.
JSON_PATCH = "application/json-patch+json"


class KubeApiError(Exception):
    """The API server answered with an HTTP error; ``status`` says which.

    The text names the status and Kubernetes' ``reason`` word (``NotFound``, ``Conflict``) only,
    never the body's message, which may quote what was sent.
    """

    def __init__(self, status: int, reason: str = "", message: str = "") -> None:
        super().__init__(f"HTTP {status}{f' {reason}' if reason else ''}")
        self.status = status
        self.reason = reason
        #: The Status body's message, shortened: for a caller that must tell two 400s apart
        #: ("field label not supported"); never put into a log line about a Secret.
        self.message = message


class KubeReadError(Exception):
    """The API server could not be asked; the message is short and safe to show."""


class NoCredentials(KubeReadError):
    """Neither a service account nor a kubeconfig was found."""


async def connection_info() -> kopf.ConnectionInfo:
    """Credentials as Kopf finds them: the pod's service account, else ``$KUBECONFIG`` (or
    ``~/.kube/config``), read now."""
    settings = kopf.OperatorSettings()
    found = kopf.login_with_service_account(
        logger=logger, settings=settings
    ) or kopf.login_with_kubeconfig(logger=logger, settings=settings)
    if found is None:
        raise NoCredentials(
            "no Kubernetes credentials: not in a pod with a service account, and no "
            "$KUBECONFIG or ~/.kube/config"
        )
    return found


class Connection:
    """One aiohttp session to the API server, opened on first use, closed by :meth:`aclose`.

    At most ``connections`` requests are in flight; more wait here for a free slot, before
    their timeout starts. aiohttp would also queue them (its connector limit), but with the
    timeout already running, so a burst — a drain of a thousand objects, each reading its
    account, namespace, Secret and sharers — would turn into timeouts, and then holds.

    After :meth:`aclose` every request raises :class:`ConnectionClosed` (a read after shutdown
    must hold, never look like "nothing there") instead of quietly opening a session nobody
    closes.
    """

    def __init__(
        self,
        connections: int = CONNECTIONS,
        login: Callable[[], Awaitable[kopf.ConnectionInfo]] = connection_info,
    ) -> None:
        self._connections = connections
        self._login = login
        self._session: aiohttp.ClientSession | None = None
        self._server = ""
        self._opening = asyncio.Lock()
        self._slots = asyncio.Semaphore(connections)
        self._closed = False

    async def _open(self, *, renew: aiohttp.ClientSession | None = None) -> aiohttp.ClientSession:
        async with self._opening:
            if self._closed:
                raise ConnectionClosed("the Kubernetes connection is closed")
            if self._session is not None and self._session is not renew:
                return self._session
            old, self._session = self._session, None
            if old is not None:
                await old.close()
            info = await self._login()
            self._server = info.server.rstrip("/")
            self._session = aiohttp.ClientSession(
                connector=aiohttp.TCPConnector(limit=self._connections, ssl=info.as_ssl_context()),
                headers={**info.as_http_headers(), "Accept": "application/json"},
                proxy=info.proxy_url,
                # Proxies come from the kubeconfig only: the environment's and ~/.netrc would be
                # looked up again for every request (in a thread), for an in-cluster address.
                trust_env=False,
            )
            return self._session

    async def send(
        self,
        method: str,
        path: str,
        *,
        params: Mapping[str, str | int] | None = None,
        body: Any = None,
        content_type: str = "application/json",
        accept: str = "application/json",
        timeout: float = 10.0,  # noqa: ASYNC109 (it starts after the wait for a slot, on purpose)
    ) -> Reply:
        """Send one request and return the answer whatever its status (a 401 is retried once
        after logging in again). Raises :class:`ConnectionClosed` after :meth:`aclose`,
        :class:`NoCredentials` without credentials, and aiohttp's or asyncio's own exceptions
        when the API server did not answer in ``timeout`` seconds."""
        data = None if body is None else json.dumps(body).encode()
        headers = {"Accept": accept}
        if body is not None:
            headers["Content-Type"] = content_type
        async with self._slots:
            session = await self._open()
            for attempt in (1, 2):
                async with session.request(
                    method,
                    self._server + path,
                    params=dict(params or {}),
                    data=data,
                    headers=headers,
                    timeout=aiohttp.ClientTimeout(total=timeout),
                ) as response:
                    reply = Reply(
                        response.status, await response.read(), response.headers.get("Date")
                    )
                if reply.status == 401 and attempt == 1:
                    session = await self._open(renew=session)  # a rotated token: log in again
                    continue
                break
        return reply

    async def request(
        self,
        method: str,
        path: str,
        *,
        params: Mapping[str, str | int] | None = None,
        body: Any = None,
        content_type: str = "application/json",
        accept: str = "application/json",
        timeout: float = 10.0,  # noqa: ASYNC109 (see send)
    ) -> dict[str, Any]:
        """:meth:`send`, then the JSON answer (``{}`` for an empty one); an HTTP error raises
        :class:`KubeApiError`."""
        reply = await self.send(
            method,
            path,
            params=params,
            body=body,
            content_type=content_type,
            accept=accept,
            timeout=timeout,
        )
        if reply.status >= 400:
            raise KubeApiError(reply.status, *_reason_and_message(reply.body))
        if not reply.body:
            return {}
        answer = json.loads(reply.body)
        return answer if isinstance(answer, dict) else {}

    async def stream(
        self,
        path: str,
        *,
        params: Mapping[str, str | int] | None = None,
        timeout: float = 330.0,  # noqa: ASYNC109 (see send)
    ) -> AsyncIterator[dict[str, Any]]:
        """GET a watch and yield its events (one JSON object per line) until the API server
        ends it. An HTTP error raises :class:`KubeApiError`. A watch holds its connection for
        minutes: give it a :class:`Connection` of its own, not the readers' one."""
        async with self._slots:
            session = await self._open()
            async with session.get(
                self._server + path,
                params=dict(params or {}),
                timeout=aiohttp.ClientTimeout(total=timeout),
            ) as response:
                if response.status >= 400:
                    raise KubeApiError(response.status, *_reason_and_message(await response.read()))
                async for line in response.content:
                    if not line.strip():
                        continue
                    try:
                        event = json.loads(line)
                    except ValueError:
                        continue
                    if isinstance(event, dict):
                        yield event

    async def aclose(self) -> None:
        """Close the session; later requests raise :class:`ConnectionClosed`."""
        async with self._opening:
            self._closed = True
            session, self._session = self._session, None
        if session is not None:
            await session.close()


@dataclasses.dataclass(frozen=True)
class Reply:
    """An answer as it came: status, body, and the ``Date`` header (the Lease keeper learns the
    API server's clock from it)."""

    status: int
    body: bytes
    date: str | None


class ConnectionClosed(KubeReadError):
    """A request after :meth:`Connection.aclose`."""


def _reason_and_message(raw: bytes) -> tuple[str, str]:
    """Kubernetes' one-word ``reason`` ("NotFound") and its ``message`` (shortened) from a Status
    body; empty strings when the body is not one."""
    try:
        status = json.loads(raw)
    except ValueError:
        return "", ""
    if not isinstance(status, dict):
        return "", ""
    reason, message = status.get("reason"), status.get("message")
    word = reason if isinstance(reason, str) and reason.isalnum() and len(reason) < 64 else ""
    return word, message[:300] if isinstance(message, str) else ""


def path(
    api: str,
    plural: str,
    *,
    namespace: str | None = None,
    name: str | None = None,
    subresource: str | None = None,
) -> str:
    """The URL path of a resource collection or object: ``api`` is ``"v1"`` for the core group,
    else ``"<group>/<version>"``."""
    parts = ["/api/v1" if api == "v1" else f"/apis/{api}"]
    if namespace is not None:
        parts.append(f"namespaces/{quote(namespace, safe='')}")
    parts.append(plural)
    if name is not None:
        parts.append(quote(name, safe=""))
    if subresource is not None:
        parts.append(subresource)
    return "/".join(parts)
