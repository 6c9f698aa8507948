"""The ArgoCD health check (deploy/argocd/virtualserver-health.lua) on sample objects.

Run in Lua 5.1, the dialect of ArgoCD's gopher-lua, with ``lupa``. The deletion samples carry
the ``Deleting`` condition exactly as the handlers write it from the real decision function, so
a renamed reason in :mod:`scp_operator.decision` shows up here.
"""

from __future__ import annotations

import ast
import re
from collections.abc import Callable
from typing import Any

import pytest
from lupa import lua51  # type: ignore[import-untyped]

from scp_operator import constants
from scp_operator.decision import Action, CrdState, Situation, decide
from scp_operator.model import DeletionPolicy
from scp_operator.scp.outcomes import Outcome, Verdict
from tests.conftest import REPO

SCRIPT = REPO / "deploy" / "argocd" / "virtualserver-health.lua"
SID = "2a9be312-5d4b-4bc8-b2ae-35100fa9241f"

Health = Callable[[dict[str, Any]], tuple[str, str]]


def _to_lua(runtime: Any, value: Any) -> Any:
    if isinstance(value, dict):
        return runtime.table_from({k: _to_lua(runtime, v) for k, v in value.items()})
    if isinstance(value, list):
        return runtime.table_from([_to_lua(runtime, v) for v in value])
    return value


@pytest.fixture(scope="module")
def health() -> Health:
    """Evaluate the script the way ArgoCD does: ``obj`` global, a table ``{status, message}``."""
    source = SCRIPT.read_text()

    def evaluate(obj: dict[str, Any]) -> tuple[str, str]:
        runtime = lua51.LuaRuntime(unpack_returned_tuples=True)
        runtime.globals().obj = _to_lua(runtime, obj)
        result = runtime.execute(source)
        return str(result["status"]), str(result["message"])

    return evaluate


def condition(type_: str, status: str, reason: str, message: str = "") -> dict[str, Any]:
    return {
        "type": type_,
        "status": status,
        "reason": reason,
        "message": message,
        "lastTransitionTime": "2026-01-01T00:00:00Z",
        "observedGeneration": 1,
    }


def virtual_server(*conditions: dict[str, Any], deleting: bool = False) -> dict[str, Any]:
    metadata: dict[str, Any] = {"name": "web-1", "namespace": "apps", "generation": 1}
    if deleting:
        metadata["deletionTimestamp"] = "2026-01-01T00:00:00Z"
        metadata["finalizers"] = [constants.FINALIZER]
    obj: dict[str, Any] = {
        "apiVersion": constants.API_VERSION,
        "kind": constants.KIND,
        "metadata": metadata,
        "spec": {"serverId": SID, "deletionPolicy": "Delete"},
    }
    if conditions:
        obj["status"] = {"conditions": list(conditions)}
    return obj


READY = condition("Ready", "True", "ServerFound", f"server {SID} found in SCP (state ACTIVE)")


def deleting_condition(situation: Situation) -> dict[str, Any]:
    """The Deleting condition as the delete handler writes it for this situation."""
    decision = decide(situation)
    status = "True" if decision.action is Action.HOLD else "False"
    return condition("Deleting", status, decision.reason, decision.message)


def test_a_found_server_is_healthy(health: Health) -> None:
    assert health(virtual_server(READY)) == ("Healthy", READY["reason"] + ": " + READY["message"])


def test_an_object_not_yet_observed_is_progressing(health: Health) -> None:
    status, message = health(virtual_server())
    assert status == "Progressing"
    assert "scp-operator" in message


@pytest.mark.parametrize(
    ("status", "reason"),
    [
        ("False", "ServerNotFound"),
        ("False", "ServerError"),
        ("Unknown", "Unauthorized"),
        ("Unknown", "Forbidden"),
        ("Unknown", "CredentialsUnavailable"),
        ("Unknown", "Rejected"),
    ],
)
def test_a_missing_broken_or_unreadable_server_is_degraded(
    health: Health, status: str, reason: str
) -> None:
    got, message = health(virtual_server(condition("Ready", status, reason, "why")))
    assert (got, message) == ("Degraded", f"{reason}: why")


@pytest.mark.parametrize("reason", ["Throttled", "ScpUnavailable"])
def test_a_transient_read_failure_is_progressing(health: Health, reason: str) -> None:
    assert health(virtual_server(condition("Ready", "Unknown", reason)))[0] == "Progressing"


def test_deletion_before_the_operator_acts_is_progressing(health: Health) -> None:
    status, message = health(virtual_server(READY, deleting=True))
    assert status == "Progressing"
    assert "waiting for scp-operator" in message


BLOCKED = {
    "conflict": Situation(SID, outcome=Outcome(Verdict.CONFLICT, 409, "Server is locked")),
    "unauthorized": Situation(SID, outcome=Outcome(Verdict.UNAUTHORIZED, 401)),
    "forbidden": Situation(SID, outcome=Outcome(Verdict.FORBIDDEN, 403)),
    "no-credentials": Situation(SID, outcome=Outcome(Verdict.NO_CREDENTIALS, None, "no keys")),
    "unknown-answer": Situation(SID, outcome=Outcome(Verdict.REJECTED, 418)),
    "protected": Situation(SID, protected=True),
    "shared": Situation(SID, sharers=("apps/web-2",)),
    "deletion-failed": Situation(
        SID,
        confirm=True,
        accepted_before=True,
        outcome=Outcome(Verdict.FOUND, 200, body={"state": "ERROR"}),
    ),
}


@pytest.mark.parametrize("situation", list(BLOCKED))
def test_a_deletion_blocked_until_someone_acts_is_degraded(health: Health, situation: str) -> None:
    deleting = deleting_condition(BLOCKED[situation])
    status, message = health(virtual_server(READY, deleting, deleting=True))
    assert status == "Degraded"
    assert message == f"Deletion blocked: {deleting['reason']}: {deleting['message']}"


UNDER_WAY = {
    "throttled": Situation(SID, outcome=Outcome(Verdict.THROTTLED, 429)),
    "scp-down": Situation(SID, outcome=Outcome(Verdict.UNAVAILABLE, 503)),
    "crd-unreadable": Situation(SID, crd=CrdState.UNKNOWN),
    "awaiting-confirmation": Situation(SID, confirm=True, outcome=Outcome(Verdict.ACCEPTED, 202)),
    "accepted": Situation(SID, outcome=Outcome(Verdict.ACCEPTED, 202)),
    "gone": Situation(SID, outcome=Outcome(Verdict.GONE, 404)),
    "orphaned": Situation(SID, policy=DeletionPolicy.ORPHAN),
    "crd-cascade": Situation(SID, crd=CrdState.TERMINATING),
}


@pytest.mark.parametrize("situation", list(UNDER_WAY))
def test_a_deletion_that_proceeds_on_its_own_is_progressing(health: Health, situation: str) -> None:
    deleting = deleting_condition(UNDER_WAY[situation])
    status, message = health(virtual_server(READY, deleting, deleting=True))
    assert status == "Progressing"
    assert message == f"Deleting: {deleting['reason']}: {deleting['message']}"


def test_every_reason_the_script_names_is_one_the_operator_writes() -> None:
    """A reason renamed in the operator must not silently turn a Degraded object Progressing."""
    literals: set[str] = set()
    for module in ("decision.py", "handlers/virtualservers.py", "directory.py"):
        tree = ast.parse((REPO / "operator" / "scp_operator" / module).read_text())
        literals |= {
            node.value
            for node in ast.walk(tree)
            if isinstance(node, ast.Constant) and isinstance(node.value, str)
        }
    script = SCRIPT.read_text()
    named = set(re.findall(r"^\s+(\w+) = true,$", script, re.MULTILINE))
    assert named, "no reason tables found in the script"
    assert named <= literals, named - literals


def test_install_instructions_use_the_right_key_and_file() -> None:
    readme = (REPO / "deploy" / "argocd" / "README.md").read_text()
    key = f"resource.customizations.health.{constants.GROUP}_{constants.KIND}"
    assert key in readme
    assert SCRIPT.name in readme
