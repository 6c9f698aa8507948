"""Kopf's login: the usual credentials, over a connection pool of bounded size.

Kopf's own session to the Kubernetes API has no connection limit (``TCPConnector(limit=0)``): a
drain of a thousand objects, each patched and given an event at nearly the same moment, opened
about 200 TLS connections in one process (measured in the benchmark's footprint section), each
with its buffers and an API-server request slot (``--max-requests-inflight`` is shared with every
controller of the cluster). The patches then wait in the API server's fairness queues anyway,
which count per user, not per connection.

So the operator logs in the way Kopf would without a client library (Kopf's own
``login_with_service_account``, else ``login_with_kubeconfig``: :func:`kube_http.connection_info`,
which the operator's own requests use too) and hands Kopf a session whose connector is bounded:
``SCP_OPERATOR_KUBE_CONNECTIONS`` for requests, plus one per watch stream, because a watch holds
its connection for minutes and must never wait behind requests (nor requests behind watches).
"""

from __future__ import annotations

import logging
from typing import Any

import aiohttp
import kopf

from scp_operator import kube_http, scope
from scp_operator import settings as settings_mod

#: Watch streams besides the VirtualServers': ScpAccounts, the VirtualServer CRD, and Kopf's
#: namespace watch; one spare.
OTHER_WATCHES = 4

logger = logging.getLogger(__name__)


def watch_streams(namespaces: tuple[str, ...]) -> int | None:
    """Watch connections Kopf holds open at once; ``None`` when namespace patterns make the
    count unknowable in advance (Kopf then opens one per namespace it finds)."""
    if not scope.is_exact(namespaces):
        return None
    return max(1, len(namespaces)) + OTHER_WATCHES


def connection_limit(requests: int, namespaces: tuple[str, ...]) -> int:
    """aiohttp's total connection limit: ``requests`` plus the watches (0: no limit)."""
    watches = watch_streams(namespaces)
    return 0 if watches is None else requests + watches


@kopf.on.login(id="bounded-session")
async def bounded_session(**_: Any) -> kopf.AiohttpSession | None:
    """Log in as Kopf would, and return a session with a bounded connection pool.

    With no credentials found, return None: Kopf then tries its other login handlers and fails
    with its own message, as without this handler.
    """
    try:
        info = await kube_http.connection_info()
    except kube_http.NoCredentials:
        return None
    try:
        requests = settings_mod.load().operator.kube_connections
    except settings_mod.SettingsError:
        # The startup hook refuses the settings and stops the operator, naming the variable;
        # until then, the default.
        requests = settings_mod.OperatorSettings.model_fields["kube_connections"].default
    limit = connection_limit(requests, scope.watched())
    if limit == 0:
        logger.info(
            "Namespace patterns are watched: Kopf's Kubernetes connections are not bounded "
            "(one watch per matching namespace)"
        )
    session = aiohttp.ClientSession(
        connector=aiohttp.TCPConnector(limit=limit, ssl=info.as_ssl_context()),
        headers=info.as_http_headers(),
        proxy=info.proxy_url,
        trust_env=info.trust_env,
    )
    return kopf.AiohttpSession(
        server=info.server,
        aiohttp_session=session,
        default_namespace=info.default_namespace,
        priority=info.priority + 1,  # preferred over Kopf's own login of the same credentials
        expiration=info.expiration,
    )
