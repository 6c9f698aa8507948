"""Prometheus metrics, served on ``SCP_OPERATOR_METRICS_PORT`` at ``/metrics``.

Served by aiohttp inside the operator's event loop (started and stopped with the operator), not by
prometheus-client's thread server, so a restart inside one process (tests) never fights over the
port.
"""

from __future__ import annotations

import logging

from aiohttp import web
from prometheus_client import CONTENT_TYPE_LATEST, REGISTRY, Counter, Gauge, Histogram
from prometheus_client.exposition import generate_latest

logger = logging.getLogger(__name__)

SCP_REQUESTS = Counter(
    "scp_operator_scp_requests_total",
    "SCP API requests by account (ScpAccount name, or default), method and HTTP status code "
    "(code=error: no answer).",
    ["account", "method", "code"],
)
SCP_LATENCY = Histogram(
    "scp_operator_scp_request_duration_seconds",
    "SCP API request latency by account and method, including time spent waiting for the "
    "request limiter.",
    ["account", "method"],
    buckets=(0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30),
)
SCP_IN_FLIGHT = Gauge("scp_operator_scp_requests_in_flight", "SCP requests in flight now.")
DELETIONS = Counter(
    "scp_operator_deletions_total",
    "Finished deletions by outcome (DeleteAccepted, ServerGone, Orphaned, CrdDeleted).",
    ["outcome"],
)
BLOCKED = Gauge(
    "scp_operator_blocked_objects",
    "VirtualServers whose deletion is held now, by reason (Conflict, Unauthorized, ...).",
    ["reason"],
)
RETRIES = Counter(
    "scp_operator_retries_total",
    "Deletion retries scheduled, by reason.",
    ["reason"],
)
API_VERSION = Gauge(
    "scp_operator_api_version_info",
    "The configured SCP API version and its support status (value is always 1).",
    ["version", "support"],
)


class BlockedTracker:
    """Which objects are held and why, kept in step with the ``blocked_objects`` gauge."""

    def __init__(self) -> None:
        self._reasons: dict[str, str] = {}

    def held(self, uid: str, reason: str) -> None:
        previous = self._reasons.get(uid)
        if previous == reason:
            return
        if previous is not None:
            BLOCKED.labels(previous).dec()
        self._reasons[uid] = reason
        BLOCKED.labels(reason).inc()

    def released(self, uid: str) -> None:
        previous = self._reasons.pop(uid, None)
        if previous is not None:
            BLOCKED.labels(previous).dec()


async def _serve(_: web.Request) -> web.Response:
    return web.Response(
        body=generate_latest(REGISTRY), headers={"Content-Type": CONTENT_TYPE_LATEST}
    )


async def start_server(port: int, host: str = "0.0.0.0") -> web.AppRunner | None:  # noqa: S104
    """Serve ``/metrics``; ``port=0`` disables it (returns None)."""
    if port == 0:
        return None
    app = web.Application()
    app.router.add_get("/metrics", _serve)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    await web.TCPSite(runner, host, port).start()
    logger.info("Metrics at http://%s:%d/metrics", host, port)
    return runner
