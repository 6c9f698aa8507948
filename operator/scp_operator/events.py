"""Events people see in ``kubectl describe``, without flooding.

Since Kopf 1.44 handler logs are not posted as events, so every event is posted here explicitly.
A blocked object retries for hours; the same warning is posted again only when its reason or
message changes, or once per ``repeat_interval``, so ``kubectl describe`` stays readable and
etcd is not filled with copies.
"""

from __future__ import annotations

import time
from collections.abc import MutableMapping
from typing import Any

import kopf

_KEY = "_scp_last_event"


def post(
    body: Any,
    memo: MutableMapping[str, Any],
    *,
    warning: bool,
    reason: str,
    message: str,
    repeat_interval: float,
    clock: Any = time.monotonic,
) -> bool:
    """Post an event unless the same one was posted for this object within the interval.

    ``memo`` is Kopf's per-object memo. Returns whether an event was posted.
    """
    key = (warning, reason, message)
    last = memo.get(_KEY)
    now = clock()
    if last is not None and last[0] == key and now - last[1] < repeat_interval:
        return False
    memo[_KEY] = (key, now)
    kopf.event(body, type="Warning" if warning else "Normal", reason=reason, message=message)
    return True
