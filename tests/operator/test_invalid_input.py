"""Invalid input is handled evenly (issue 9, defect 9): a condition, a warning, nothing lost.

kmock accepts objects the real API server's schema would refuse — exactly what an object stored
under an older or looser CRD looks like to the operator.
"""

from __future__ import annotations

from typing import Any

from scp_emulator.server import EmulatorServer
from scp_operator import constants
from scp_testenv import eventually
from tests.operator.conftest import CRDS, Operator
from tests.operator.kube import condition, create, delete, obj, patch


def deletes(emu: EmulatorServer) -> list[Any]:
    return [r for r in emu.state.requests if r.method == "DELETE"]


async def test_an_unreadable_spec_gets_a_condition_naming_the_field_and_never_a_raw_error(
    k8s: Any, emulator: EmulatorServer, operator: Operator, posted: list[dict[str, Any]]
) -> None:
    """observe used to raise a raw ValidationError every minute; the delete handler posted an
    event without a condition and always blamed serverId."""
    sid = emulator.state.add_server(name="web").id
    await create(k8s, "bad-region", sid, region="Not A Region")
    ready = await eventually(lambda: condition(k8s, "bad-region", "Ready"), what="Ready")
    assert (ready["status"], ready["reason"]) == ("False", "InvalidSpec")
    assert "spec.region" in ready["message"]
    await delete(k8s, "bad-region")
    held = await eventually(lambda: condition(k8s, "bad-region", "Deleting"), what="Deleting")
    assert held["reason"] == "InvalidSpec"
    assert "spec.region" in held["message"]
    assert "serverId" not in held["message"]
    warnings = [e for e in posted if e["name"] == "bad-region" and e["type"] == "Warning"]
    assert {e["reason"] for e in warnings} == {"InvalidSpec"}
    assert deletes(emulator) == []
    await patch(k8s, "bad-region", {"spec": {"deletionPolicy": "Orphan"}})
    await eventually(lambda: obj(k8s, "bad-region") is None, what="released by Orphan")
    assert deletes(emulator) == []


async def test_the_crd_cascade_releases_every_object_even_with_a_legacy_policy_value(
    k8s: Any, emulator: EmulatorServer, operator: Operator, posted: list[dict[str, Any]]
) -> None:
    """One object with a policy value the model does not know aborted the cascade for all."""
    sid = emulator.state.add_server(name="cascade").id
    await create(k8s, "legacy", sid, deletionPolicy="Retain")
    await create(k8s, "plain", sid)
    await eventually(
        lambda: all(
            constants.FINALIZER in ((obj(k8s, n) or {}).get("metadata", {}).get("finalizers") or [])
            for n in ("legacy", "plain")
        ),
        what="finalizers added",
    )
    k8s.objects[CRDS, None, constants.CRD_NAME].patch(
        {"metadata": {"deletionTimestamp": "2026-12-03T00:00:00Z"}}
    )
    await delete(k8s, "legacy")
    await delete(k8s, "plain")
    await eventually(lambda: obj(k8s, "legacy") is None, what="legacy released")
    await eventually(lambda: obj(k8s, "plain") is None, what="plain released")
    assert deletes(emulator) == []
    assert {e["name"] for e in posted if e["reason"] == "CrdDeleted"} >= {"legacy", "plain"}
