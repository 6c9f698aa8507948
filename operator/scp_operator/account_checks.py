"""ScpAccount status: do its keys work, which namespaces may use it, how many objects use it.

Each account is checked when it changes (a new generation) and again every
``SCP_OPERATOR_ACCOUNT_RECHECK_INTERVAL`` seconds, by one background loop started with the
operator (the loop writes status only; when an account changes, Kopf's handler in
:mod:`scp_operator.handlers.accounts` checks it at once and posts the event). A check reads the
Secret, makes one signed read (``GET /v1/servers?limit=1``), counts the admitted namespaces and
the objects naming the account, and writes ``status``: conditions
``Ready`` (CredentialsValid, SecretNotFound, SecretForbidden, SecretKeyMissing, SecretMalformed,
Unauthorized, Forbidden, Unreachable, InvalidRegion, AccountInvalid) and ``NamespacesAdmitted``.

Not a Kopf timer: timers and daemons make Kopf put a finalizer on every ScpAccount, which would
outlive an uninstalled operator; a status check needs none. The status is for the cluster admin
(the ScpAccount is cluster-scoped); it may name the Secret, never its content.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from typing import Any

from scp_operator import accounts, conditions, scope
from scp_operator.accounts import AccountInvalid, AccountSpec
from scp_operator.directory import Refusal
from scp_operator.kube import KubeReadError
from scp_operator.kube_accounts import SecretProblem
from scp_operator.runtime import Runtime
from scp_operator.scp.endpoints import EndpointError
from scp_operator.scp.outcomes import Verdict

logger = logging.getLogger(__name__)

#: Condition reasons for each outcome of the signed read.
READ_REASONS = {
    Verdict.FOUND: "CredentialsValid",
    Verdict.UNAUTHORIZED: "Unauthorized",
    Verdict.FORBIDDEN: "Forbidden",
    Verdict.NO_CREDENTIALS: "SecretKeyMissing",
}


async def check(runtime: Runtime, body: dict[str, Any]) -> dict[str, Any]:
    """Check one account and return the status to write (conditions merged with the old ones)."""
    meta, old = body.get("metadata") or {}, body.get("status") or {}
    name, generation = str(meta.get("name")), meta.get("generation")
    reader = runtime.account_reader
    ready: tuple[str, str, str]
    admitted: tuple[str, str, str] | None = None
    status: dict[str, Any] = {
        "observedGeneration": generation,
        "lastCheckTime": conditions.now_iso(),
    }
    try:
        spec = accounts.parse(body.get("spec") or {})
    except AccountInvalid as exc:
        ready = ("False", "AccountInvalid", f"the spec cannot be used: {exc}")
    else:
        ready = await _signed_read(runtime, name, spec, status)
        admitted = await _admitted(runtime, spec, status)
    try:
        status["objects"] = await reader.users(name)
    except KubeReadError as exc:
        logger.warning("ScpAccount %s: cannot count its objects: %s", name, exc)
    current = old.get("conditions")
    for type_, found in (("Ready", ready), ("NamespacesAdmitted", admitted)):
        if found is not None:
            current = conditions.set_condition(
                current,
                type=type_,
                status=found[0],
                reason=found[1],
                message=found[2],
                generation=generation,
            )
    status["conditions"] = current
    return status


async def _signed_read(
    runtime: Runtime, name: str, spec: AccountSpec, status: dict[str, Any]
) -> tuple[str, str, str]:
    try:
        status["endpoint"] = accounts.service_url(spec, None)
    except EndpointError as exc:
        return ("False", "InvalidRegion", f"{exc}; correct spec.region or spec.environment")
    ref = spec.credentials_secret_ref
    try:
        await runtime.account_reader.secret_keys(
            ref.namespace, ref.name, ref.access_key_key, ref.secret_key_key
        )
    except SecretProblem as exc:
        return ("False", exc.reason, str(exc))
    except KubeReadError as exc:
        return ("Unknown", "SecretUnreadable", str(exc))
    target = await runtime.accounts.client_for(name, spec)
    if isinstance(target, Refusal):
        return (
            "False",
            "SecretMalformed",
            f"Secret {ref}: the keys hold characters a key cannot have",
        )
    outcome = await target.client.list_servers_probe()
    reason = READ_REASONS.get(outcome.kind, "Unreachable")
    if outcome.kind is Verdict.FOUND:
        return ("True", reason, f"a signed read at {status['endpoint']} succeeded")
    hint = {
        Verdict.UNAUTHORIZED: "wrong keys in the Secret, a wrong accountId, or a skewed clock",
        Verdict.FORBIDDEN: "the key lacks IAM permission for virtual servers",
    }.get(outcome.kind, "see SCP's answer")
    return (
        "False",
        reason,
        f"a signed read at {status['endpoint']} failed: {outcome.describe()} ({hint})",
    )


async def _admitted(
    runtime: Runtime, spec: AccountSpec, status: dict[str, Any]
) -> tuple[str, str, str]:
    reader = runtime.account_reader
    try:
        existing = await reader.namespaces(None)
        names = {n for n, labels in existing.items() if accounts.admits(spec, n, labels)}
    except KubeReadError as exc:
        return ("Unknown", "NamespacesUnreadable", f"cannot list namespaces: {exc}")
    status["admittedNamespaces"] = len(names)
    if not names:
        return (
            "False",
            "NoNamespaceAdmitted",
            "no existing namespace matches spec.namespaces or spec.namespaceSelector: no "
            "VirtualServer can use this account",
        )
    shown = ", ".join(sorted(names)[:10]) + (", ..." if len(names) > 10 else "")
    return ("True", "NamespacesAdmitted", f"{len(names)} namespace(s) admitted: {shown}")


async def ours(runtime: Runtime, body: dict[str, Any]) -> bool:
    """Whether this operator looks after the account: always when it serves every namespace;
    in namespaced mode when the account admits one of its namespaces — or admits no namespace
    at all (nobody else would say so). Another release, serving other namespaces with keys this
    one may not read, checks the others: two operators writing one account's status from
    different points of view would flap it.
    """
    watched = scope.watched()
    if not watched:
        return True
    try:
        spec = accounts.parse(body.get("spec") or {})
    except AccountInvalid:
        return True  # say so on the account: whoever uses it needs to know
    reader = runtime.account_reader
    try:
        existing = await reader.namespaces(None)
        admitted = {n for n, labels in existing.items() if accounts.admits(spec, n, labels)}
        if any(scope.serves(n, watched) for n in admitted):
            return True
        return not admitted
    except KubeReadError as exc:
        logger.warning(
            "Cannot tell whether an ScpAccount serves this operator's namespaces: %s", exc
        )
    return False


async def check_and_write(runtime: Runtime, body: dict[str, Any]) -> dict[str, Any] | None:
    """Check one account (if it is this operator's) and write its status; returns the Ready
    condition, or None when the account is another operator's business."""
    name = str((body.get("metadata") or {}).get("name"))
    if not await ours(runtime, body):
        return None
    status = await check(runtime, body)
    try:
        await runtime.account_reader.write_status(name, status)
    except KubeReadError as exc:
        logger.warning("ScpAccount %s: cannot write status: %s", name, exc)
    ready: dict[str, Any] = next(c for c in status["conditions"] if c["type"] == "Ready")
    if ready["status"] != "True":
        logger.warning(
            "ScpAccount %s is not ready: %s: %s", name, ready["reason"], ready["message"]
        )
    return ready


async def loop(runtime: Runtime) -> None:
    """Re-check every account, forever (cancelled at shutdown)."""
    interval = runtime.settings.operator.account_recheck_interval
    while True:
        try:
            for body in await runtime.account_reader.accounts():
                await check_and_write(runtime, body)
        except KubeReadError as exc:
            logger.warning("Cannot list ScpAccounts: %s", exc)
        except Exception:  # the loop must survive anything one account does
            logger.exception("ScpAccount check failed")
        await asyncio.sleep(interval)


def start(runtime: Runtime) -> asyncio.Task[None]:
    return asyncio.create_task(loop(runtime), name="scp-account-checks")


async def stop(task: asyncio.Task[None] | None) -> None:
    if task is None:
        return
    task.cancel()
    with contextlib.suppress(asyncio.CancelledError):
        await task
