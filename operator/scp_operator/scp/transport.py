"""The SCP client's connections: an ``httpx`` transport over aiohttp's connection pool.

Why not httpx's own pool: httpcore re-checks every pooled connection on each request, which at
the client's 32 connections cost about 3 ms of CPU per request, the largest item in a mass
deletion's profile. The same httpx client over this transport costs about 0.6 ms (measured
against the emulator over HTTP, 3 000 DELETEs, 32 at a time; ``docs/benchmarks.md``). aiohttp is
here already: Kopf talks to the API server with it.

httpx stays the client, so requests are built, signed, checked and read exactly as before. This
module's job is the translation back: every aiohttp failure becomes the httpx exception that
names the same thing (:func:`translate`), so the client's words for a transport failure ("SCP
closed the connection", "SCP did not answer in time", ...) do not depend on which pool carried
the request. (The ``httpx-aiohttp`` package does the same plumbing, but turns several of these
failures into other kinds.)

What is deliberately left to others:
- Proxies. aiohttp's ``trust_env`` would look up proxy variables and ``~/.netrc`` on every
  request; the client instead keeps httpx's own pool whenever a proxy is configured in the
  environment (see :func:`direct`), so proxy behaviour is httpx's, unchanged.
- Decompression. Bodies are passed on raw (``auto_decompress=False``): the client inflates them
  itself with a cap (:func:`scp_operator.scp.answers.read_capped`).
- Redirects. Never followed here; httpx decides (and the client refuses them).
- The whole-answer deadline. The client's ``asyncio.timeout`` bounds each request; per-read
  and connect timeouts come from httpx's ``timeout`` extension.
"""

from __future__ import annotations

import ssl
import urllib.request
from collections.abc import AsyncIterator

import aiohttp
import httpx
import yarl


def direct() -> bool:
    """Whether no proxy is configured in the environment (``HTTP(S)_PROXY``, ``ALL_PROXY``).

    Only then does the client use this transport: with a proxy, httpx's own pool honours the
    proxy variables and ``NO_PROXY`` as it always did.
    """
    return not urllib.request.getproxies()


def translate(exc: Exception) -> httpx.TransportError:
    """The httpx exception that names what went wrong, for an aiohttp (or socket) failure.

    The message is the failure's kind only: aiohttp's texts can carry the URL and request
    details, and the client's words for each kind come from the type anyway.
    """
    kinds: tuple[tuple[type[BaseException], type[httpx.TransportError]], ...] = (
        # Timeouts first: they are also OSErrors (TimeoutError) and ClientErrors.
        (aiohttp.ConnectionTimeoutError, httpx.ConnectTimeout),
        (aiohttp.SocketTimeoutError, httpx.ReadTimeout),
        (aiohttp.ServerTimeoutError, httpx.ReadTimeout),
        (TimeoutError, httpx.ReadTimeout),
        # No connection was made: refused, unresolvable, TLS handshake or certificate failed.
        (aiohttp.ClientConnectorError, httpx.ConnectError),
        # The peer hung up before answering, or answered something that is not HTTP, or cut
        # the body short: what h11 calls a remote protocol error.
        (aiohttp.ServerDisconnectedError, httpx.RemoteProtocolError),
        (aiohttp.ClientResponseError, httpx.RemoteProtocolError),
        (aiohttp.ClientPayloadError, httpx.RemoteProtocolError),
        # The connection broke under an established exchange (reset, broken pipe).
        (aiohttp.ClientOSError, httpx.ReadError),
        (aiohttp.ClientConnectionError, httpx.ReadError),
        (OSError, httpx.ReadError),
    )
    for kind, mapped in kinds:
        if isinstance(exc, kind):
            return mapped(type(exc).__name__)
    return httpx.TransportError(type(exc).__name__)


class AiohttpTransport(httpx.AsyncBaseTransport):
    """httpx requests sent through one aiohttp session (one pool of ``max_connections``).

    The session is opened on the first request, inside the running event loop, and closed by
    :meth:`aclose` (httpx's ``AsyncClient.aclose`` calls it).
    """

    def __init__(
        self, *, ssl_context: ssl.SSLContext, max_connections: int, keepalive: float = 5.0
    ) -> None:
        self._ssl = ssl_context
        self._limit = max_connections
        self._keepalive = keepalive  # as httpx's default keep-alive expiry
        self._session: aiohttp.ClientSession | None = None

    def _open(self) -> aiohttp.ClientSession:
        if self._session is None or self._session.closed:
            self._session = aiohttp.ClientSession(
                connector=aiohttp.TCPConnector(
                    limit=self._limit,
                    limit_per_host=0,
                    ssl=self._ssl,
                    keepalive_timeout=self._keepalive,
                ),
                trust_env=False,  # see the module docstring: proxies stay httpx's
                auto_decompress=False,  # read_capped inflates, with a cap
                cookie_jar=aiohttp.DummyCookieJar(),  # no state from one answer to the next
                raise_for_status=False,
            )
        return self._session

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        """Send ``request`` as it was built (and signed): the same URL, headers and body."""
        timeouts = request.extensions.get("timeout", {})
        timeout = aiohttp.ClientTimeout(
            total=None,
            connect=timeouts.get("connect"),
            sock_connect=timeouts.get("connect"),
            sock_read=timeouts.get("read"),
        )
        body = await request.aread()
        # httpx encodes header values as ASCII (a value it cannot encode fails at build time).
        headers = [(k.decode("ascii"), v.decode("ascii")) for k, v in request.headers.raw]
        try:
            response = await self._open().request(
                request.method,
                yarl.URL(str(request.url), encoded=True),  # exactly the signed URL
                headers=headers,
                data=body or None,
                allow_redirects=False,
                timeout=timeout,
                compress=None,
            )
        except Exception as exc:
            raise translate(exc) from None
        return httpx.Response(
            status_code=response.status,
            headers=list(response.raw_headers),
            stream=_Body(response),
            extensions={
                "http_version": b"HTTP/1.1",
                "reason_phrase": (response.reason or "").encode("ascii", "replace"),
            },
        )

    async def aclose(self) -> None:
        """Close the pool's connections."""
        if self._session is not None:
            await self._session.close()
            self._session = None


class _Body(httpx.AsyncByteStream):
    """An aiohttp response body as httpx's raw stream, with failures translated."""

    def __init__(self, response: aiohttp.ClientResponse) -> None:
        self._response = response

    async def __aiter__(self) -> AsyncIterator[bytes]:
        try:
            async for chunk in self._response.content.iter_any():
                yield chunk
        except Exception as exc:
            raise translate(exc) from None

    async def aclose(self) -> None:
        """Hand a fully read connection back to the pool; close one that was left mid-body
        (its unread rest would be taken for the next answer)."""
        if self._response.content.at_eof():
            self._response.release()
        else:
            self._response.close()
