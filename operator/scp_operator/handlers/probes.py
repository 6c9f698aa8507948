"""Health probes: what Kopf's liveness endpoint reports (``--liveness=http://0.0.0.0:8080/healthz``).

Kopf runs every ``@kopf.on.probe`` handler when the endpoint is asked (at most every 10 s; it
caches the answer in between) and serves the results as one JSON object keyed by handler id:

- ``scp``: the last answer SCP gave the operator's own account — when, and the HTTP status or
  ``error`` — from the client's record (:class:`scp_operator.scp.client.LastAnswer`). The probe
  makes no SCP call of its own: probes run every few seconds, and a signed read each time would
  cost SCP requests (and limiter slots) for nothing the operator's own traffic does not show.
- ``credentials``: whether the operator's own keys can be read now: ``loaded`` (with where from),
  ``missing`` or ``unreadable`` (with the provider's message, which never holds a key).

Why these probes never fail: Kopf answers the endpoint with an error when a probe raises, and the
chart points the pod's liveness probe there, so the kubelet would restart the pod. Restarting a
healthy operator because SCP is down or its keys are missing mends nothing and interrupts every
deletion in progress; these are facts to read (``kubectl exec``, a port-forward), not a verdict.
So every probe returns a state, including ``starting`` before the runtime exists and
``probe-failed`` should reading the state itself go wrong.

ScpAccounts' ``Ready`` state is not reported here: the operator keeps no copy of it in memory
(it is written to each account's status by :mod:`scp_operator.account_checks`), and reading it
would mean a Kubernetes LIST per probe, making liveness depend on the API server's latency;
``kubectl get scpaccounts`` shows it.
"""

from __future__ import annotations

import datetime
import time
from collections.abc import Callable
from typing import Any

import kopf

from scp_operator.credentials import CredentialsUnavailable
from scp_operator.runtime import Runtime

#: How :class:`scp_operator.credentials.CredentialsProvider` says that no source is configured
#: at all (as opposed to a configured source that cannot be read).
_NONE_CONFIGURED = ("no SCP credentials", "SCP_ACCESS_KEY is empty", "SCP_SECRET_KEY is empty")


def scp_state(runtime: Runtime | None, now: float | None = None) -> dict[str, Any]:
    """The last SCP answer of the operator's own account, without calling SCP."""
    if runtime is None:
        return {"state": "starting"}
    last = runtime.client.last_answer
    if last is None:
        return {"state": "no-request-yet"}
    now = time.time() if now is None else now
    return {
        "state": "error" if last.code == "error" else "answered",
        "code": last.code,
        "at": datetime.datetime.fromtimestamp(last.at, datetime.UTC).isoformat(timespec="seconds"),
        "ageSeconds": round(max(0.0, now - last.at), 1),
    }


def credentials_state(runtime: Runtime | None) -> dict[str, Any]:
    """Whether the operator's own keys can be read now; never the keys themselves."""
    if runtime is None:
        return {"state": "starting"}
    try:
        creds = runtime.client.credentials.get()
    except CredentialsUnavailable as exc:
        message = str(exc)
        state = "missing" if message.startswith(_NONE_CONFIGURED) else "unreadable"
        return {"state": state, "message": message}
    return {"state": "loaded", "source": creds.source}


def _never_raising(
    read: Callable[[Runtime | None], dict[str, Any]], memo: kopf.Memo
) -> dict[str, Any]:
    try:
        return read(memo.get("runtime"))
    except Exception as exc:  # deliberately total: a probe that raises restarts the pod
        return {"state": "probe-failed", "error": type(exc).__name__}


@kopf.on.probe(id="scp")
async def scp_probe(memo: kopf.Memo, **_: Any) -> dict[str, Any]:
    """The last answer SCP gave the operator's own account (no SCP call is made)."""
    return _never_raising(scp_state, memo)


@kopf.on.probe(id="credentials")
async def credentials_probe(memo: kopf.Memo, **_: Any) -> dict[str, Any]:
    """Whether the operator's own SCP keys can be read (loaded, missing or unreadable)."""
    return _never_raising(credentials_state, memo)
