"""The VirtualServer CRD's state, as :mod:`~scp_operator.kube` reads it and the decision uses it.

A leaf of its own so that the Kubernetes reads and the pure decision table share the type without
either importing the other (the layers contract in pyproject.toml keeps them independent).
:mod:`scp_operator.decision` re-exports it, so ``from scp_operator.decision import CrdState``
keeps working.
"""

from __future__ import annotations

import enum


class CrdState(enum.StrEnum):
    """The VirtualServer CRD as seen right before deciding."""

    PRESENT = "Present"
    TERMINATING = "Terminating"  # deletionTimestamp set: the cascade is deleting every object
    GONE = "Gone"
    UNKNOWN = "Unknown"  # could not be read: never a reason to delete or to release
