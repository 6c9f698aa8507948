"""Kubernetes-style conditions, kept in a fixed order (Ready, then Deleting).

The order matters to people: the CRD's ``Reason`` printer column shows the last condition's
reason, which is Deleting's while an object terminates and Ready's otherwise.

Conditions are :class:`~scp_operator.model.Condition` models: :func:`replace` gives them typed
(for a :class:`~scp_operator.model.VirtualServerStatus`), :func:`set_condition` serialised for a
status patch (an ScpAccount's status uses the same shape).
"""

from __future__ import annotations

import datetime
from collections.abc import Iterable
from typing import Any

from pydantic import ValidationError

from scp_operator.model import Condition, dump

ORDER = ("Ready", "Deleting")


def now_iso() -> str:
    """UTC now in the API server's format."""
    return (
        datetime.datetime.now(datetime.UTC)
        .replace(microsecond=0)
        .isoformat()
        .replace("+00:00", "Z")
    )


def parse(current: Iterable[Any] | None) -> list[Condition]:
    """Stored conditions as models (dicts from the object, or models already).

    One that cannot be read is left out; the CRD's schema requires every field the model does,
    so the API server never stores such a condition.
    """
    result: list[Condition] = []
    for cond in current or ():
        if isinstance(cond, Condition):
            result.append(cond)
            continue
        try:
            result.append(Condition.model_validate(cond))
        except ValidationError:
            continue
    return result


def replace(
    current: Iterable[Any] | None,
    *,
    type: str,
    status: str,
    reason: str,
    message: str,
    generation: int | None,
    now: str | None = None,
) -> list[Condition]:
    """Return the conditions with one replaced; ``lastTransitionTime`` moves only on a change."""
    now = now or now_iso()
    by_type = {cond.type: cond for cond in parse(current)}
    previous = by_type.get(type)
    transition = (
        previous.last_transition_time if previous is not None and previous.status == status else now
    )
    by_type[type] = Condition(
        type=type,
        status=status,
        reason=reason,
        message=message,
        last_transition_time=transition,
        observed_generation=generation,
    )
    return sorted(
        by_type.values(),
        key=lambda c: (ORDER.index(c.type) if c.type in ORDER else len(ORDER), c.type),
    )


def set_condition(
    current: Iterable[Any] | None,
    *,
    type: str,
    status: str,
    reason: str,
    message: str,
    generation: int | None,
    now: str | None = None,
) -> list[dict[str, Any]]:
    """:func:`replace`, serialised for a status patch (``observedGeneration`` only when known)."""
    replaced = replace(
        current,
        type=type,
        status=status,
        reason=reason,
        message=message,
        generation=generation,
        now=now,
    )
    return [dump(cond) for cond in replaced]
