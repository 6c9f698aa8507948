"""The async SCP client: one pooled ``httpx`` client, signed afresh on every attempt.

It turns every answer — including timeouts, resets and garbage — into an :class:`Outcome` and
never raises for transport problems, so a handler cannot lose a finalizer to an exception it did
not expect. Retrying is not done here: the decision layer owns the schedule.
"""

from __future__ import annotations

import asyncio
import logging
import ssl
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx

from scp_operator import metrics
from scp_operator.credentials import CredentialsProvider, CredentialsUnavailable
from scp_operator.limits import RequestLimiter
from scp_operator.scp import endpoints, outcomes, signing, versions
from scp_operator.scp.outcomes import Kind, Outcome

logger = logging.getLogger(__name__)

MAX_BODY = 1_000_000


class ScpClient:
    """Signed calls to the virtualserver API of one SCP account."""

    def __init__(
        self,
        *,
        credentials: CredentialsProvider,
        base_url: Callable[[str | None], str],
        api_version: str,
        account_id: str = "",
        language: str = "en-US",
        timeout: float = 30.0,
        max_connections: int = 10,
        ca_bundle: Path | None = None,
        transport: httpx.AsyncBaseTransport | None = None,
        clock: Callable[[], float] = time.time,
        limiter: RequestLimiter | None = None,
    ) -> None:
        self._credentials = credentials
        self._base_url = base_url
        self.api_version = api_version
        self._account_id = account_id
        self._language = language
        self._clock = clock
        self._verified: set[str] = set()
        self._limiter = limiter or RequestLimiter(max_connections)
        # httpx bounds each read, not the whole answer: a server dripping a byte at a time
        # would hold a limiter slot forever. This bounds the whole request.
        self._deadline = timeout * 2
        self._http = httpx.AsyncClient(
            timeout=httpx.Timeout(timeout, connect=min(timeout, 10.0)),
            limits=httpx.Limits(
                max_connections=max_connections, max_keepalive_connections=max_connections
            ),
            verify=_ssl_context(ca_bundle),
            transport=transport,
            trust_env=True,  # HTTP(S)_PROXY / NO_PROXY, SSL_CERT_FILE
            follow_redirects=False,  # a redirect would change the signed URL: treat as rejected
        )

    async def aclose(self) -> None:
        """Close pooled connections."""
        await self._http.aclose()

    def server_url(self, server_id: str, region: str | None = None) -> str:
        """``{base}/v1/servers/{id}``, built so the gateway accepts it."""
        return endpoints.build_url(self._base_url(region), "v1", "servers", server_id)

    async def delete_server(self, server_id: str, region: str | None = None) -> Outcome:
        """``DELETE /v1/servers/{id}``: 202 accepted, 404 gone, 409 conflict, ...

        A 404 releases a finalizer, so it is trusted only from an endpoint that has proven to be
        SCP's virtualserver service (its root served a version list); otherwise a mistyped
        ``SCP_ENDPOINT`` pointing at any web server would let every object go with its server.
        """
        outcome = await self._signed("DELETE", self.server_url(server_id, region))
        if outcome.kind is Kind.GONE and not await self.verify_endpoint(region):
            return Outcome(
                Kind.REJECTED,
                404,
                "404 from an endpoint that did not prove to be SCP's virtualserver API "
                "(its root served no version list); check SCP_ENDPOINT/SCP_REGION",
            )
        return outcome

    async def get_server(self, server_id: str, region: str | None = None) -> Outcome:
        """``GET /v1/servers/{id}``: FOUND with the server as ``body``, or why not."""
        outcome = await self._signed("GET", self.server_url(server_id, region))
        if outcome.kind is Kind.GONE and not await self.verify_endpoint(region):
            return Outcome(Kind.REJECTED, 404, "404 from an unverified endpoint")
        return outcome

    async def list_servers_probe(self, region: str | None = None) -> Outcome:
        """A cheap signed read (``GET /v1/servers?limit=1``) to prove keys and clock."""
        url = endpoints.build_url(self._base_url(region), "v1", "servers", query={"limit": "1"})
        return await self._signed("GET", url)

    @property
    def credentials(self) -> CredentialsProvider:
        """The provider this client signs with."""
        return self._credentials

    async def list_versions(self, region: str | None = None) -> dict[str, versions.ApiVersion]:
        """The service root's live version list (unsigned); raises ValueError when unreadable."""
        url = self._base_url(region) + "/"
        try:
            async with self._limiter, asyncio.timeout(self._deadline):
                response = await self._http.get(url, headers={"Accept-Language": self._language})
        except (httpx.HTTPError, TimeoutError) as exc:
            metrics.SCP_REQUESTS.labels("GET", "error").inc()
            words = (
                "SCP did not answer in time"
                if isinstance(exc, TimeoutError)
                else (_transport_words(exc))
            )
            raise ValueError(f"cannot reach {url}: {words}") from None
        metrics.SCP_REQUESTS.labels("GET", str(response.status_code)).inc()
        if response.status_code != 200:
            raise ValueError(f"{url} answered {response.status_code}")
        try:
            table = versions.parse_version_list(outcomes.parse_json(response.content))
        except ValueError as exc:
            raise ValueError(f"{url}: {exc}") from None
        self._verified.add(self._base_url(region))
        return table

    async def verify_endpoint(self, region: str | None = None) -> bool:
        """Whether the region's endpoint is SCP's (cached once proven)."""
        if self._base_url(region) in self._verified:
            return True
        try:
            await self.list_versions(region)
        except ValueError as exc:
            logger.warning("SCP endpoint not verified: %s", exc)
            return False
        return True

    async def _signed(self, method: str, url: str) -> Outcome:
        try:
            creds = self._credentials.get()
        except CredentialsUnavailable as exc:
            return Outcome(Kind.NO_CREDENTIALS, None, str(exc))
        started = time.monotonic()
        try:
            async with self._limiter, asyncio.timeout(self._deadline):
                metrics.SCP_IN_FLIGHT.inc()
                try:
                    # Signed inside the limiter, so a request that waited is not sent stale.
                    headers = signing.signed_headers(
                        method=method,
                        url=url,
                        access_key=creds.access_key,
                        secret_key=creds.secret_key.get_secret_value(),
                        account_id=self._account_id,
                        api_version=self.api_version,
                        language=self._language,
                        clock=self._clock,
                    )
                    request = self._http.build_request(method, url, headers=headers)
                    if str(request.url) != url:  # what is signed must be exactly what is sent
                        return Outcome(Kind.REJECTED, None, "internal: URL changed after signing")
                    response = await self._http.send(request, stream=True)
                    try:
                        content = await _read_capped(response)
                    finally:
                        await response.aclose()
                finally:
                    metrics.SCP_IN_FLIGHT.dec()
        except httpx.HTTPError as exc:
            metrics.SCP_REQUESTS.labels(method, "error").inc()
            return Outcome(Kind.UNAVAILABLE, None, _transport_words(exc))
        except TimeoutError:
            metrics.SCP_REQUESTS.labels(method, "error").inc()
            return Outcome(Kind.UNAVAILABLE, None, "SCP did not answer in time")
        finally:
            metrics.SCP_LATENCY.labels(method).observe(time.monotonic() - started)
        metrics.SCP_REQUESTS.labels(method, str(response.status_code)).inc()
        outcome = outcomes.from_response(
            method=method,
            status=response.status_code,
            content=content,
            headers={k.lower(): v for k, v in response.headers.items()},
        )
        logger.debug("SCP %s %s -> %s", method, url, outcome.describe())
        return outcome


async def _read_capped(response: httpx.Response) -> bytes:
    """Read at most ``MAX_BODY`` bytes: a huge error page must not eat the operator's memory."""
    chunks: list[bytes] = []
    size = 0
    async for chunk in response.aiter_bytes():
        chunks.append(chunk)
        size += len(chunk)
        if size > MAX_BODY:
            break
    return b"".join(chunks)[:MAX_BODY]


def _transport_words(exc: httpx.HTTPError) -> str:
    """Name a transport failure without echoing request details (headers carry the key id)."""
    kinds: dict[type[Exception], str] = {
        httpx.ConnectTimeout: "connection timed out",
        httpx.ReadTimeout: "SCP did not answer in time",
        httpx.WriteTimeout: "sending to SCP timed out",
        httpx.PoolTimeout: "no free connection to SCP in time",
        httpx.ConnectError: "cannot connect to SCP",
        httpx.RemoteProtocolError: "SCP closed the connection",
        httpx.ReadError: "connection to SCP broke while reading",
    }
    for kind, words in kinds.items():
        if isinstance(exc, kind):
            return words
    return f"transport error ({type(exc).__name__})"


def _ssl_context(ca_bundle: Path | None) -> ssl.SSLContext:
    """System trust plus an optional extra bundle. Verification is never switched off."""
    context = ssl.create_default_context()
    try:
        import certifi

        context.load_verify_locations(certifi.where())
    except ImportError:  # pragma: no cover - certifi comes with httpx
        pass
    if ca_bundle is not None:
        context.load_verify_locations(str(ca_bundle))
    return context


def describe_body(body: dict[str, Any] | None) -> dict[str, Any]:
    """The observation fields we keep from a server object."""
    body = body or {}
    locked = body.get("locked")
    return {
        "name": body.get("name") if isinstance(body.get("name"), str) else None,
        "state": body.get("state") if isinstance(body.get("state"), str) else None,
        "locked": locked if isinstance(locked, bool) else None,
    }
