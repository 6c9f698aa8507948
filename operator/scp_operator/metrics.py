"""Prometheus metrics, served on ``SCP_OPERATOR_METRICS_PORT`` at ``/metrics``.

Served by prometheus-client's own aiohttp handler (content negotiation between the Prometheus
text format and OpenMetrics, ``name[]`` filtering, gzip when the scraper asks for it) inside the
operator's event loop (started and stopped with the operator), not by prometheus-client's thread
server, so a restart inside one process (tests) never fights over the port.
"""

from __future__ import annotations

import datetime
import logging
import platform
import time
from collections.abc import Callable
from importlib.metadata import PackageNotFoundError, version

from aiohttp import web
from prometheus_client import Counter, Gauge, Histogram, Info
from prometheus_client.aiohttp import make_aiohttp_handler

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
DELETION_DURATION = Histogram(
    "scp_operator_deletion_duration_seconds",
    "Seconds from an object's deletionTimestamp to the release of its finalizer, by outcome "
    "(DeleteAccepted, ServerGone, Orphaned, CrdDeleted).",
    ["outcome"],
    # A deletion SCP accepts at once takes seconds; one held by a 409 (a server still being
    # created), an outage or a protection can take hours; beyond a day, someone must look.
    buckets=(1, 5, 15, 30, 60, 300, 900, 1800, 3600, 7200, 21600, 86400),
)
BLOCKED = Gauge(
    "scp_operator_blocked_objects",
    "VirtualServers whose deletion is held now, by reason (Conflict, Unauthorized, ...).",
    ["reason"],
)
# No labels on purpose: an object keeps its first-held time when its reason changes (Conflict,
# then Unavailable, ...), so its age belongs to the object, not to its current reason. A
# per-reason series would hand the age from one series to another as the reason flips and
# restart an alert's `for:` each time; which reasons hold objects is `blocked_objects`.
OLDEST_BLOCKED = Gauge(
    "scp_operator_oldest_blocked_seconds",
    "Seconds the longest-held VirtualServer has been held by this operator process (0: none); "
    "kept across changes of its hold reason, restarted with the process.",
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
# The configured SCP API version is not a label here: it is configuration, known only once the
# settings are loaded, and has its own series with its support status (api_version_info).
BUILD = Info(
    "scp_operator_build",
    "The versions the operator runs with: scp-operator, Kopf and Python (value is always 1).",
)


def _distribution_version(name: str) -> str:
    try:
        return version(name)
    except PackageNotFoundError:  # pragma: no cover - running from a bare source tree
        return "unknown"


BUILD.info(
    {
        "version": _distribution_version("scp-operator"),
        # Read from the installed distribution, not by importing Kopf: the SCP client, which
        # must know nothing of Kubernetes, imports this module.
        "kopf_version": _distribution_version("kopf"),
        "python_version": platform.python_version(),
    }
)


class BlockedTracker:
    """Which objects are held, why, and since when; kept in step with the ``blocked_objects``
    gauge. The first-held time is kept across reason changes, until the object is released."""

    def __init__(self, clock: Callable[[], float] = time.monotonic) -> None:
        self._reasons: dict[str, str] = {}
        self._since: dict[str, float] = {}
        self._clock = clock

    def held(self, uid: str, reason: str) -> None:
        self._since.setdefault(uid, self._clock())
        previous = self._reasons.get(uid)
        if previous == reason:
            return
        if previous is not None:
            BLOCKED.labels(previous).dec()
        self._reasons[uid] = reason
        BLOCKED.labels(reason).inc()

    def released(self, uid: str) -> None:
        self._since.pop(uid, None)
        previous = self._reasons.pop(uid, None)
        if previous is not None:
            BLOCKED.labels(previous).dec()

    def oldest_age(self) -> float:
        """Seconds the longest-held object has been held (0.0 when none is)."""
        if not self._since:
            return 0.0
        return max(0.0, self._clock() - min(self._since.values()))


def show_oldest_blocked(tracker: BlockedTracker | None) -> None:
    """Make ``oldest_blocked_seconds`` report ``tracker``'s oldest hold at each scrape.

    Computed when scraped, so the age grows between the handler's calls. The running operator's
    tracker is named here (its startup hook), not found: a process that built other runtimes
    (``scp-operator check``, tests) must not report their objects. None: report 0.
    """
    OLDEST_BLOCKED.set_function(tracker.oldest_age if tracker is not None else lambda: 0.0)


def _parse_timestamp(value: str) -> datetime.datetime:
    """An RFC 3339 time as the API server writes it (``2026-11-26T00:00:00Z``), read leniently:
    a lower-case ``t``/``z``, fractional seconds or an offset are accepted; no zone means UTC."""
    text = value.strip().upper().replace(" ", "T", 1)
    if text.endswith("Z"):
        text = text[:-1] + "+00:00"
    parsed = datetime.datetime.fromisoformat(text)
    return parsed if parsed.tzinfo else parsed.replace(tzinfo=datetime.UTC)


def record_release(
    outcome: str, deletion_timestamp: str | None, now: datetime.datetime | None = None
) -> None:
    """Observe how long a released object waited since its ``deletionTimestamp``.

    Never raises: a metric must not stand between an object and the release of its finalizer.
    A missing or unreadable timestamp is skipped; a negative span (clock skew between the API
    server and this process) counts as 0.
    """
    try:
        if not isinstance(deletion_timestamp, str) or not deletion_timestamp.strip():
            return
        started = _parse_timestamp(deletion_timestamp)
        now = now or datetime.datetime.now(datetime.UTC)
        if now.tzinfo is None:
            now = now.replace(tzinfo=datetime.UTC)
        DELETION_DURATION.labels(outcome).observe(max(0.0, (now - started).total_seconds()))
    except Exception as exc:  # deliberately total: see the docstring
        logger.debug("deletion duration not recorded (%s)", type(exc).__name__)


async def start_server(port: int, host: str = "0.0.0.0") -> web.AppRunner | None:  # noqa: S104
    """Serve ``/metrics``; ``port=0`` disables it (returns None).

    An ``OSError`` (port taken, no permission) is left to the caller, which names the setting.
    """
    if port == 0:
        return None
    app = web.Application()
    app.router.add_get("/metrics", make_aiohttp_handler())
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    try:
        await web.TCPSite(runner, host, port).start()
    except OSError:
        await runner.cleanup()
        raise
    logger.info("Metrics at http://%s:%d/metrics", host, port)
    return runner
