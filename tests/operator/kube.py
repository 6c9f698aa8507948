"""Small helpers to drive kmock like a user drives a cluster."""

from __future__ import annotations

from typing import Any

import httpx

from scp_operator import constants
from scp_testenv import eventually
from tests.operator.conftest import NS, VS, vs_body

BASE = f"/apis/{constants.API_VERSION}/namespaces/{NS}/{constants.PLURAL}"


def obj(k8s: Any, name: str) -> dict[str, Any] | None:
    """The object as stored now, or None once it is gone."""
    try:
        found = k8s.objects[VS, NS, name]
    except KeyError:
        return None
    return None if found.deleted else found.raw  # type: ignore[no-any-return]


def condition(k8s: Any, name: str, type_: str) -> dict[str, Any] | None:
    for cond in ((obj(k8s, name) or {}).get("status") or {}).get("conditions") or []:
        if cond.get("type") == type_:
            return cond  # type: ignore[no-any-return]
    return None


async def create(k8s: Any, name: str, server_id: str, **spec: Any) -> None:
    async with httpx.AsyncClient(base_url=str(k8s.url)) as http:
        r = await http.post(BASE, json=vs_body(name, server_id, **spec))
        assert r.status_code in (200, 201), r.text
    await eventually(
        lambda: (
            constants.FINALIZER
            in ((obj(k8s, name) or {}).get("metadata") or {}).get("finalizers", [])
        ),
        what=f"finalizer on {name}",
    )


async def delete(k8s: Any, name: str) -> None:
    async with httpx.AsyncClient(base_url=str(k8s.url)) as http:
        r = await http.delete(f"{BASE}/{name}")
        assert r.status_code in (200, 202), r.text


async def patch(k8s: Any, name: str, body: dict[str, Any]) -> None:
    async with httpx.AsyncClient(base_url=str(k8s.url)) as http:
        r = await http.patch(
            f"{BASE}/{name}", json=body, headers={"Content-Type": "application/merge-patch+json"}
        )
        assert r.status_code == 200, r.text
