"""The wait between two attempts of a held deletion: inside the delete handler, one write each.

Why not Kopf's own delay (``kopf.TemporaryError(delay=N)``, as before issue 10): Kopf writes the
handler's status patch, sleeps, and then writes a "touch" to the object so that the watch wakes
it up — and one more touch per 10 minutes of a longer delay. A blocked object (a locked server,
for hours) cost two Kubernetes writes per retry, or more at the 30-minute cap.

Here a hold writes its status with the time of the next attempt,
``status.deletion.nextAttemptTime``, and asks Kopf to run the handler again at once
(``TemporaryError(delay=0)``: Kopf writes that one patch and, having written, does not touch).
The new run waits until that time first (:func:`wait_for_next_attempt`). One write per retry.

What the wait must not lose:

- **Facts.** The body Kopf handed over is as old as the wait. After waiting, the object is read
  again from the API server; if it changed (another ``resourceVersion``) or is gone, this run ends
  without acting and Kopf runs the handler again with what the object says now.
- **The Orphan way out.** While a handler waits, Kopf cannot run the Orphan fast path for the same
  object; :class:`~scp_operator.orphan_watch.OrphanWatch` wakes the wait instead.
- **Restarts.** The time is in the object's status: a new process waits only the remainder.
"""

from __future__ import annotations

import datetime
from typing import Any

import kopf

from scp_operator import kube
from scp_operator.decision import Timing
from scp_operator.runtime import Runtime


def when(delay: float, now: datetime.datetime | None = None) -> str:
    """The next attempt's time, ``delay`` seconds from ``now``, as written in the status."""
    now = now or datetime.datetime.now(datetime.UTC)
    return (now + datetime.timedelta(seconds=delay)).isoformat(timespec="milliseconds")


def seconds_left(status: Any, now: datetime.datetime | None = None) -> float:
    """Seconds until ``status.deletion.nextAttemptTime`` (0 when absent, past or unreadable)."""
    text = ((status.get("deletion") or {}) if hasattr(status, "get") else {}).get("nextAttemptTime")
    if not isinstance(text, str):
        return 0.0
    try:
        at = datetime.datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError:
        return 0.0
    if at.tzinfo is None:
        at = at.replace(tzinfo=datetime.UTC)
    now = now or datetime.datetime.now(datetime.UTC)
    return max(0.0, (at - now).total_seconds())


def longest_wait(timing: Timing) -> float:
    """The longest delay any hold can ask for (the caps of both schedules, the recheck)."""
    return max(timing.fast.cap, timing.slow.cap, timing.hold_recheck, timing.confirm_poll)


async def wait_for_next_attempt(
    status: kopf.Status, meta: kopf.Meta, uid: str, runtime: Runtime
) -> None:
    """Wait until the next attempt is due; return only when acting now is right.

    Raises ``kopf.TemporaryError(delay=0)`` (never a release) when the object was switched to
    Orphan, changed or went during the wait: Kopf then runs the handler again with the object as
    it is now. Returns at once when no wait is due.
    """
    # Never longer than the longest delay the schedules give: a time written by an instance whose
    # clock ran ahead must not park the deletion for hours.
    timing = runtime.timing
    seconds = min(seconds_left(status), longest_wait(timing))
    if seconds <= 0:
        return
    turned_orphan = await runtime.orphans.wait(uid, seconds)
    namespace, name = str(meta.get("namespace")), str(meta.get("name"))
    try:
        now = await kube.read_virtualserver(runtime.kube, namespace, name)
    except kube.KubeReadError as exc:
        # Nothing is done on an old body: try again shortly (Kopf's own delay, this once).
        message = f"cannot read the object again before acting: {exc}"
        raise kopf.TemporaryError(message, delay=10) from None
    if now is None:
        raise kopf.TemporaryError("the object is gone: nothing to do", delay=0)
    version = (now.get("metadata") or {}).get("resourceVersion")
    if turned_orphan or version != meta.get("resourceVersion"):
        raise kopf.TemporaryError(
            "the object changed while its deletion waited: deciding again from what it says now",
            delay=0,
        )
