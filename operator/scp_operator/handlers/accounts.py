"""ScpAccount changes: check an account as soon as it is created or its spec changes.

Why a module of its own: this is the one Kopf handler on ScpAccounts. The checking itself
(a signed read with the account's keys, the namespaces it admits, the objects naming it, the
status written) is :mod:`scp_operator.account_checks`, which also re-checks every account on a
timer of its own (Kopf's timers and daemons would put a finalizer on every ScpAccount). Events are
posted here, not from that loop: ``kopf.event`` needs the event queue Kopf sets up only while it
processes a resource's event.
"""

from __future__ import annotations

from typing import Any

import kopf

from scp_operator import account_checks, accounts, events
from scp_operator.constants import GROUP, VERSION
from scp_operator.runtime import Runtime


def _changed(body: kopf.Body, **_: Any) -> bool:
    """Only a new generation (not our own status write) triggers an immediate check."""
    observed = (body.get("status") or {}).get("observedGeneration")
    return bool(observed != body.get("metadata", {}).get("generation"))


@kopf.on.event(GROUP, VERSION, accounts.GROUP_PLURAL, id="account-check", when=_changed)
async def on_account_change(type: str, body: kopf.Body, memo: kopf.Memo, **_: Any) -> None:
    """An account was created or its spec changed: check it now, not at the next round."""
    runtime: Runtime | None = memo.get("runtime")
    if runtime is None or type == "DELETED":
        return
    ready = await account_checks.check_and_write(runtime, dict(body))
    if ready is not None and ready["status"] != "True":
        events.post(
            body,
            memo,
            warning=True,
            reason=ready["reason"],
            message=ready["message"],
            repeat_interval=runtime.settings.operator.event_repeat_interval,
        )
