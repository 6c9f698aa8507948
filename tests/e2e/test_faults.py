"""Fault injection end to end: the invariants of design.md under faults, on a real control plane.

One seeded run deletes a mix of VirtualServers (Delete and Orphan policies, protected ones,
servers shared by two objects — in one namespace or across two, and a protected object sharing
with a Delete one —, renames that create a new object for a server right as the old one is
deleted, locked servers unlocked later, locked ones let go with Orphan, ids SCP does not know,
objects that are never deleted) while, at random moments:

- SCP misbehaves: latency with jitter, 500/502/503, 429 with ``Retry-After``, connection resets,
  requests that never answer, HTML error pages, garbage bodies — some *after* SCP has acted
  (``process_first``: the deletion happened, the answer is lost);
- the operator is SIGKILLed and restarted, at random and right after a DELETE reached SCP;
- kube-apiserver and etcd are killed and restarted mid-drain;
- the operator's connections to the API server (watch streams included) are reset.

Then faults stop and every object is checked (see ``check_invariants``): no orphan, no wrong
delete (in particular, no DELETE ever reaches a server while an object naming it is live,
protected or Orphan), no stuck object, no duplicate storms, no operator crash. The summary line
names the seed; ``SCP_FAULT_SEED=<seed>`` replays the same schedule of faults (what is injected,
where and in which order; the timing of the processes under test is, of course, their own).
``SCP_FAULT_BUDGET=long`` runs three times the objects for five minutes of faults (see
docs/faults.md).
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import json
import os
import random
import re
import time
import uuid
from collections import Counter
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from scp_emulator.config import EmulatorConfig
from scp_emulator.testing import ThreadedEmulator
from scp_operator import constants
from scp_testenv import ControlPlane, KubectlError
from scp_testenv.operator_process import OperatorProcess
from tests.e2e import faults_support as fs
from tests.e2e.faults_support import (
    NAMESPACE,
    NAMESPACE_B,
    NAMESPACES,
    ROLES,
    Budget,
    Checks,
    Obj,
    Tally,
)

SEED = fs.seed_from_env(os.environ.get("SCP_FAULT_SEED"))
BUDGET = Budget.from_env(os.environ.get("SCP_FAULT_BUDGET"))

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

# SCP fault kinds: (label, emulator fault fields)
SCP_FAULTS: list[tuple[str, dict[str, Any]]] = [
    ("scp-500", {"kind": "status", "status": 500}),
    ("scp-502", {"kind": "status", "status": 502}),
    ("scp-503", {"kind": "status", "status": 503, "headers": {"Retry-After": "1"}}),
    ("scp-429", {"kind": "status", "status": 429}),
    ("scp-reset", {"kind": "reset"}),
    ("scp-timeout", {"kind": "timeout"}),
    ("scp-html", {"kind": "html"}),
    ("scp-garbage", {"kind": "garbage"}),
]
EVENT_WEIGHTS = {
    "scp-fault": 55,
    "latency": 8,
    "operator-kill": 5,
    "kill-after-delete": 4,
    "apiserver-restart": 2,
    "etcd-restart": 2,
    "watch-cut": 8,
    "unlock": 5,
    "escape": 3,
}


MANDATORY = (
    "operator-kill",
    "kill-after-delete",
    "apiserver-restart",
    "etcd-restart",
    "watch-cut",
    "latency",
)


@dataclasses.dataclass(frozen=True)
class Event:
    at: float  # seconds after the faults start
    kind: str
    params: dict[str, Any]

    def describe(self) -> str:
        hidden = ("names", "path_regex")
        args = ",".join(f"{k}={v}" for k, v in sorted(self.params.items()) if k not in hidden)
        names = self.params.get("names")
        return (
            f"{self.at:6.2f}s {self.kind}"
            + (f" {args}" if args else "")
            + (f" {names}" if names else "")
        )


def make_objects(rng: random.Random, emu: ThreadedEmulator, scale: int) -> list[Obj]:
    objs: list[Obj] = []
    for role_name, count in fs.MIX.items():
        role = ROLES[role_name]
        for i in range(count * scale):
            name = f"{role_name}-{i}"
            sid = str(uuid.UUID(int=rng.getrandbits(128), version=4))  # replayable ids
            if not role.missing:
                emu.seed(id=sid, name=name, locked=role.locked)
            if role.rename:
                # the new name is created during the run, a moment before the old one goes
                objs.append(Obj(f"{name}-old", role, sid, delete=True, hold="ServerShared"))
                objs.append(Obj(f"{name}-new", role, sid, delete=False, later=True))
            elif role.shared:
                a = Obj(f"{name}-a", role, sid, delete=True, protected=role.protected_a)
                b = Obj(
                    f"{name}-b",
                    role,
                    sid,
                    delete=role.both,
                    namespace=NAMESPACE_B if role.cross_ns else NAMESPACE,
                )
                if role.protected_a:  # a protected sharer blocks even while terminating
                    a.hold, b.hold = "DeletionProtected", "ServerShared"
                elif not role.both:
                    a.hold = "ServerShared"
                objs += [a, b]
            else:
                objs.append(
                    Obj(
                        name,
                        role,
                        sid,
                        delete=role.deleted,
                        protected=role.protected,
                        hold="DeletionProtected" if role.protected else None,
                    )
                )
    return objs


def manifest(o: Obj) -> dict[str, Any]:
    """The VirtualServer of one object of the run."""
    meta: dict[str, Any] = {"name": o.name, "namespace": o.namespace}
    if o.protected:
        meta["annotations"] = {constants.PROTECTION_ANNOTATION: "true"}
    return {
        "apiVersion": constants.API_VERSION,
        "kind": constants.KIND,
        "metadata": meta,
        "spec": {"serverId": o.server_id, "deletionPolicy": o.role.policy},
    }


def rename_pairs(objs: list[Obj]) -> list[tuple[Obj, Obj]]:
    """(new, old) of every rename, in the order of ``objs``."""
    by_name = {o.name: o for o in objs}
    return [
        (o, by_name[o.name.removesuffix("-new") + "-old"])
        for o in objs
        if o.role.rename and o.later
    ]


def make_schedule(rng: random.Random, objs: list[Obj], budget: Budget) -> list[Event]:
    """Every fault and deletion of the run, drawn from the seed before anything happens."""
    events: list[Event] = []
    to_delete = [o.name for o in objs if o.delete and not o.role.rename]
    rng.shuffle(to_delete)
    window = 0.6 * budget.chaos_seconds
    at_by_name = {name: rng.uniform(0, window) for name in to_delete}
    batches: dict[float, list[str]] = {}
    for name, at in at_by_name.items():
        batches.setdefault(round(at / 1.5) * 1.5, []).append(name)
    for at, names in batches.items():
        events.append(Event(at, "delete", {"names": sorted(names)}))
    for new, old in rename_pairs(objs):
        events.append(
            Event(round(rng.uniform(0, window), 2), "rename", {"names": [new.name, old.name]})
        )
    kinds, weights = zip(*EVENT_WEIGHTS.items(), strict=True)
    targets = [o for o in objs if o.delete and not o.role.missing]
    times: list[tuple[float, str]] = []
    t = 0.0
    while True:
        t += min(max(rng.expovariate(1 / budget.mean_gap), 0.2), 5.0)
        if t >= budget.chaos_seconds:
            break
        times.append((t, rng.choices(kinds, weights)[0]))
    # every kind of disruption at least once, while objects are draining
    for kind in MANDATORY + (("apiserver-outage",) if budget.outage else ()):
        times.append((rng.uniform(0.1, 0.6) * budget.chaos_seconds, kind))
    for t, kind in sorted(times):
        params: dict[str, Any] = {}
        if kind == "scp-fault":
            label, spec = rng.choice(SCP_FAULTS)
            method = rng.choices(["DELETE", "GET", None], [60, 25, 15])[0]
            params = {"label": label, **spec, "times": rng.randint(1, 4)}
            if method:
                params["method"] = method
            if rng.random() < 0.3:
                target = rng.choice(targets)
                params["path_regex"] = target.server_id
                params["target"] = target.name
            if method == "DELETE" and rng.random() < 0.35:
                params["process_first"] = True
            if label == "scp-429":
                params["headers"] = {"Retry-After": str(rng.randint(1, 3))}
        elif kind == "latency":
            params = {
                "ms": rng.choice([0, 0, 50, 200, 600, 1500]),
                "jitter_ms": rng.choice([0, 300]),
            }
        elif kind in ("operator-kill", "kill-after-delete"):
            params = {"down": round(rng.uniform(0, 3), 2)}
        elif kind in ("apiserver-restart", "etcd-restart"):
            params = {"down": round(rng.uniform(0.3, 3), 2)}
        elif kind == "apiserver-outage":
            params = {"down": round(rng.uniform(60, 90), 2)}
        events.append(Event(round(t, 2), kind, params))
    return sorted(events, key=lambda e: e.at)


class Run:
    """Carries out a schedule against the control plane, the emulator and the operator."""

    def __init__(
        self,
        plane: ControlPlane,
        proxy: fs.TcpProxy,
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
            fs.kill_apiserver(self.plane)
            time.sleep(p["down"])
            fs.start_apiserver(self.plane)
        elif kind == "etcd-restart":
            self.tally.disrupt(kind, event.describe())
            fs.kill_etcd(self.plane)
            time.sleep(p["down"])
            fs.start_etcd(self.plane)
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
        fs.ensure_running(self.plane)
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


# --- the invariants ---------------------------------------------------------------------------


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


# --- the test ---------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def plane() -> Iterator[ControlPlane]:
    with fs.private_control_plane() as cp:
        for namespace in NAMESPACES:
            cp.kubectl("create", "namespace", namespace)
        yield cp


def announce(capsys: pytest.CaptureFixture[str], line: str) -> None:
    with capsys.disabled():
        print(f"\n{line}", flush=True)


# generous: the faults, restarts that run late, the settle bound, and startup
@pytest.mark.timeout(int(BUDGET.chaos_seconds * 2 + BUDGET.settle_seconds + 240))
def test_invariants_hold_under_faults(
    plane: ControlPlane,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    record_property: Callable[[str, object], None],
) -> None:
    began = time.monotonic()
    replay = f"SCP_FAULT_SEED={SEED} SCP_FAULT_BUDGET={BUDGET.name}"
    announce(capsys, f"fault suite: seed={SEED} budget={BUDGET.name} (replay with {replay})")
    record_property("fault_seed", SEED)
    rng = random.Random(SEED)
    proxy = fs.TcpProxy(plane.port)
    kubeconfig = fs.kubeconfig_via(plane, proxy.port, tmp_path / "operator.kubeconfig")
    config = EmulatorConfig(delete_delay=0.5, fault_timeout=EMULATOR_FAULT_TIMEOUT)
    with ThreadedEmulator(config) as emu:
        objs = make_objects(rng, emu, BUDGET.scale)
        schedule = make_schedule(rng, objs, BUDGET)
        operator = OperatorProcess(
            kubeconfig=kubeconfig,
            log_path=tmp_path / "operator.log",
            namespaces=list(NAMESPACES),
            env={
                "SCP_ENDPOINT": emu.url,
                "SCP_ACCESS_KEY": emu.access_key,
                "SCP_SECRET_KEY": emu.secret_key,
                **OPERATOR_ENV,
            },
        )
        run = Run(plane, proxy, emu, operator, objs)
        try:
            operator.start(timeout=90)
            run.create([o for o in objs if not o.later])
            assert fs_wait(
                lambda: all(
                    constants.FINALIZER in (x["metadata"].get("finalizers") or [])
                    for x in run.objects().values()
                ),
                60,
            ), f"seed {SEED}: not every object got the finalizer within 60s"
            chaos = run.run(schedule, BUDGET)
            run.heal()
            healed = time.monotonic()
            on_time = fs_wait(settled(run), BUDGET.settle_seconds)
            settle = time.monotonic() - healed
            time.sleep(4)  # a quiet spell: a wrong DELETE made late would show up now
            run.watch_operator()
            requests = emu.requests()
            deletes = [r for r in requests if r["method"] == "DELETE"]
            checks = check_invariants(run, deletes)
            checks.check(
                "no-stuck",
                on_time,
                f"objects did not settle within {BUDGET.settle_seconds:.0f}s after healing",
            )
        except BaseException:
            (tmp_path / "schedule.txt").write_text("\n".join(run.tally.events))
            print(f"seed {SEED}; operator log {operator.log_path}; tail:\n{operator.tail(60)}")
            raise
        finally:
            operator.stop()
            proxy.close()

    summary = summarise(run, objs, requests, checks) + (
        f" | {chaos:.0f}s of faults, settled {settle:.1f}s after healing, "
        f"{time.monotonic() - began:.0f}s in all"
    )
    announce(capsys, summary)
    record_property("fault_summary", summary)
    assert not checks.failures, (
        f"seed {SEED} ({replay}): {len(checks.failures)} invariant violations:\n"
        + "\n".join(checks.failures[:30])
        + "\nschedule:\n"
        + "\n".join(run.tally.events)
    )


FAULT_GROUPS = {"scp-500": "scp-5xx", "scp-502": "scp-5xx", "scp-503": "scp-5xx"}
OWNER_ACTIONS = ("unlock", "orphan-patch")


def summarise(run: Run, objs: list[Obj], requests: list[dict[str, Any]], checks: Checks) -> str:
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
        f"fault suite: seed={SEED} budget={BUDGET.name} objects={len(objs)} "
        f"| faults injected={sum(faults.values())}: {words(faults)}; "
        f"SCP answers replaced by a fault={len(fired)} (after SCP acted: {len(lost)}) "
        f"| DELETE calls={len(deletes)} ({words(statuses)}), "
        f"at most {max(per_server.values(), default=0)} per server "
        f"(of which answered 202/404: at most {max(answered.values(), default=0)}) "
        f"| operator stops for its Lease={run.lease_stops} "
        f"| invariant checks passed={checks.total}/{total} ({words(checks.passed)})"
    )


def fs_wait(check: Callable[[], Any], within: float) -> bool:
    """Poll ``check`` once a second; whether it came true within ``within`` seconds."""
    deadline = time.monotonic() + within
    while not check():
        if time.monotonic() > deadline:
            return False
        time.sleep(1.0)
    return True


class _SeedOnly:
    """Stands in for the emulator when only the schedule is wanted."""

    def seed(self, **fields: Any) -> dict[str, Any]:
        return fields


def test_a_seed_replays_the_same_objects_and_schedule() -> None:
    def plan(seed: int) -> tuple[list[tuple[str, str]], list[str]]:
        rng = random.Random(seed)
        objs = make_objects(rng, _SeedOnly(), 1)  # type: ignore[arg-type]
        schedule = make_schedule(rng, objs, Budget.from_env("ci"))
        return [(o.name, o.server_id) for o in objs], [e.describe() for e in schedule]

    assert plan(SEED) == plan(SEED)
    assert plan(SEED) != plan(SEED + 1)
    objects, events = plan(SEED)
    assert len(objects) == 57
    assert {e.split()[1] for e in events} >= {*MANDATORY, "delete", "rename", "scp-fault"}
    renames = [e for e in events if e.split()[1] == "rename"]
    assert len(renames) == fs.MIX["rename"]
    for line in renames:  # the new name is created first, then the old one deleted
        new, old = re.findall(r"'([^']+)'", line)
        assert new.endswith("-new")
        assert old == new.removesuffix("-new") + "-old"
