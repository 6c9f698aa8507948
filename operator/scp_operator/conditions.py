"""Kubernetes-style conditions, kept in a fixed order (Ready, then Deleting).

The order matters to people: the CRD's ``Reason`` printer column shows the last condition's
reason, which is Deleting's while an object terminates and Ready's otherwise.
"""

from __future__ import annotations

import datetime
from collections.abc import Iterable, Mapping
from typing import Any

ORDER = ("Ready", "Deleting")


def now_iso() -> str:
    """UTC now in the API server's format."""
    return (
        datetime.datetime.now(datetime.UTC)
        .replace(microsecond=0)
        .isoformat()
        .replace("+00:00", "Z")
    )


def set_condition(
    current: Iterable[Mapping[str, Any]] | None,
    *,
    type: str,
    status: str,
    reason: str,
    message: str,
    generation: int | None,
    now: str | None = None,
) -> list[dict[str, Any]]:
    """Return the conditions with one replaced; ``lastTransitionTime`` moves only on a change."""
    now = now or now_iso()
    result: dict[str, dict[str, Any]] = {}
    for cond in current or ():
        if isinstance(cond, Mapping) and isinstance(cond.get("type"), str):
            result[cond["type"]] = dict(cond)
    previous = result.get(type)
    transition = (
        previous.get("lastTransitionTime", now)
        if previous is not None and previous.get("status") == status
        else now
    )
    new: dict[str, Any] = {
        "type": type,
        "status": status,
        "reason": reason,
        "message": message,
        "lastTransitionTime": transition,
    }
    if generation is not None:
        new["observedGeneration"] = generation
    result[type] = new
    ranked = sorted(
        result.values(),
        key=lambda c: (ORDER.index(c["type"]) if c["type"] in ORDER else len(ORDER), c["type"]),
    )
    return ranked
