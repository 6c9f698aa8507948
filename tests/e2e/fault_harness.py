"""Carrying out a fault run and judging it: :class:`Run` executes a plan (``fault_plan.py``)
against a control plane, the SCP emulator and the operator process, keeping the record of what
was injected (:class:`Tally`); :func:`check_invariants` checks every object afterwards
(:class:`Checks`), and :func:`summarise` is the one-line summary the suite prints.

The invariants (docs/faults.md): no orphan, no wrong delete, no stuck object, no duplicate
storms, no crash.
"""

from __future__ import annotations

import datetime as dt
import json
import re
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from scp_emulator.testing import ThreadedEmulator
from scp_operator import constants
from scp_testenv import ControlPlane, KubectlError, WaitTimeout, wait_for
from scp_testenv.operator_process import OperatorProcess
from tests.e2e.fault_plan import NAMESPACES, Budget, Event, Obj, manifest, rename_pairs
from tests.e2e.faults_support import TcpProxy

OPERATOR_ENV = {
    "SCP_OPERATOR_BACKOFF_BASE": "1",
    "SCP_OPERATOR_BACKOFF_CAP": "4",
    "SCP_OPERATOR_SLOW_BACKOFF_BASE": "1",
    "SCP_OPERATOR_SLOW_BACKOFF_CAP": "4",
    "SCP_OPERATOR_HOLD_RECHECK_INTERVAL": "2",
    "SCP_OPERATOR_CONFIRM_POLL_INTERVAL": "1",
    "SCP_OPERATOR_HTTP_TIMEOUT": "2",
    "SCP_OPERATOR_EVENT_REPEAT_INTERVAL": "30",
    "SCP_OPERATOR_METRICS_PORT": "0",
}
#: The operator's own words when it stops because it could not renew its Lease (scp_operator.lease).
LEASE_STOP = re.compile(r"Lease \S+ not renewed for [0-9.]+s")
EMULATOR_FAULT_TIMEOUT = 3.0  # a "timeout" fault holds the request longer than the client waits


# --- the record of a run -------------------------------------------------------------------------


@dataclass
class Tally:
    """What was injected, for the summary line."""

    faults: Counter[str] = field(default_factory=Counter)
    fault_ids: dict[str, str] = field(default_factory=dict)  # emulator fault id -> kind
    disruptions: list[tuple[float, str]] = field(default_factory=list)  # (time, what)
    events: list[str] = field(default_factory=list)  # the executed schedule, for replay

    def note(self, kind: str, what: str) -> None:
        self.faults[kind] += 1
        self.events.append(what)

    def disrupt(self, kind: str, what: str) -> None:
        self.note(kind, what)
        self.disruptions.append((time.time(), kind))

    def fired(self, requests: list[dict[str, Any]]) -> Counter[str]:
        """SCP faults that actually answered a request, by kind."""
        return Counter(
            self.fault_ids.get(str(r.get("fault_id")), "unknown")
            for r in requests
            if r.get("verdict") == "fault"
        )


@dataclass
class Checks:
    """Invariant checks: counted when they pass, collected when they fail."""

    passed: Counter[str] = field(default_factory=Counter)
    failures: list[str] = field(default_factory=list)

    def check(self, invariant: str, ok: bool, message: str) -> None:
        if ok:
            self.passed[invariant] += 1
        else:
            self.failures.append(f"{invariant}: {message}")

    def check_all(self, invariant: str, problems: list[str]) -> None:
        """One check that passes when ``problems`` is empty, else one failure per problem."""
        if not problems:
            self.passed[invariant] += 1
        self.failures += [f"{invariant}: {problem}" for problem in problems]

    @property
    def total(self) -> int:
        return sum(self.passed.values())


# --- the run -------------------------------------------------------------------------------------


class Run:
    """Carries out a schedule against the control plane, the emulator and the operator."""

    def __init__(
        self,
        plane: ControlPlane,
        proxy: TcpProxy,
        emu: ThreadedEmulator,
        operator: OperatorProcess,
        objs: list[Obj],
    ) -> None:
        self.plane = plane
        self.proxy = proxy
        self.emu = emu
        self.operator = operator
        self.objs = {o.name: o for o in objs}
        self.tally = Tally()
        self.unexpected_exits = 0
        self.lease_stops = 0
        self.skipped = 0

    # -- kubectl that survives a control plane that just came back ----------------------------

    def kubectl(self, *args: str, input: str | None = None) -> str:
        deadline = time.monotonic() + 60
        while True:
            try:
                return self.plane.kubectl(*args, input=input, timeout=30).stdout
            except KubectlError:
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.5)

    def objects(self) -> dict[str, dict[str, Any]]:
        out = self.kubectl("get", "scpvs", "--all-namespaces", "-o", "json")
        return {
            o["metadata"]["name"]: o
            for o in json.loads(out)["items"]
            if o["metadata"]["namespace"] in NAMESPACES
        }

    def delete(self, names: list[str]) -> None:
        by_namespace: dict[str, list[str]] = {}
        for name in names:
            by_namespace.setdefault(self.objs[name].namespace, []).append(name)
        for namespace, group in sorted(by_namespace.items()):
            now = time.time()  # per call: a sharer in the other namespace goes later
            for name in group:
                o = self.objs[name]
                # the first deletion counts (kill-after-delete deletes ahead of the schedule)
                o.deleted_at = now if o.deleted_at is None else o.deleted_at
            self.kubectl(
                "delete", "scpvs", *group, "-n", namespace, "--wait=false", "--ignore-not-found"
            )

    def create(self, objs: list[Obj]) -> None:
        now = time.time()
        for o in objs:
            o.created_at = now
        items = [manifest(o) for o in objs]
        self.kubectl(
            "apply",
            "-f",
            "-",
            input=json.dumps({"apiVersion": "v1", "kind": "List", "items": items}),
        )

    def rename(self, new: Obj, old: Obj) -> None:
        """What Helm or ArgoCD do on a rename: create the new name, then prune the old one."""
        self.create([new])
        self.delete([old.name])

    def orphan(self, obj: Obj) -> None:
        """The owner's way out: patch Orphan (an object already gone cannot be patched)."""
        patch = json.dumps({"spec": {"deletionPolicy": "Orphan"}})
        args = ("patch", "scpvs", obj.name, "-n", obj.namespace, "--type=merge", "-p", patch)
        out = self.plane.kubectl(*args, check=False, timeout=30)
        if out.returncode != 0 and "NotFound" not in out.stderr:
            self.kubectl(*args)  # a real failure: retry (raises if it persists)
        obj.orphaned = "NotFound" not in out.stderr

    # -- the operator ---------------------------------------------------------------------------

    def restart_operator(self, down: float) -> None:
        self.operator.kill()
        time.sleep(down)
        self.operator.start(timeout=90)

    def watch_operator(self) -> None:
        """An operator that exited by itself crashed — unless it stopped on purpose because it
        could not renew its Lease (the API server was unreachable for two thirds of the lease
        duration: it must stop before another instance may take over). Either way, start it
        again, as the kubelet would."""
        if not self.operator.running:
            if LEASE_STOP.search(self.operator.log()):
                self.lease_stops += 1
                self.tally.disruptions.append((time.time(), "lease-stop"))  # a restart, too
                self.tally.events.append(
                    "!! operator stopped: its Lease was not renewed; restarted"
                )
            else:
                self.unexpected_exits += 1
                self.tally.events.append("!! operator exited unexpectedly; restarted")
            self.operator.start(timeout=90)

    # -- one event ------------------------------------------------------------------------------

    def execute(self, event: Event) -> None:
        p = event.params
        kind = event.kind
        if kind == "delete":
            self.delete(p["names"])
            self.tally.events.append(event.describe())
        elif kind == "rename":
            new, old = (self.objs[name] for name in p["names"])
            self.rename(new, old)
            self.tally.events.append(event.describe())
        elif kind == "scp-fault":
            spec = {k: v for k, v in p.items() if k not in ("label", "target")}
            fault_id = self.emu.fault(**spec)
            self.tally.fault_ids[fault_id] = p["label"]
            self.tally.note(p["label"], event.describe())
        elif kind == "latency":
            self.emu.set_latency(p["ms"], p["jitter_ms"])
            self.tally.note("scp-latency", event.describe())
        elif kind == "operator-kill":
            self.tally.disrupt(kind, event.describe())
            self.restart_operator(p["down"])
        elif kind == "kill-after-delete":
            self.kill_after_delete(event)
        elif kind in ("apiserver-restart", "apiserver-outage"):
            self.tally.disrupt(kind, event.describe())
            self.plane.kill("kube-apiserver")
            time.sleep(p["down"])
            self.plane.restart("kube-apiserver")
        elif kind == "etcd-restart":
            self.tally.disrupt(kind, event.describe())
            self.plane.kill("etcd")
            time.sleep(p["down"])
            self.plane.restart("etcd")
        elif kind == "watch-cut":
            self.tally.disrupt(kind, event.describe() + f" cut={self.proxy.cut()}")
        elif kind == "unlock":
            candidates = [
                o
                for o in self.objs.values()
                if o.role.locked
                and o.role.unlock
                and (self.emu.server(o.server_id) or {}).get("locked")
            ]
            candidates.sort(key=lambda o: (o.deleted_at is None, o.name))
            if candidates:
                self.emu.patch(candidates[0].server_id, locked=False)
                self.tally.note("unlock", event.describe() + f" {candidates[0].name}")
            else:
                self.skipped += 1
        elif kind == "escape":
            candidates = [
                o
                for o in self.objs.values()
                if o.role.escape and o.deleted_at is not None and not o.orphaned
            ]
            if candidates:
                self.orphan(sorted(candidates, key=lambda o: o.name)[0])
                self.tally.note("orphan-patch", event.describe())
            else:
                self.skipped += 1
        else:  # pragma: no cover - the schedule only holds the kinds above
            raise AssertionError(kind)

    def kill_after_delete(self, event: Event) -> None:
        """Delete a plain object and SIGKILL the operator the moment its DELETE reaches SCP."""
        pending = sorted(
            (o for o in self.objs.values() if o.role.name == "plain" and o.deleted_at is None),
            key=lambda o: o.name,
        )
        if not pending:
            self.skipped += 1
            return
        obj = pending[0]
        self.delete([obj.name])
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline and not self.emu.requests(
            method="DELETE", path_contains=obj.server_id
        ):
            time.sleep(0.05)
        self.tally.disrupt("operator-kill", event.describe() + f" after DELETE of {obj.name}")
        self.restart_operator(event.params["down"])

    def run(self, schedule: list[Event], budget: Budget) -> float:
        started = time.monotonic()
        hard_stop = budget.chaos_seconds * 1.6
        for event in schedule:
            elapsed = time.monotonic() - started
            if event.at > elapsed:
                time.sleep(event.at - elapsed)
            elif elapsed > hard_stop and event.kind not in ("delete", "rename"):
                self.skipped += 1  # running late (restarts block): keep the run bounded
                continue
            self.watch_operator()
            self.execute(event)
        return time.monotonic() - started

    # -- healing --------------------------------------------------------------------------------

    def heal(self) -> None:
        """Stop every fault; finish what the schedule left undone (all planned deletions)."""
        self.emu.clear_faults()
        self.emu.set_latency(0)
        self.plane.ensure_running()
        self.watch_operator()
        for new, old in rename_pairs(list(self.objs.values())):
            if new.created_at is None:
                self.rename(new, old)
        left = [o.name for o in self.objs.values() if o.delete and o.deleted_at is None]
        if left:
            self.delete(left)
        for o in self.objs.values():
            if (
                o.role.locked
                and o.role.unlock
                and (self.emu.server(o.server_id) or {}).get("locked")
            ):
                self.emu.patch(o.server_id, locked=False)
            if o.role.escape and not o.orphaned:
                self.orphan(o)


# --- the invariants ------------------------------------------------------------------------------


def expected_gone(o: Obj) -> bool:
    return o.delete and o.hold is None


def reason(obj: dict[str, Any] | None) -> str | None:
    for cond in ((obj or {}).get("status") or {}).get("conditions") or []:
        if cond.get("type") == "Deleting":
            return str(cond.get("reason"))
    return None


def settled(run: Run) -> Callable[[], bool]:
    def check() -> bool:
        present = run.objects()
        for o in run.objs.values():
            if expected_gone(o) and o.name in present:
                return False
            if o.delete and o.hold is not None and reason(present.get(o.name)) != o.hold:
                return False
        return True

    return check


def when(entry: dict[str, Any]) -> float:
    return dt.datetime.fromisoformat(str(entry["time"]).replace("Z", "+00:00")).timestamp()


def accepted(entry: dict[str, Any]) -> bool:
    """Did this DELETE make SCP delete (or find gone) the server, whatever the client saw?"""
    if entry["verdict"] == "ok":
        return entry["status"] in (202, 404)
    return str(entry.get("detail") or "").startswith("processed (the API answered 202)")


#: Slack (s) between the test's clock when it deleted an object and the emulator's log time.
CLOCK_SLACK = 0.05


def blocked_delete(entry: dict[str, Any], holders: list[Obj]) -> list[str]:
    """Why this DELETE should never have been sent: the objects naming its server that were live
    (created and not yet deleted), protected, or Orphan when it reached SCP. Empty: it was fine.

    A deletion time is taken just before ``kubectl delete`` ran, so an object counts as deleted
    from slightly before it really was: the check never blames the operator wrongly.
    """
    t = when(entry)
    problems = []
    for h in holders:
        if h.created_at is None or h.created_at > t:
            continue  # not created yet when the DELETE came
        if h.protected:
            why = "carries the deletion-protection annotation"
        elif h.role.policy == "Orphan":
            why = "has deletionPolicy Orphan"
        elif h.deleted_at is None or h.deleted_at > t + CLOCK_SLACK:
            why = "was live (not deleted yet)"
        else:
            continue
        problems.append(
            f"DELETE of server {entry['server_id']} at {t:.2f} (answer {entry['status']}) while "
            f"{h.namespace}/{h.name} ({h.role.name}) {why}"
        )
    return problems


def check_invariants(run: Run, deletes: list[dict[str, Any]]) -> Checks:
    checks = Checks()
    present = run.objects()
    by_sid: dict[str, list[dict[str, Any]]] = {}
    for entry in deletes:
        by_sid.setdefault(str(entry["server_id"]), []).append(entry)
    holders: dict[str, list[Obj]] = {}
    for o in run.objs.values():
        holders.setdefault(o.server_id, []).append(o)
    disruptions = len(run.tally.disruptions)

    for o in run.objs.values():
        calls = by_sid.get(o.server_id, [])
        server = None if o.role.missing else run.emu.server(o.server_id)
        gone_in_scp = o.role.missing or server is None or server.get("state") == "DELETING"
        obj = present.get(o.name)
        tag = f"{o.name} (server {o.server_id})"

        # no orphan: an object gone from Kubernetes had its server deleted or already gone
        if obj is None and not o.releases_without_delete:
            seen = [c["status"] for c in calls if c["verdict"] == "ok"]
            state = "unknown to SCP" if o.role.missing else f"state {server and server['state']}"
            checks.check(
                "no-orphan",
                gone_in_scp and any(accepted(c) for c in calls),
                f"{tag} is gone from Kubernetes without SCP deleting its server "
                f"({state}; DELETE answers {seen})",
            )

        # no wrong delete: protected, Orphan, still-present objects keep their servers
        if o.role.keeps:
            checks.check(
                "no-wrong-delete",
                not gone_in_scp and not any(accepted(c) for c in calls),
                f"{tag} ({o.role.name}) must keep its server; SCP state "
                f"{server and server.get('state')}, DELETE answers {[c['status'] for c in calls]}",
            )
            if not o.role.escape:  # an escape object was Delete (and locked) before Orphan
                checks.check(
                    "no-wrong-delete", not calls, f"{tag} ({o.role.name}) got {len(calls)} DELETEs"
                )

        # no stuck object
        if expected_gone(o):
            checks.check("no-stuck", obj is None, f"{tag} ({o.role.name}) is still present")
        elif o.delete:
            want = o.hold
            checks.check(
                "no-stuck",
                obj is not None
                and reason(obj) == want
                and constants.FINALIZER in obj["metadata"].get("finalizers", []),
                f"{tag} should be held with {want}, is {reason(obj) if obj else 'gone'}",
            )
        else:
            checks.check(
                "no-stuck",
                obj is not None and not obj["metadata"].get("deletionTimestamp"),
                f"{tag} was never deleted but is {'terminating' if obj else 'gone'}",
            )

    # every DELETE names a server that some deleted object (Delete policy at the time) named
    allowed = {
        o.server_id
        for o in run.objs.values()
        if o.delete
        and o.role.policy == "Delete"
        and not o.protected
        and (not o.role.keeps or o.role.escape)
    }
    for entry in deletes:
        checks.check(
            "no-wrong-delete",
            entry["server_id"] in allowed,
            f"DELETE for server {entry['server_id']}, which no deleted object was free to delete",
        )
        checks.check_all(
            "no-wrong-delete", blocked_delete(entry, holders.get(entry["server_id"], []))
        )

    # no duplicate storms
    for sid, calls in by_sid.items():
        n_holders = len(holders.get(sid, []))
        answers = sum(1 for c in calls if c["verdict"] == "ok" and c["status"] in (202, 404))
        checks.check(
            "no-storm",
            answers <= n_holders + disruptions,
            f"server {sid}: {answers} DELETEs answered 202/404 (holders {n_holders}, "
            f"disruptions {disruptions})",
        )
        times = sorted(when(c) for c in calls)
        burst = max(
            (sum(1 for t in times if start <= t < start + 2.0) for start in times), default=0
        )
        checks.check(
            "no-storm",
            burst <= 2 + n_holders,
            f"server {sid}: {burst} DELETEs within 2 s",
        )

    checks.check(
        "no-crash",
        run.unexpected_exits == 0,
        f"the operator exited by itself {run.unexpected_exits} times",
    )
    return checks


# --- the summary ---------------------------------------------------------------------------------


FAULT_GROUPS = {"scp-500": "scp-5xx", "scp-502": "scp-5xx", "scp-503": "scp-5xx"}
OWNER_ACTIONS = ("unlock", "orphan-patch")


def summarise(
    run: Run,
    objs: list[Obj],
    requests: list[dict[str, Any]],
    checks: Checks,
    *,
    seed: int,
    budget: Budget,
) -> str:
    """The one line the issue asks for: seed, faults by kind, objects, DELETE calls, checks."""
    faults: Counter[str] = Counter()
    for kind, n in run.tally.faults.items():
        if kind not in OWNER_ACTIONS:
            faults[FAULT_GROUPS.get(kind, kind)] += n
    deletes = [r for r in requests if r["method"] == "DELETE"]
    fired = [r for r in requests if r["verdict"] == "fault"]
    lost = [r for r in fired if str(r.get("detail") or "").startswith("processed")]
    statuses = Counter(
        ("unanswered" if r["status"] is None else str(r["status"]))
        if r["verdict"] == "ok"
        else "fault"
        for r in deletes
    )
    per_server = Counter(str(r["server_id"]) for r in deletes)
    answered = Counter(
        str(r["server_id"]) for r in deletes if r["verdict"] == "ok" and r["status"] in (202, 404)
    )
    total = checks.total + len(checks.failures)

    def words(counter: Counter[str]) -> str:
        return " ".join(f"{k}={v}" for k, v in sorted(counter.items()))

    return (
        f"fault suite: seed={seed} budget={budget.name} objects={len(objs)} "
        f"| faults injected={sum(faults.values())}: {words(faults)}; "
        f"SCP answers replaced by a fault={len(fired)} (after SCP acted: {len(lost)}) "
        f"| DELETE calls={len(deletes)} ({words(statuses)}), "
        f"at most {max(per_server.values(), default=0)} per server "
        f"(of which answered 202/404: at most {max(answered.values(), default=0)}) "
        f"| operator stops for its Lease={run.lease_stops} "
        f"| invariant checks passed={checks.total}/{total} ({words(checks.passed)})"
    )


def settles(check: Callable[[], Any], within: float) -> bool:
    """Whether ``check`` comes true within ``within`` seconds (asked once a second)."""
    try:
        wait_for(check, within, interval=1.0)
    except WaitTimeout:
        return False
    return True
