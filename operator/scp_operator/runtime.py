"""Long-lived objects, built once at startup and kept on Kopf's ``memo``."""

from __future__ import annotations

import dataclasses
import datetime
import logging

from scp_operator import metrics, scope
from scp_operator.backoff import Schedule
from scp_operator.credentials import CredentialsProvider
from scp_operator.decision import Timing
from scp_operator.directory import AccountDirectory
from scp_operator.kube import CrdReader, KubeClient
from scp_operator.kube_accounts import AccountReader
from scp_operator.limits import DeletionBudget, RequestLimiter
from scp_operator.metrics import BlockedTracker
from scp_operator.orphan_watch import OrphanWatch
from scp_operator.scp import versions
from scp_operator.scp.client import ScpClient
from scp_operator.settings import Settings

logger = logging.getLogger(__name__)


@dataclasses.dataclass
class Runtime:
    """What every handler needs: settings, the SCP clients, the Kubernetes readers, schedules.

    ``client`` is the operator's own account (its ``SCP_*`` settings); ``accounts`` resolves an
    object's ``spec.accountRef`` to the client of that ScpAccount (or to ``client`` for none).
    """

    settings: Settings
    client: ScpClient
    crd: CrdReader
    timing: Timing
    budget: DeletionBudget
    accounts: AccountDirectory
    account_reader: AccountReader
    kube: KubeClient  # the one Kubernetes client both readers share
    blocked: BlockedTracker = dataclasses.field(default_factory=BlockedTracker)
    #: Wakes a held deletion's wait when its object turns Orphan (handlers/pacing.py).
    orphans: OrphanWatch = dataclasses.field(default_factory=lambda: OrphanWatch(enabled=False))

    async def aclose(self) -> None:
        """Release network resources: the SCP clients' pools and the Kubernetes client's."""
        try:
            await self.orphans.aclose()
            await self.accounts.aclose()
            await self.client.aclose()
        finally:
            await self.kube.aclose()


def build(settings: Settings) -> Runtime:
    """Wire the runtime from validated settings."""
    scp, op = settings.scp, settings.operator
    credentials = CredentialsProvider(
        access_key=scp.access_key, secret_key=scp.secret_key, directory=scp.credentials_dir
    )
    client = ScpClient(
        credentials=credentials,
        base_url=scp.service_url,
        api_version=scp.api_version,
        account_id=scp.account_id,
        language=scp.language,
        timeout=op.http_timeout,
        # a pool smaller than the limiter would queue requests inside httpx instead
        max_connections=max(op.max_connections, op.max_concurrent_requests),
        ca_bundle=scp.ca_bundle,
        limiter=RequestLimiter(op.max_concurrent_requests, op.max_requests_per_second),
    )
    timing = Timing(
        fast=Schedule(op.backoff_base, op.backoff_cap),
        slow=Schedule(op.slow_backoff_base, op.slow_backoff_cap),
        hold_recheck=op.hold_recheck_interval,
        confirm_poll=op.confirm_poll_interval,
    )
    budget = DeletionBudget(op.max_deletions_per_window, op.deletion_window)
    kube = KubeClient()  # connects on first use: `scp-operator check` without accounts never does
    # Namespace patterns have no one place to watch (RBAC may grant only the matching
    # namespaces): there, a held deletion's wait ends only at its time.
    watched = scope.watched()
    crd = CrdReader(kube)
    reader = AccountReader(kube)
    return Runtime(
        settings=settings,
        client=client,
        crd=crd,
        timing=timing,
        budget=budget,
        accounts=AccountDirectory(settings, client, reader),
        account_reader=reader,
        kube=kube,
        orphans=OrphanWatch(namespaces=watched, enabled=scope.is_exact(watched)),
    )


async def check_api_version(client: ScpClient, today: datetime.date | None = None) -> str | None:
    """Read the live version list and return a warning for the configured version, if any.

    Falls back to the built-in table when the list cannot be read, so the deprecation warning is
    given either way. Also sets the ``api_version_info`` metric.
    """
    today = today or datetime.datetime.now(datetime.UTC).date()
    try:
        table = await client.list_versions()
    except ValueError as exc:
        logger.warning("Cannot read SCP's live version list (%s); using the built-in table", exc)
        table = dict(versions.BUILTIN)
    warning = versions.support_warning(client.api_version, table, today)
    info = table.get(client.api_version)
    if info is None:
        support = "unlisted"
    elif warning and "past its" in warning:
        support = "expired"
    else:
        support = info.status.value.lower()
    metrics.API_VERSION.labels(client.api_version, support).set(1)
    return warning
