"""The plan of a fault run, drawn from one seed before anything happens: which VirtualServers
exist and what must become of each (:class:`Role`, :data:`MIX`, :func:`make_objects`), and every
deletion and fault with its moment (:func:`make_schedule`). Pure: the same seed gives the same
objects, server ids and schedule (``SCP_FAULT_SEED`` replays a run; docs/faults.md).

Carrying a plan out and checking the invariants afterwards: ``tests/e2e/fault_harness.py``.
"""

from __future__ import annotations

import random
import uuid
from dataclasses import dataclass
from typing import Any

from scp_emulator.testing import ThreadedEmulator
from scp_operator import constants

# --- budget, seed --------------------------------------------------------------------------------


@dataclass(frozen=True)
class Budget:
    """How big and how long a fault run is. ``SCP_FAULT_BUDGET=ci`` (default) or ``long``."""

    name: str
    scale: int  # multiplies the object mix (ci: 41 objects)
    chaos_seconds: float  # how long faults are injected
    mean_gap: float  # mean seconds between fault events
    settle_seconds: float  # bound for "no stuck object" once SCP and Kubernetes are healthy
    outage: bool = False  # also one API server outage longer than Kopf's request retries (~1 min)

    @staticmethod
    def from_env(value: str | None) -> Budget:
        name = (value or "ci").strip().lower()
        if name in ("", "ci", "small", "default"):
            return Budget("ci", scale=1, chaos_seconds=50, mean_gap=0.9, settle_seconds=75)
        if name in ("long", "large"):
            return Budget(
                "long", scale=3, chaos_seconds=300, mean_gap=0.7, settle_seconds=150, outage=True
            )
        if name.endswith("s") and name[:-1].isdigit():  # e.g. SCP_FAULT_BUDGET=600s
            seconds = float(name[:-1])
            return Budget(
                name, scale=2, chaos_seconds=seconds, mean_gap=0.8, settle_seconds=150, outage=True
            )
        raise ValueError(f"SCP_FAULT_BUDGET={value!r}: use ci, long, or a duration such as 600s")


#: The suite's namespaces: most objects live in the first; the second holds the other half of
#: the pairs that share a server across namespaces (the operator serves both).
NAMESPACE = "faults"
NAMESPACE_B = "faults-b"
NAMESPACES = (NAMESPACE, NAMESPACE_B)


def seed_from_env(value: str | None) -> int:
    """``SCP_FAULT_SEED`` if set, else a fresh seed (printed, so any run can be replayed)."""
    if value and value.strip():
        return int(value.strip(), 0)
    return random.SystemRandom().randrange(1, 2**31)


# --- the objects ---------------------------------------------------------------------------------


@dataclass
class Role:
    """What a test object is for, and what must be true of it after the faults."""

    name: str
    policy: str = "Delete"
    protected: bool = False
    locked: bool = False  # server locked when the object is deleted
    unlock: bool = True  # ... and unlocked later (during the faults or when they stop)
    escape: bool = False  # locked for good; the owner patches deletionPolicy: Orphan
    missing: bool = False  # the server does not exist in SCP (404)
    deleted: bool = True  # the test deletes the object
    shared: bool = False  # two objects (``-a`` and ``-b``) name one server
    both: bool = False  # ... and both are deleted (else only ``-a``)
    cross_ns: bool = False  # ... ``-b`` lives in the second namespace
    protected_a: bool = False  # ... ``-a`` carries the deletion-protection annotation
    rename: bool = False  # ``-old`` is deleted right after ``-new`` (same server) is created
    keeps: bool = False  # the server must survive the run (no DELETE may take it)


ROLES: dict[str, Role] = {
    r.name: r
    for r in (
        Role("plain"),
        Role("missing", missing=True),
        Role("locked", locked=True),
        Role("escape", locked=True, unlock=False, escape=True, keeps=True),
        Role("orphan", policy="Orphan", keeps=True),
        Role("protected", protected=True, keeps=True),
        Role("kept", deleted=False, keeps=True),
        Role("shared-both", shared=True, both=True),  # both objects naming the server deleted
        Role("shared-one", shared=True, keeps=True),  # one of two is deleted: the server stays
        # the same, with the two objects in two namespaces
        Role("shared-ns-both", shared=True, both=True, cross_ns=True),
        Role("shared-ns-one", shared=True, cross_ns=True, keeps=True),
        # a Helm/ArgoCD rename: the new object names the server a moment before the old one goes
        Role("rename", rename=True, keeps=True),
        # a protected object and a Delete one share a server, both are deleted: both are held
        Role("protected-share", shared=True, both=True, protected_a=True, keeps=True),
    )
}

#: objects per role at scale 1 (shared and rename roles count pairs: two objects each)
MIX = {
    "plain": 12,
    "missing": 3,
    "locked": 5,
    "escape": 2,
    "orphan": 4,
    "protected": 3,
    "kept": 4,
    "shared-both": 2,
    "shared-one": 2,
    "shared-ns-both": 1,
    "shared-ns-one": 2,
    "rename": 3,
    "protected-share": 2,
}


@dataclass
class Obj:
    """One VirtualServer of the run."""

    name: str
    role: Role
    server_id: str
    delete: bool  # the test deletes it
    namespace: str = NAMESPACE
    protected: bool = False  # carries the deletion-protection annotation
    hold: str | None = None  # once deleted, it must stay held with this reason (None: must go)
    later: bool = False  # created during the run (the new name of a rename), not at the start
    created_at: float | None = None  # when the test created it
    deleted_at: float | None = None
    orphaned: bool = False  # deletionPolicy patched to Orphan while terminating

    @property
    def releases_without_delete(self) -> bool:
        return self.role.policy == "Orphan" or self.orphaned


# --- the schedule --------------------------------------------------------------------------------

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


@dataclass(frozen=True)
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
    for role_name, count in MIX.items():
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
