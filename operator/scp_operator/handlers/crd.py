"""The CRD cascade: when the VirtualServer CRD itself is deleted, let every object go.

Why a module of its own: this handler watches the CustomResourceDefinition, not VirtualServers.
Kopf stops serving a resource whose CRD terminates (and never starts serving it when the
operator starts during the cascade), so the delete handler never sees these deletions; the work
is done by :mod:`scp_operator.cascade`, which lists the objects itself and keeps going until none
is left.
"""

from __future__ import annotations

from typing import Any

import kopf

from scp_operator import cascade, scope
from scp_operator.constants import CRD_NAME
from scp_operator.runtime import Runtime


def _our_crd_terminating(name: str | None, meta: kopf.Meta, **_: Any) -> bool:
    return name == CRD_NAME and bool(meta.get("deletionTimestamp"))


@kopf.on.event(
    "apiextensions.k8s.io",
    "v1",
    "customresourcedefinitions",
    id="crd-cascade",
    when=_our_crd_terminating,
)
async def release_on_crd_deletion(
    body: kopf.Body, memo: kopf.Memo, logger: kopf.Logger, **_: Any
) -> None:
    """The CRD is being deleted: let every VirtualServer go, deleting no server, and say so."""
    runtime: Runtime | None = memo.get("runtime")
    if runtime is None:
        return
    await cascade.release_all(runtime, crd=body, namespaces=scope.watched(), logger=logger)
