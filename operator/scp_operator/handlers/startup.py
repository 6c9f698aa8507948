"""Starting and stopping the operator: every Kopf option, the settings, the Lease, the runtime.

Why a module of its own: Kopf options decide whether a deletion is safe (where the finalizer and
Kopf's bookkeeping live, whether two instances may act at once), so they are set in one place,
each with its reason, instead of being spread over the command line, the image and the chart.
The startup hook then builds everything the handlers share and keeps it on Kopf's ``memo``; the
cleanup hook takes it down again.
"""

from __future__ import annotations

import logging
import os
from typing import Any

import kopf

from scp_operator import account_checks, housekeeping, kube, lease, metrics, scope, sharding
from scp_operator import runtime as runtime_mod
from scp_operator import settings as settings_mod
from scp_operator.constants import FINALIZER, GROUP, PLURAL
from scp_operator.handlers.resync import Resync
from scp_operator.runtime import Runtime


def set_kopf_options(settings: kopf.OperatorSettings, shard: sharding.Shard | None = None) -> None:
    """Set every Kopf option the operator relies on (see :func:`configure` for the flags)."""
    # The finalizer the chart's admission policies add to every new object and require: the
    # one name the operator, the policies, the cascade and `kubectl patch` instructions share.
    settings.persistence.finalizer = FINALIZER
    # Kopf's progress and diff-base live in `status.kopf` rather than in annotations: a blocked
    # object's retry then writes its progress, its conditions and `status.deletion` in one status
    # PATCH, instead of an annotation PATCH plus a status PATCH (measured: 3 -> 2 writes per
    # retry; the other write is Kopf's wake-up "touch" after the delay). Only this operator
    # writes status (the CRD has a status subresource), so nothing else overwrites it.
    settings.persistence.progress_storage = kopf.StatusProgressStorage(name="kopf")
    settings.persistence.diffbase_storage = kopf.StatusDiffBaseStorage(name="kopf")
    # No Kopf peering (what `kopf run --standalone` sets): one active instance is ensured by the
    # operator's own Lease (scp_operator.lease), and peering would need KopfPeering CRDs and RBAC
    # the chart does not install; a leftover KopfPeering object must not pause the operator.
    settings.peering.standalone = True
    # Every watch request ends after 10 minutes (the API server would pick 30-60) and the client
    # gives up 60 s after that: a connection a proxy or NAT dropped silently is replaced, while a
    # healthy watch is always ended by the server first.
    settings.watching.server_timeout = 600
    settings.watching.client_timeout = 660
    # One worker per object, Kopf's default, stated on purpose: a held deletion waits for its
    # next attempt inside its object's worker (handlers/pacing.py; Kopf's own delays do too), so
    # a limit of W workers would stop every other object once W deletions are held (a mass
    # deletion during an SCP outage). SCP traffic is bounded by the operator's own limiter
    # (SCP_OPERATOR_MAX_CONCURRENT_REQUESTS) instead; the memory a burst of workers leaves is
    # measured in docs/benchmarks.md.
    settings.queueing.worker_limit = None
    # Events say they come from scp-operator (`reportingComponent`, and `source.component`,
    # the "From" column of `kubectl describe`), not from "kopf": the person reading them should
    # see which program to look at, and event filters (`--field-selector
    # reportingComponent=scp-operator`, an alert on Warning events) can single ours out.
    settings.posting.reporting_component = "scp-operator"
    # Sharded (SCP_OPERATOR_SHARDS > 1, docs/scaling.md): Kopf lists and watches only this
    # shard's VirtualServers, split by the API server (`shardSelector`, the ShardedListAndWatch
    # feature gate), so several processes share the work with no coordination but their Leases.
    # Only VirtualServers: the CRD and ScpAccounts are read whole by every shard.
    selector = shard.selector() if shard is not None else None
    if selector:
        settings.watching.shard_selectors[GROUP, PLURAL] = selector


async def _shard_selector_ignored(shard: sharding.Shard) -> str | None:
    """Why this shard must not start (its LIST returned another shard's object), or None.

    Only strays are kept in memory. With no VirtualServer yet nothing can be seen here; the
    handlers' own range check (``refuse_outside_shard``) then stops the operator at the first
    object outside the shard.
    """
    selector = shard.selector()
    if selector is None:
        return None
    watched = scope.watched()
    namespaces = watched if scope.is_exact(watched) else ()
    try:
        strays = await kube.list_virtualserver_objects(
            namespaces,
            shard_selector=selector,
            keep=lambda item: not shard.owns(str(item.get("metadata", {}).get("uid") or "")),
        )
    except kube.KubeReadError as exc:
        return f"cannot check that the API server honours shardSelector: {exc}"
    if not strays:
        return None
    uid = str(strays[0].get("metadata", {}).get("uid") or "")
    return f"{len(strays)} VirtualServer(s) returned for this shard: " + (
        sharding.out_of_shard_message(uid, shard)
    )


def quiet_http_logs() -> None:
    """Keep httpx's one INFO line per request ("HTTP Request: DELETE ... 202") out of the log
    unless the operator runs with ``--verbose`` or ``--debug`` (Kopf then sets the root logger
    to DEBUG, before any startup hook runs).

    The operator already logs every SCP answer that matters, once, with the object it concerns;
    at INFO, httpx would add a second line for every request, including the periodic account
    checks and retries of held objects, and drown the lines people need.
    """
    if logging.getLogger().getEffectiveLevel() > logging.DEBUG:
        logging.getLogger("httpx").setLevel(logging.WARNING)


@kopf.on.startup()
async def configure(
    settings: kopf.OperatorSettings, memo: kopf.Memo, logger: kopf.Logger, **_: Any
) -> None:
    """Set every Kopf option, then build the runtime from validated settings.

    Kopf options are set by :func:`set_kopf_options`. Only these have no ``settings.*``
    equivalent in Kopf and stay command-line flags of ``kopf run``:

    - ``--module scp_operator.handlers``: which code to load (``scp_operator.cli``);
    - ``--all-namespaces`` / ``--namespace``: what to watch; all namespaces unless a
      ``--namespace`` is given (``scp_operator.cli``; the chart's ``watchNamespaces``);
    - ``--liveness=http://0.0.0.0:8080/healthz``: Kopf's health endpoint, for the pod's probes
      (the Dockerfile's ``CMD``; the chart's ``scp-operator.args`` with ``healthPort``);
    - ``--log-format``, ``--verbose`` / ``--quiet`` / ``--debug``: logging, configured before
      any hook runs (the chart's ``operator.logFormat`` and ``operator.logLevel``).

    ``--standalone`` is not needed: ``settings.peering.standalone`` is set here, and Kopf reads
    it only when its watchers start, after the startup hooks (Kopf 1.45: every task but the
    startup activities waits for ``started_flag``).
    """
    quiet_http_logs()
    try:
        loaded = settings_mod.load()
    except settings_mod.SettingsError as exc:
        raise kopf.PermanentError(f"invalid settings: {exc}") from None
    set_kopf_options(settings, loaded.operator.shard)  # the shard selector needs the settings
    unknown = settings_mod.unknown_variables_warning(os.environ)
    if unknown:  # a misspelt setting is otherwise silently ignored
        logger.warning(unknown)
    # One active instance: a second one (started by hand, or a second release) waits here,
    # logging which instance holds the Lease, before it touches any object.
    memo.lease = await lease.start(loaded.operator, scope.watched())
    # Sharded: an API server without the ShardedListAndWatch gate ignores shardSelector and
    # every shard would act on every object. Refuse to start when the shard's own LIST shows it.
    refusal = await _shard_selector_ignored(loaded.operator.shard)
    if refusal:
        if memo.lease is not None:
            await memo.lease.release()
        raise kopf.PermanentError(refusal)
    runtime = runtime_mod.build(loaded)
    memo.runtime = runtime
    metrics.show_oldest_blocked(runtime.blocked)
    memo.account_checks = account_checks.start(runtime)
    try:
        memo.metrics_server = await metrics.start_server(loaded.operator.metrics_port)
    except OSError as exc:
        await runtime.aclose()
        raise kopf.PermanentError(
            f"SCP_OPERATOR_METRICS_PORT: cannot serve metrics on port "
            f"{loaded.operator.metrics_port}: {exc.strerror} (choose another port, or 0 to disable)"
        ) from None
    memo.resync = _start_resync(loaded, runtime)
    memo.housekeeping = housekeeping.start()  # memory back after bursts (housekeeping.py)
    if loaded.operator.check_versions:
        warning = await runtime_mod.check_api_version(runtime.client)
        if warning:
            logger.warning(warning)
    logger.info(
        "scp-operator ready: SCP API %s at %s, confirm mode %s%s",
        loaded.scp.api_version,
        loaded.scp.service_url(),
        "on" if loaded.operator.confirm_deletion else "off",
        ", DRY RUN (nothing will be deleted)" if loaded.operator.dry_run else "",
    )


def _start_resync(loaded: settings_mod.Settings, runtime: Runtime) -> Resync | None:
    """The periodic re-read over this shard's objects (None when the interval is 0)."""
    interval = loaded.operator.resync_interval
    if interval <= 0:
        return None
    shard = loaded.operator.shard
    watched = scope.watched()

    def keep(item: dict[str, Any]) -> bool:
        meta = item.get("metadata") or {}
        return shard.owns(str(meta.get("uid") or "")) and scope.serves(
            str(meta.get("namespace")), watched
        )

    resync = Resync(
        runtime,
        runtime.kube,
        interval=interval,
        namespaces=watched if scope.is_exact(watched) else (),
        keep=keep,
        shard_selector=shard.selector() or "",
    )
    resync.start()
    return resync


@kopf.on.cleanup()
async def close(memo: kopf.Memo, **_: Any) -> None:
    """Close the SCP connection pool and the metrics endpoint; give the Lease back last."""
    resync: Resync | None = memo.get("resync")
    if resync is not None:
        await resync.stop()
    await housekeeping.stop(memo.get("housekeeping"))
    await account_checks.stop(memo.get("account_checks"))
    runtime: Runtime | None = memo.get("runtime")
    if runtime is not None:
        await runtime.aclose()
    metrics.show_oldest_blocked(None)
    server = memo.get("metrics_server")
    if server is not None:
        await server.cleanup()
    keeper: lease.LeaseKeeper | None = memo.get("lease")
    if keeper is not None:
        await keeper.release()  # the next instance starts at once instead of after expiry
