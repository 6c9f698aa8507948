"""The async SCP client: one pooled ``httpx`` client, signed afresh on every attempt.

It turns every answer — including timeouts, resets and garbage — into an :class:`Outcome` and
never raises for transport problems, so a handler cannot lose a finalizer to an exception it did
not expect. Retrying is not done here: the decision layer owns the schedule.

The request path (signing, the deadline, the limiter, the outcome fallback) stays whole here, so
a reader checking that no answer can escape as an exception sees it in one place; reading the
untrusted answer (bounded bodies and fields, TLS) is :mod:`scp_operator.scp.answers`.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import logging
import time
from collections.abc import AsyncIterator, Callable
from pathlib import Path

import httpx

from scp_operator import metrics
from scp_operator.credentials import CredentialSource, CredentialsUnavailable
from scp_operator.limits import RequestLimiter
from scp_operator.scp import answers, endpoints, outcomes, signing, versions
from scp_operator.scp import transport as transport_module
from scp_operator.scp.outcomes import Outcome, Verdict

logger = logging.getLogger(__name__)

# Asked on every request: a compressed answer would be inflated before any size cap applies
# (a few hundred kB of gzip can hold hundreds of MB). Not part of SCP's signature.
ACCEPT_ENCODING = "identity"


@dataclasses.dataclass(frozen=True)
class LastAnswer:
    """The last time SCP answered this client, and how: for the operator's health probes, which
    report it instead of calling SCP themselves (they run every few seconds)."""

    at: float  # wall-clock seconds since the epoch (the client's clock)
    code: str  # the HTTP status, or "error": no answer (transport failure, timeout)


class ScpClient:
    """Signed calls to the virtualserver API of one SCP account."""

    def __init__(
        self,
        *,
        credentials: CredentialSource,
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
        account: str = "default",
    ) -> None:
        self.account = account  # label of this client's metrics: an ScpAccount name or default
        self._credentials = credentials
        self._base_url = base_url
        self.api_version = api_version
        self._account_id = account_id
        self._language = language
        self._clock = clock
        self._verified: set[str] = set()
        self.last_answer: LastAnswer | None = None  # None: no request has finished yet
        self._limiter = limiter or RequestLimiter(max_connections)
        # httpx bounds each read, not the whole answer: a server dripping a byte at a time
        # would hold a limiter slot forever. This bounds the whole request.
        self._deadline = timeout * 2
        verify = answers.ssl_context(ca_bundle)
        if transport is None and transport_module.direct():
            # aiohttp's pool under the same httpx client: a fifth of the CPU per request (see
            # scp_operator.scp.transport). With a proxy configured, httpx's pool honours it.
            transport = transport_module.AiohttpTransport(
                ssl_context=verify, max_connections=max_connections
            )
        self._http = httpx.AsyncClient(
            timeout=httpx.Timeout(timeout, connect=min(timeout, 10.0)),
            limits=httpx.Limits(
                max_connections=max_connections, max_keepalive_connections=max_connections
            ),
            verify=verify,
            transport=transport,
            # HTTP(S)_PROXY / NO_PROXY (httpx honours them only with its own pool: see above)
            trust_env=True,
            follow_redirects=False,  # a redirect would change the signed URL: treat as rejected
            headers={"Accept-Encoding": ACCEPT_ENCODING},
        )

    async def aclose(self) -> None:
        """Close pooled connections."""
        await self._http.aclose()

    def base_url(self, region: str | None = None) -> str:
        """The base URL a call for ``region`` (None: the default region) goes to.

        In the exact form httpx sends (see ``endpoints.normalise_base``). Raises
        :class:`endpoints.EndpointError` for a region the environment lacks; the calls below turn
        that into a REJECTED outcome instead.
        """
        return endpoints.normalise_base(self._base_url(region))

    def server_url(self, server_id: str, region: str | None = None) -> str:
        """``{base}/v1/servers/{id}``, built so the gateway accepts it.

        The id is sent in lower case, the canonical spelling of a UUID: an id typed in upper
        case names the same server, and one spelling keeps logs, signatures and caches agreeing.
        """
        return endpoints.build_url(self.base_url(region), "v1", "servers", server_id.lower())

    @contextlib.asynccontextmanager
    async def slot(self) -> AsyncIterator[None]:
        """Hold one slot of the request limiter for the duration of the block.

        For a caller that must do a last check (a Kubernetes read) after it has a slot and right
        before the DELETE goes out, with no wait in between: inside the block, call
        ``delete_server(..., slot_held=True)`` so the client does not queue for a second slot
        (which, with every slot held by such callers, would deadlock).
        """
        async with self._limiter:
            yield

    async def delete_server(
        self, server_id: str, region: str | None = None, *, slot_held: bool = False
    ) -> Outcome:
        """``DELETE /v1/servers/{id}``: 202 accepted, 404 gone, 409 conflict, ...

        A 404 releases a finalizer, so it is trusted only from an endpoint that has proven to be
        SCP's virtualserver service (its root served a version list); otherwise a mistyped
        ``SCP_ENDPOINT`` pointing at any web server would let every object go with its server.

        ``slot_held``: the caller already holds a limiter slot (see :meth:`slot`); take none.
        A region without an endpoint is REJECTED without a call.
        """
        try:
            url = self.server_url(server_id, region)
        except endpoints.EndpointError as exc:
            return Outcome(Verdict.REJECTED, None, str(exc))
        outcome = await self._signed("DELETE", url, slot_held=slot_held)
        if outcome.kind is Verdict.GONE and not await self.verify_endpoint(
            region, slot_held=slot_held
        ):
            return Outcome(
                Verdict.REJECTED,
                404,
                "404 from an endpoint that did not prove to be SCP's virtualserver API "
                "(its root served no version list); check SCP_ENDPOINT/SCP_REGION",
            )
        return outcome

    async def get_server(self, server_id: str, region: str | None = None) -> Outcome:
        """``GET /v1/servers/{id}``: FOUND with the server as ``body``, or why not."""
        try:
            url = self.server_url(server_id, region)
        except endpoints.EndpointError as exc:
            return Outcome(Verdict.REJECTED, None, str(exc))
        outcome = await self._signed("GET", url)
        if outcome.kind is Verdict.GONE and not await self.verify_endpoint(region):
            return Outcome(Verdict.REJECTED, 404, "404 from an unverified endpoint")
        return outcome

    async def list_servers_probe(self, region: str | None = None) -> Outcome:
        """A cheap signed read (``GET /v1/servers?limit=1``) to prove keys and clock.

        Goes to ``region``'s endpoint (None: the default region). A FOUND outcome carries the
        answer as ``body`` (``{"servers": [...]}``, at most one server).
        """
        try:
            url = endpoints.build_url(self.base_url(region), "v1", "servers", query={"limit": "1"})
        except endpoints.EndpointError as exc:
            return Outcome(Verdict.REJECTED, None, str(exc))
        return await self._signed("GET", url)

    @property
    def credentials(self) -> CredentialSource:
        """The provider this client signs with."""
        return self._credentials

    async def list_versions(
        self, region: str | None = None, *, slot_held: bool = False
    ) -> dict[str, versions.ApiVersion]:
        """The service root's live version list (unsigned); raises ValueError when unreadable.

        ``slot_held``: the caller already holds a limiter slot; take none.
        """
        base = self.base_url(region)  # EndpointError is a ValueError too
        url = base + "/"
        try:
            async with self._slot_unless(slot_held), asyncio.timeout(self._deadline):
                request = self._http.build_request(
                    "GET", url, headers={"Accept-Language": self._language}
                )
                response = await self._http.send(request, stream=True)
                try:
                    content = await answers.read_capped(response)
                except answers.UnreadableBody as exc:
                    raise ValueError(f"{url}: {exc}") from None
                finally:
                    await response.aclose()
        except (httpx.HTTPError, TimeoutError) as exc:
            metrics.SCP_REQUESTS.labels(self.account, "GET", "error").inc()
            self.last_answer = LastAnswer(self._clock(), "error")
            words = (
                "SCP did not answer in time"
                if isinstance(exc, TimeoutError)
                else (answers.transport_words(exc))
            )
            raise ValueError(f"cannot reach {url}: {words}") from None
        metrics.SCP_REQUESTS.labels(self.account, "GET", str(response.status_code)).inc()
        self.last_answer = LastAnswer(self._clock(), str(response.status_code))
        if response.status_code != 200:
            raise ValueError(f"{url} answered {response.status_code}")
        try:
            table = versions.parse_version_list(outcomes.parse_json(content))
        except ValueError as exc:
            raise ValueError(f"{url}: {exc}") from None
        self._verified.add(base)
        return table

    async def verify_endpoint(self, region: str | None = None, *, slot_held: bool = False) -> bool:
        """Whether the region's endpoint is SCP's (cached once proven)."""
        try:
            if self.base_url(region) in self._verified:
                return True
            await self.list_versions(region, slot_held=slot_held)
        except ValueError as exc:
            logger.warning("SCP endpoint not verified: %s", exc)
            return False
        return True

    def _slot_unless(self, slot_held: bool) -> contextlib.AbstractAsyncContextManager[None]:
        """The limiter, or nothing when the caller already holds a slot (see :meth:`slot`)."""
        if slot_held:
            return contextlib.nullcontext()
        return self._limiter

    async def _signed(self, method: str, url: str, *, slot_held: bool = False) -> Outcome:
        """One signed call, as an outcome; never raises for anything the network sends.

        ``slot_held``: the caller holds a limiter slot already, so the only await between the
        caller's last check and the request going out is the send itself.
        """
        try:
            creds = self._credentials.get()
        except CredentialsUnavailable as exc:
            return Outcome(Verdict.NO_CREDENTIALS, None, str(exc))
        started = time.monotonic()
        note: str | None = None
        try:
            async with self._slot_unless(slot_held), asyncio.timeout(self._deadline):
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
                    try:
                        request = self._http.build_request(method, url, headers=headers)
                    except UnicodeEncodeError:
                        # Keys are checked by the credentials provider; what is left is the
                        # account id (settings refuse such a value; a client built otherwise
                        # might not). The value is not echoed.
                        return Outcome(
                            Verdict.REJECTED,
                            None,
                            "SCP_ACCOUNT_ID holds characters an HTTP header cannot carry",
                        )
                    if str(request.url) != url:  # what is signed must be exactly what is sent
                        return Outcome(
                            Verdict.REJECTED, None, "internal: URL changed after signing"
                        )
                    response = await self._http.send(request, stream=True)
                    try:
                        content: bytes | None = await answers.read_capped(response)
                    except answers.UnreadableBody as exc:
                        content, note = None, str(exc)
                    finally:
                        await response.aclose()
                finally:
                    metrics.SCP_IN_FLIGHT.dec()
        except httpx.HTTPError as exc:
            metrics.SCP_REQUESTS.labels(self.account, method, "error").inc()
            self.last_answer = LastAnswer(self._clock(), "error")
            return Outcome(Verdict.UNAVAILABLE, None, answers.transport_words(exc))
        except TimeoutError:
            metrics.SCP_REQUESTS.labels(self.account, method, "error").inc()
            self.last_answer = LastAnswer(self._clock(), "error")
            return Outcome(Verdict.UNAVAILABLE, None, "SCP did not answer in time")
        finally:
            metrics.SCP_LATENCY.labels(self.account, method).observe(time.monotonic() - started)
        metrics.SCP_REQUESTS.labels(self.account, method, str(response.status_code)).inc()
        self.last_answer = LastAnswer(self._clock(), str(response.status_code))
        outcome = _to_outcome(method, response, content, note)
        logger.debug("SCP %s %s -> %s", method, url, outcome.describe())
        return outcome


def _to_outcome(
    method: str, response: httpx.Response, content: bytes | None, note: str | None
) -> Outcome:
    """A real answer as an outcome; if that fails for any reason, the status alone decides.

    The status line is the reliable part: a 202 to a DELETE must stay an acceptance (and a 404
    a GONE) whatever a bug or a hostile header or body does to the rest.
    """
    status = response.status_code
    try:
        headers = {k.lower(): v for k, v in response.headers.items()}
        if content is None:
            return outcomes.from_status(method=method, status=status, headers=headers, note=note)
        return outcomes.from_response(
            method=method, status=status, content=content, headers=headers
        )
    except Exception as exc:  # deliberately total: see the docstring
        logger.warning(
            "SCP answered %s %s with something the operator could not read (%s); "
            "going by the status alone",
            method,
            status,
            type(exc).__name__,
        )
        return outcomes.from_status(method=method, status=status, note=note)
