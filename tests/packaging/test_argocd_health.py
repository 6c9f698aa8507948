"""The ArgoCD health check (deploy/argocd/resource_customizations/.../VirtualServer/health.lua).

Every case runs in ArgoCD's own Lua runtime: ``tools/luatest`` builds ``argocd-lua-health``,
which evaluates the script as ArgoCD does (gopher-lua at ArgoCD's version, the same libraries,
``obj`` converted by ArgoCD's decode function, a fresh state per case) and compares the result
with the expectations in ArgoCD's ``health_test.yaml`` format.

Two sets of cases run:

* the committed ones (``health_test.yaml`` and ``testdata/``, the upstream layout), whose
  deletion samples are checked to still say what the operator writes today;
* cases generated here from the operator's own code: every ``Deleting`` reason the decision table
  can hold an object with (from :func:`scp_operator.decision.decide`, fed with the real refusal
  and doubt reasons) and every ``Ready`` reason the observe handler can write, each current and
  stale, so a renamed or new reason shows up as a failing case, not as a silently wrong health.
"""

from __future__ import annotations

import ast
import json
import re
import shutil
import subprocess
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import yaml

from scp_operator import constants
from scp_operator.decision import Action, CrdState, Doubt, Situation, decide
from scp_operator.evidence import Where, gone_doubt
from scp_operator.scp.outcomes import Outcome, Verdict
from tests.conftest import REPO

CHECK_DIR = (
    REPO / "deploy" / "argocd" / "resource_customizations" / constants.GROUP / constants.KIND
)
SCRIPT = CHECK_DIR / "health.lua"
BUILD = REPO / "tools" / "luatest" / "build.sh"
OPERATOR = REPO / "operator" / "scp_operator"
SID = "2a9be312-5d4b-4bc8-b2ae-35100fa9241f"
OWN_HINT = "or set spec.deletionPolicy: Orphan to let the object go without touching SCP"

Runner = Callable[..., subprocess.CompletedProcess[str]]


# ---- the runner -----------------------------------------------------------------------------


@pytest.fixture(scope="session")
def runner_binary() -> Path:
    """``argocd-lua-health``, built by ``tools/luatest/build.sh`` when it is not built yet.

    Session-scoped, so it runs before the autouse fixture that points HOME at a temporary
    directory: the build cache and Go's module cache are the developer's own.
    """
    found = _build_script("--check")
    if found.returncode == 3:
        found = _build_script()
    assert found.returncode == 0, f"{BUILD} failed ({found.returncode}); its stderr says why"
    binary = Path(found.stdout.splitlines()[-1]) / "argocd-lua-health"
    assert binary.is_file(), binary
    return binary


def _build_script(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        ["bash", str(BUILD), *args],
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        text=True,
        check=False,
    )


@pytest.fixture
def run_check(runner_binary: Path) -> Runner:
    """Run the runner on a directory; returns the finished process (stdout: the JSON report)."""

    def run(directory: Path, *flags: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [str(runner_binary), *flags, str(directory)],
            stdin=subprocess.DEVNULL,
            capture_output=True,
            text=True,
            check=False,
            timeout=120,
        )

    return run


def passes(result: subprocess.CompletedProcess[str], cases: int) -> None:
    """Assert that the runner ran ``cases`` cases and all passed (else show what failed)."""
    assert result.returncode == 0, result.stderr
    report = json.loads(result.stdout)
    assert (report["passed"], report["failed"]) == (cases, 0), result.stderr
    assert report["gopherLua"] == _pinned_gopher_lua()


def _pinned_gopher_lua() -> str:
    text = (REPO / "tools" / "luatest" / "go.mod").read_text()
    match = re.search(r"^\s*github\.com/yuin/gopher-lua (v\S+)$", text, re.MULTILINE)
    assert match, "gopher-lua is not pinned in tools/luatest/go.mod"
    return match.group(1)


def write_cases(directory: Path, cases: dict[str, tuple[dict[str, Any], str, str]]) -> Path:
    """A check directory in ArgoCD's layout: health.lua, health_test.yaml and testdata/."""
    (directory / "testdata").mkdir(parents=True)
    shutil.copy(SCRIPT, directory / "health.lua")
    tests = []
    for name, (obj, status, message) in cases.items():
        path = f"testdata/{name}.yaml"
        (directory / path).write_text(yaml.safe_dump(obj, sort_keys=False))
        tests.append({"healthStatus": {"status": status, "message": message}, "inputPath": path})
    (directory / "health_test.yaml").write_text(yaml.safe_dump({"tests": tests}, sort_keys=False))
    return directory


# ---- objects as the operator leaves them ----------------------------------------------------


def condition(
    type_: str, status: str, reason: str, message: str, generation: int
) -> dict[str, Any]:
    """A condition as :mod:`scp_operator.conditions` serialises it."""
    return {
        "type": type_,
        "status": status,
        "reason": reason,
        "message": message,
        "lastTransitionTime": "2026-01-01T00:00:00Z",
        "observedGeneration": generation,
    }


def virtual_server(
    generation: int, *conditions: dict[str, Any], deleting: bool = False
) -> dict[str, Any]:
    metadata: dict[str, Any] = {
        "name": "web-1",
        "namespace": "apps",
        "uid": "0b6c5a6e-3d0c-4e57-9d8e-6f4f0c1f2a01",
        "resourceVersion": "4711",
        "generation": generation,
        "creationTimestamp": "2026-01-01T00:00:00Z",
    }
    if deleting:
        metadata["deletionTimestamp"] = "2026-01-02T00:00:00Z"
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


READY = condition("Ready", "True", "ServerFound", f"server {SID} found in SCP (state ACTIVE)", 1)


def terminating(situation: Situation, *, stale: bool = False) -> dict[str, Any]:
    """A terminating object held for ``situation``, as the delete handler leaves it.

    Deletion bumps the generation (1 → 2), so Ready still describes generation 1 while the
    Deleting condition carries generation 2 — or 1, for a stale one.
    """
    decision = decide(situation)
    assert decision.action is Action.HOLD, decision  # only a hold is written to the status
    deleting = condition("Deleting", "True", decision.reason, decision.message, 1 if stale else 2)
    return virtual_server(2, READY, deleting, deleting=True)


def _literal_args(path: Path, function: str, index: int) -> set[str]:
    """String literals passed as argument ``index`` to calls of ``function`` in ``path``."""
    found: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if not isinstance(node, ast.Call) or len(node.args) <= index:
            continue
        callee = node.func
        name = callee.attr if isinstance(callee, ast.Attribute) else getattr(callee, "id", "")
        arg = node.args[index]
        if name == function and isinstance(arg, ast.Constant) and isinstance(arg.value, str):
            found.add(arg.value)
    return found


def _refusal_reasons() -> set[str]:
    """The reasons :mod:`scp_operator.directory` refuses an object's account with."""
    return _literal_args(OPERATOR / "directory.py", "Refusal", 0)


def _account_refusal(reason: str) -> Doubt:
    return Doubt(reason, f"ScpAccount team-a cannot be used ({reason}); {OWN_HINT}")


def _kebab(reason: str) -> str:
    return re.sub(r"(?<!^)([A-Z])", r"-\1", reason).lower()


def _answered(kind: Verdict, status: int | None, **kw: Any) -> Situation:
    return Situation(SID, outcome=Outcome(kind, status, **kw))


OLD = Where("https://virtualserver.kr-west1.e.samsungsdscloud.com", "acc-1")

# Every way the decision table holds an object, named as in testdata/deleting-<name>.yaml.
HOLDS: dict[str, Situation] = {
    "invalid-spec": Situation("(none)", spec_error="spec.serverId: Field required"),
    "crd-unreadable": Situation(SID, crd=CrdState.UNKNOWN),
    "protected": Situation(SID, protected=True),
    **{
        _kebab(reason): Situation(SID, account_hold=_account_refusal(reason))
        for reason in sorted(_refusal_reasons())
    },
    "invalid-region": Situation(
        SID, region_error='region "kr-mars1" has no endpoint in environment "public"'
    ),
    "share-check-failed": Situation(SID, sharers_error="403 Forbidden"),
    "shared": Situation(SID, sharers=("apps/web-2",)),
    "dry-run": Situation(SID, dry_run=True),
    "budget": Situation(SID, budget_wait=120.0),
    "awaiting-confirmation": Situation(SID, confirm=True, outcome=Outcome(Verdict.ACCEPTED, 202)),
    "still-deleting": Situation(
        SID, confirm=True, accepted_before=True, outcome=Outcome(Verdict.FOUND, 200, body={})
    ),
    "not-completed": Situation(
        SID,
        confirm=True,
        accepted_before=True,
        outcome=Outcome(Verdict.FOUND, 200, body={"state": "ACTIVE"}),
    ),
    "deletion-failed": Situation(
        SID,
        confirm=True,
        accepted_before=True,
        outcome=Outcome(Verdict.FOUND, 200, body={"state": "ERROR"}),
    ),
    "endpoint-changed": Situation(
        SID,
        outcome=Outcome(Verdict.GONE, 404),
        gone_doubt=gone_doubt(OLD, Where("https://virtualserver.kr-east1.e.samsungsdscloud.com")),
    ),
    "account-changed": Situation(
        SID,
        outcome=Outcome(Verdict.GONE, 404),
        gone_doubt=gone_doubt(OLD, Where(OLD.endpoint, "acc-2")),
    ),
    "account-unproven": Situation(
        SID, outcome=Outcome(Verdict.GONE, 404), gone_doubt=gone_doubt(OLD, Where(OLD.endpoint))
    ),
    "conflict": _answered(Verdict.CONFLICT, 409, detail="Cannot terminate"),
    "conflict-attached": Situation(
        SID, outcome=Outcome(Verdict.CONFLICT, 409, "Cannot terminate"), server_locked=False
    ),
    "server-locked": Situation(
        SID, outcome=Outcome(Verdict.CONFLICT, 409, "Cannot terminate"), server_locked=True
    ),
    "unauthorized": _answered(Verdict.UNAUTHORIZED, 401),
    "forbidden": _answered(Verdict.FORBIDDEN, 403),
    "throttled": _answered(Verdict.THROTTLED, 429, retry_after=30.0),
    "scp-unavailable": _answered(Verdict.UNAVAILABLE, 503),
    "no-credentials": _answered(Verdict.NO_CREDENTIALS, None, detail="SCP_ACCESS_KEY is not set"),
    "unknown-answer": _answered(Verdict.REJECTED, 418),
}

# The intended health of a terminating object held with each reason: Degraded when a person
# must act, Progressing when the operator gets through on its own (retries, windows, polls).
HOLD_HEALTH: dict[str, str] = {
    "InvalidSpec": "Degraded",
    "CrdCheckFailed": "Progressing",
    "DeletionProtected": "Degraded",
    "AccountCheckFailed": "Progressing",
    "AccountNotFound": "Degraded",
    "AccountInvalid": "Degraded",
    "AccountNotAdmitted": "Degraded",
    "AccountCredentialsUnavailable": "Degraded",
    "InvalidRegion": "Degraded",
    "ShareCheckFailed": "Progressing",
    "ServerShared": "Degraded",
    "DryRun": "Degraded",
    "DeletionBudgetExhausted": "Progressing",
    "AwaitingConfirmation": "Progressing",
    "DeletionNotCompleted": "Progressing",
    "DeletionFailed": "Degraded",
    "EndpointChanged": "Degraded",
    "AccountChanged": "Degraded",
    "AccountUnproven": "Degraded",
    "Conflict": "Degraded",
    "ServerLocked": "Degraded",
    "Unauthorized": "Degraded",
    "Forbidden": "Degraded",
    "Throttled": "Progressing",
    "ScpUnavailable": "Progressing",
    "CredentialsUnavailable": "Degraded",
    "Rejected": "Degraded",
}


def _observe_ready(kind: Verdict, status: int | None, **kw: Any) -> dict[str, Any]:
    """Ready as the observe handler writes it when SCP's answer to its GET is not 200/404."""
    outcome = Outcome(kind, status, **kw)
    decision = decide(Situation(SID, outcome=outcome))
    hinted = kind in (Verdict.UNAUTHORIZED, Verdict.FORBIDDEN, Verdict.NO_CREDENTIALS)
    message = f"cannot read server {SID}: {decision.message if hinted else outcome.describe()}"
    return condition("Ready", "Unknown", decision.reason, message, 1)


# Every Ready condition the observe handler writes (handlers/observation.py), by reason.
READIES: dict[str, dict[str, Any]] = {
    "ServerFound": READY,
    "ServerLocked": condition(
        "Ready",
        "True",
        "ServerLocked",
        f"server {SID} found in SCP (state ACTIVE); it is locked, so deleting this object will "
        "wait until it is unlocked in SCP",
        1,
    ),
    "ServerError": condition("Ready", "False", "ServerError", f"server {SID} is in state ERROR", 1),
    "ServerNotFound": condition(
        "Ready",
        "False",
        "ServerNotFound",
        f"server {SID} does not exist in SCP at https://virtualserver.kr-west1.e."
        "samsungsdscloud.com: check spec.serverId and spec.region (deleting this object would "
        "delete nothing)",
        1,
    ),
    "InvalidSpec": condition(
        "Ready", "False", "InvalidSpec", "the spec cannot be read: spec.serverId: Field required", 1
    ),
    "InvalidRegion": condition(
        "Ready",
        "False",
        "InvalidRegion",
        'region "kr-mars1" has no endpoint in environment "public"; correct spec.region',
        1,
    ),
    **{
        reason: condition("Ready", "False", reason, _account_refusal(reason).message, 1)
        for reason in sorted(_refusal_reasons())
    },
    **{
        ready["reason"]: ready
        for ready in (
            _observe_ready(Verdict.CONFLICT, 409),
            _observe_ready(Verdict.UNAUTHORIZED, 401),
            _observe_ready(Verdict.FORBIDDEN, 403),
            _observe_ready(Verdict.THROTTLED, 429),
            _observe_ready(Verdict.UNAVAILABLE, 503),
            _observe_ready(Verdict.NO_CREDENTIALS, None, detail="SCP_ACCESS_KEY is not set"),
            _observe_ready(Verdict.REJECTED, 418),
            _observe_ready(Verdict.ACCEPTED, 202),
        )
    },
}

READY_HEALTH: dict[str, str] = {
    "ServerFound": "Healthy",
    "ServerLocked": "Healthy",  # the server is there; the message warns a deletion would wait
    "ServerError": "Degraded",
    "ServerNotFound": "Degraded",
    "InvalidSpec": "Degraded",
    "InvalidRegion": "Degraded",
    "AccountCheckFailed": "Progressing",
    "AccountNotFound": "Degraded",
    "AccountInvalid": "Degraded",
    "AccountNotAdmitted": "Degraded",
    "AccountCredentialsUnavailable": "Degraded",
    "Conflict": "Progressing",  # a 409 to a GET: retried; nothing to fix on the object
    "Unauthorized": "Degraded",
    "Forbidden": "Degraded",
    "Throttled": "Progressing",
    "ScpUnavailable": "Progressing",
    "CredentialsUnavailable": "Degraded",
    "Rejected": "Degraded",
    "DeleteAccepted": "Progressing",  # a 202 to a GET: not an answer SCP gives; retried
}


def _describe(cond: dict[str, Any]) -> str:
    return f"{cond['reason']}: {cond['message']}"


def _waiting(generation: int) -> str:
    return f"waiting for the operator to observe generation {generation}"


# ---- the committed cases ----------------------------------------------------------------------


def _committed_tests() -> list[dict[str, Any]]:
    loaded = yaml.safe_load((CHECK_DIR / "health_test.yaml").read_text())
    tests: list[dict[str, Any]] = loaded["tests"]
    return tests


@pytest.mark.parametrize("flags", [(), ("-open-libs",)], ids=["argocd-cm", "open-libs"])
def test_the_committed_cases_pass_in_argocds_lua_runtime(
    run_check: Runner, flags: tuple[str, ...]
) -> None:
    """health_test.yaml passes as installed through argocd-cm (no standard libraries) and with
    them opened (as ArgoCD runs built-in checks and its own resource_customizations test)."""
    passes(run_check(CHECK_DIR, *flags), len(_committed_tests()))


def test_the_committed_cases_cover_every_health_and_a_stale_status() -> None:
    statuses = {t["healthStatus"]["status"] for t in _committed_tests()}
    assert statuses == {"Healthy", "Progressing", "Degraded"}
    messages = [t["healthStatus"]["message"] for t in _committed_tests()]
    assert any(m.startswith("waiting for the operator to observe generation") for m in messages)
    paths = {t["inputPath"] for t in _committed_tests()}
    on_disk = {f"testdata/{p.name}" for p in (CHECK_DIR / "testdata").glob("*.yaml")}
    assert paths == on_disk, "every testdata file has a case and every case a file"


@pytest.mark.parametrize("name", list(HOLDS))
def test_the_committed_deletion_samples_say_what_the_operator_writes_today(name: str) -> None:
    """testdata/deleting-<name>.yaml holds the Deleting condition decide() produces now."""
    sample = yaml.safe_load((CHECK_DIR / "testdata" / f"deleting-{name}.yaml").read_text())
    written = {c["type"]: c for c in sample["status"]["conditions"]}["Deleting"]
    decision = decide(HOLDS[name])
    assert (written["reason"], written["message"]) == (decision.reason, decision.message)
    assert written["observedGeneration"] == sample["metadata"]["generation"]


# ---- cases generated from the operator's code -------------------------------------------------


def test_every_hold_reason_of_the_decision_table_has_its_intended_health(
    run_check: Runner, tmp_path: Path
) -> None:
    """Each hold, current: Degraded (blocked) or Progressing (under way), with its reason and
    message; stale (Deleting from an older generation): Progressing, waiting for the operator."""
    cases: dict[str, tuple[dict[str, Any], str, str]] = {}
    for name, situation in HOLDS.items():
        decision = decide(situation)
        health = HOLD_HEALTH[decision.reason]
        words = "Deletion blocked" if health == "Degraded" else "Deleting"
        cases[name] = (
            terminating(situation),
            health,
            f"{words}: {decision.reason}: {decision.message}",
        )
        cases[f"{name}-stale"] = (terminating(situation, stale=True), "Progressing", _waiting(2))
    passes(run_check(write_cases(tmp_path / "holds", cases)), len(cases))


def test_every_ready_reason_the_observe_handler_writes_has_its_intended_health(
    run_check: Runner, tmp_path: Path
) -> None:
    """Each Ready, current: its intended health with reason and message; stale (the object's
    generation moved on since): Progressing, waiting for the operator."""
    cases: dict[str, tuple[dict[str, Any], str, str]] = {}
    for reason, ready in READIES.items():
        cases[reason] = (virtual_server(1, ready), READY_HEALTH[reason], _describe(ready))
        cases[f"{reason}-stale"] = (virtual_server(2, ready), "Progressing", _waiting(2))
    passes(run_check(write_cases(tmp_path / "readies", cases)), len(cases))


def _hold_reasons_in_code() -> set[str]:
    """Every reason the delete handler can hold an object with, read from the code."""
    decision_py = OPERATOR / "decision.py"
    holds = _literal_args(decision_py, "_hold", 1)
    for node in ast.walk(ast.parse(decision_py.read_text())):
        if (
            isinstance(node, ast.Call)
            and getattr(node.func, "id", "") == "Decision"
            and len(node.args) >= 2
            and isinstance(node.args[0], ast.Attribute)
            and node.args[0].attr == "HOLD"
            and isinstance(node.args[1], ast.Constant)
        ):
            holds.add(str(node.args[1].value))
    doubts = _literal_args(OPERATOR / "evidence.py", "Doubt", 0)
    return holds | doubts | _refusal_reasons()


def test_the_samples_cover_every_hold_reason_in_the_code() -> None:
    """A new hold reason in the decision table (or a new refusal or doubt) must get a sample
    and an intended health here before it can ship."""
    in_code = _hold_reasons_in_code()
    assert len(in_code) > 15, "the AST scan found too few reasons; has the code moved?"
    sampled = {decide(situation).reason for situation in HOLDS.values()}
    assert sampled == in_code, (sampled - in_code, in_code - sampled)
    assert set(HOLD_HEALTH) == in_code, (set(HOLD_HEALTH) - in_code, in_code - set(HOLD_HEALTH))


def test_the_samples_cover_every_ready_reason_in_the_code() -> None:
    """Ready reasons are literals of the observe handler, refusals, and the table's words for an
    SCP answer to a GET other than 200/404 (every verdict is sampled)."""
    literals: set[str] = set()
    for handler in (OPERATOR / "handlers").glob("*.py"):
        literals |= _literal_args(handler, "Look", 1) | _literal_args(handler, "ready", 2)
    assert {"ServerFound", "ServerNotFound", "ServerError", "InvalidSpec"} <= literals
    from_answers = {
        decide(Situation(SID, outcome=Outcome(kind, 500))).reason
        for kind in Verdict
        if kind not in (Verdict.FOUND, Verdict.GONE)
    }
    in_code = literals | _refusal_reasons() | from_answers
    assert set(READIES) == in_code, (set(READIES) - in_code, in_code - set(READIES))
    assert set(READY_HEALTH) == in_code


def test_the_scripts_reason_tables_name_exactly_the_degraded_reasons() -> None:
    """The script's tables name exactly the Degraded reasons above (a renamed reason would
    otherwise turn a Degraded object Progressing without a failing case)."""
    script = SCRIPT.read_text()
    tables = dict(re.findall(r"^local (\w+) = \{\n(.*?)^\}", script, re.MULTILINE | re.DOTALL))
    named = {
        name: set(re.findall(r"^\s+(\w+) = true,$", body, re.MULTILINE))
        for name, body in tables.items()
    }
    assert named["BLOCKING_DELETE"] == {r for r, h in HOLD_HEALTH.items() if h == "Degraded"}
    assert named["BROKEN_READY"] == {r for r, h in READY_HEALTH.items() if h == "Degraded"}


# ---- the runner itself ------------------------------------------------------------------------


def test_the_runner_fails_on_a_mismatch_naming_the_case_expected_and_actual(
    run_check: Runner, tmp_path: Path
) -> None:
    directory = write_cases(
        tmp_path / "wrong",
        {
            "right": (virtual_server(1, READY), "Healthy", _describe(READY)),
            "wrong": (virtual_server(1, READY), "Degraded", "no"),
        },
    )
    result = run_check(directory)
    assert result.returncode == 1
    report = json.loads(result.stdout)
    assert (report["passed"], report["failed"]) == (1, 1)
    assert (
        f'FAIL testdata/wrong.yaml: expected Degraded "no", got Healthy "{_describe(READY)}"'
        in result.stderr
    )


def test_the_runner_opens_the_libraries_argocd_opens(run_check: Runner, tmp_path: Path) -> None:
    """As in ArgoCD: no json module, and require("os") gives only time and date; a script
    installed through argocd-cm also gets no string library and no os global (ArgoCD's safe os
    registers itself under the table library's name) unless useOpenLibs is set."""
    directory = write_cases(tmp_path / "libs", {"any": (virtual_server(1), "Healthy", "")})
    (directory / "health.lua").write_text(
        'local json = pcall(require, "json")\n'
        'local os_ = require("os")\n'
        'local seen = "json=" .. tostring(json) .. " string=" .. tostring(string ~= nil)\n'
        'seen = seen .. " os=" .. tostring(os ~= nil) .. " exit=" .. tostring(os_.exit ~= nil)\n'
        'seen = seen .. " time=" .. tostring(os_.time() > 0)\n'
        'return {status = "Healthy", message = seen}\n'
    )

    def expect(message: str) -> None:
        health = {"status": "Healthy", "message": message}
        case = {"healthStatus": health, "inputPath": "testdata/any.yaml"}
        (directory / "health_test.yaml").write_text(yaml.safe_dump({"tests": [case]}))

    expect("json=false string=false os=false exit=false time=true")
    passes(run_check(directory), 1)
    expect("json=false string=true os=true exit=false time=true")
    passes(run_check(directory, "-open-libs"), 1)


def test_the_install_instructions_use_the_right_key_and_file() -> None:
    readme = (REPO / "deploy" / "argocd" / "README.md").read_text()
    key = f"resource.customizations.health.{constants.GROUP}_{constants.KIND}"
    assert key in readme
    assert str(SCRIPT.relative_to(REPO)) in readme
    assert "virtualserver-health.lua" not in readme
