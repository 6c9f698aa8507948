"""Sharded operators (docs/scaling.md) on a real kube-apiserver with ShardedListAndWatch on.

Each shard is a real ``scp-operator run`` process with its own SCP access key, so the
emulator's request log says which shard sent each DELETE. What is checked: three shards drain a
thousand objects, every server getting exactly one DELETE, from the shard that owns its object's
uid; a killed shard delays only its own objects; the shared-server guard still holds across
shards; a shard refuses to start on an API server that ignores ``shardSelector`` (at startup,
and in its handlers when there was nothing to see at startup) and on a plan with a gap.

Light on purpose (CI has two cores): servers are seeded when the emulator starts, objects are
created and deleted in bulk requests, deadlines are generous and nothing is timed.
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import pytest

from scp_emulator import ServerSpec
from scp_emulator.config import Credential, EmulatorConfig
from scp_emulator.testing import ThreadedEmulator
from scp_operator import constants, sharding
from scp_testenv import ControlPlane, wait_for
from scp_testenv.operator_process import OperatorProcess
from tests.e2e.operator_fixtures import CRD_FILE, FAST

SHARDS = 3
KEYS = [(f"SHARDKEY{i}", f"shard-{i}-secret") for i in range(SHARDS)]
COLLECTION = f"/apis/{constants.GROUP}/{constants.VERSION}/namespaces/{{ns}}/{constants.PLURAL}"


def shard_of(uid: str, count: int = SHARDS) -> int:
    (index,) = [i for i in range(count) if sharding.plan(count, i).owns(uid)]
    return index


def emulator_with(server_ids: list[str]) -> ThreadedEmulator:
    """An emulator that knows ``server_ids`` and one access key per shard."""
    return ThreadedEmulator(
        EmulatorConfig(
            delete_delay=0.5,
            credentials=[Credential(access_key=a, secret_key=s) for a, s in KEYS],
            servers=[ServerSpec(id=sid, name=f"vm-{n}") for n, sid in enumerate(server_ids)],
            request_log_limit=200_000,
        )
    )


class Shards:
    """Shard processes of one test: ``start(i)``, ``kill(i)``; all stopped at teardown."""

    def __init__(self, cp: ControlPlane, namespace: str, emu: ThreadedEmulator, logs: Path):
        self.cp, self.ns, self.emu, self.logs = cp, namespace, emu, logs
        self.procs: dict[int, OperatorProcess] = {}
        self.runs = 0

    def process(self, index: int, count: int = SHARDS, **env: str) -> OperatorProcess:
        self.runs += 1
        access, secret = KEYS[index % len(KEYS)]
        return OperatorProcess(
            kubeconfig=self.cp.kubeconfig,
            log_path=self.logs / f"shard-{index}-run-{self.runs}.log",
            namespaces=[self.ns],
            env={
                **self.emu.scp_env(),
                **FAST,
                "SCP_ACCESS_KEY": access,
                "SCP_SECRET_KEY": secret,
                "SCP_OPERATOR_SHARDS": str(count),
                "SCP_OPERATOR_SHARD_INDEX": str(index),
                **env,
            },
        )

    def start(self, index: int) -> OperatorProcess:
        proc = self.process(index)
        self.procs[index] = proc
        proc.start(timeout=120)
        return proc

    def stop_all(self) -> None:
        for proc in self.procs.values():
            proc.stop()


@pytest.fixture
def shards_for(
    control_plane: ControlPlane, namespace: str, tmp_path: Path, crd: None
) -> Iterator[Callable[[ThreadedEmulator], Shards]]:
    made: list[Shards] = []

    def make(emu: ThreadedEmulator) -> Shards:
        shards = Shards(control_plane, namespace, emu, tmp_path)
        made.append(shards)
        return shards

    yield make
    for shards in made:
        shards.stop_all()


def vs(name: str, server_id: str) -> dict[str, Any]:
    return {
        "apiVersion": constants.API_VERSION,
        "kind": constants.KIND,
        "metadata": {"name": name},
        "spec": {"serverId": server_id},
    }


def create_many(cp: ControlPlane, namespace: str, objects: list[dict[str, Any]]) -> None:
    """Create objects in a few concurrent bulk requests (kubectl create of a List)."""
    chunks = [objects[i : i + 250] for i in range(0, len(objects), 250)]

    def create(chunk: list[dict[str, Any]]) -> None:
        listing = {"apiVersion": "v1", "kind": "List", "items": chunk}
        cp.kubectl("create", "-n", namespace, "-f", "-", input=json.dumps(listing), timeout=300)

    with ThreadPoolExecutor(max_workers=3) as pool:
        list(pool.map(create, chunks))


def listed(cp: ControlPlane, namespace: str) -> list[dict[str, Any]]:
    out = cp.kubectl("get", "scpvs", "-n", namespace, "-o", "json", timeout=120)
    items: list[dict[str, Any]] = json.loads(out.stdout)["items"]
    return items


def has_finalizer(item: dict[str, Any]) -> bool:
    return constants.FINALIZER in (item["metadata"].get("finalizers") or [])


# Generous, not a performance bound: about 2 minutes alone, much longer on a busy 2-core machine.
@pytest.mark.timeout(1800)
def test_three_shards_drain_a_thousand_objects_each_server_deleted_once_by_its_shard(
    control_plane: ControlPlane,
    namespace: str,
    shards_for: Callable[[ThreadedEmulator], Shards],
) -> None:
    server_ids = [str(uuid.uuid4()) for _ in range(1000)]
    with emulator_with(server_ids) as emu:
        shards = shards_for(emu)
        for index in range(SHARDS):
            shards.start(index)
        create_many(control_plane, namespace, [vs(f"vs-{n}", s) for n, s in enumerate(server_ids)])
        # Every object is served by some shard: each gets the finalizer (no admission policy here).
        wait_for(
            lambda: sum(map(has_finalizer, listed(control_plane, namespace))) == 1000,
            within=600,
            interval=3,
            what="not every object got the finalizer",
        )
        owner = {
            i["spec"]["serverId"]: shard_of(i["metadata"]["uid"])
            for i in listed(control_plane, namespace)
        }
        assert set(owner.values()) == set(range(SHARDS))  # 1000 uids fill every shard
        stopped = 2
        shards.procs[stopped].kill()  # SIGKILL: no clean stop, its Lease simply expires
        control_plane.kubectl("delete", "--raw", COLLECTION.format(ns=namespace), timeout=300)

        def only_the_stopped_shards_remain() -> bool:
            left = listed(control_plane, namespace)
            return all(shard_of(i["metadata"]["uid"]) == stopped for i in left) and len(
                left
            ) == sum(1 for s in owner.values() if s == stopped)

        wait_for(only_the_stopped_shards_remain, within=900, interval=5, what="drain")
        stopped_servers = {sid for sid, s in owner.items() if s == stopped}
        deleted = emu.requests(method="DELETE")
        assert not [r for r in deleted if r["server_id"] in stopped_servers]
        assert all(has_finalizer(i) for i in listed(control_plane, namespace))

        shards.start(stopped)  # takes the expired Lease, resumes its held deletions
        wait_for(
            lambda: not listed(control_plane, namespace),
            within=600,
            interval=3,
            what="the restarted shard did not finish its objects",
        )
        deletes = emu.requests(method="DELETE")
        by_server: dict[str, list[dict[str, Any]]] = {}
        for request in deletes:
            by_server.setdefault(str(request["server_id"]), []).append(request)
        assert set(by_server) == set(server_ids)
        assert all(len(requests) == 1 for requests in by_server.values())
        for sid, (request,) in by_server.items():
            assert request["status"] == 202
            assert request["access_key"] == KEYS[owner[sid]][0], sid
        for proc in shards.procs.values():
            assert "outside this shard" not in proc.log()


def test_a_server_named_by_objects_in_two_shards_is_still_guarded(
    control_plane: ControlPlane,
    namespace: str,
    shards_for: Callable[[ThreadedEmulator], Shards],
) -> None:
    sid = str(uuid.uuid4())
    with emulator_with([sid]) as emu:
        shards = shards_for(emu)
        for index in range(SHARDS):
            shards.start(index)
        create_many(control_plane, namespace, [vs("first", sid)])
        first = next(
            i for i in listed(control_plane, namespace) if i["metadata"]["name"] == "first"
        )
        second = ""
        for attempt in range(20):  # each try lands in another shard with probability 2/3
            name = f"second-{attempt}"
            create_many(control_plane, namespace, [vs(name, sid)])
            item = next(
                i for i in listed(control_plane, namespace) if i["metadata"]["name"] == name
            )
            if shard_of(item["metadata"]["uid"]) != shard_of(first["metadata"]["uid"]):
                second = name
                break
        assert second, "no object landed in another shard in 20 tries"
        wait_for(
            lambda: all(map(has_finalizer, listed(control_plane, namespace))),
            within=120,
            what="finalizers",
        )
        control_plane.kubectl("delete", "scpvs", second, "-n", namespace, "--wait=false")

        def reason() -> str | None:
            item = next(
                i for i in listed(control_plane, namespace) if i["metadata"]["name"] == second
            )
            for condition in (item.get("status") or {}).get("conditions") or []:
                if condition.get("type") == "Deleting":
                    return str(condition.get("reason"))
            return None

        wait_for(lambda: reason() == "ServerShared", within=120, what="second not held")
        assert emu.requests(method="DELETE") == []
        assert emu.server(sid) is not None
        # Everything goes. Objects all terminating with policy Delete no longer hold each other
        # (the decision table's rule, sharded or not), so each may send its DELETE: the server
        # is deleted, accepted at least once, and nothing is left.
        control_plane.kubectl("delete", "--raw", COLLECTION.format(ns=namespace))
        wait_for(lambda: not listed(control_plane, namespace), within=300, what="drain")
        answers = [r["status"] for r in emu.requests(method="DELETE", path_contains=sid)]
        assert 202 in answers, answers


def test_a_plan_with_a_gap_refuses_to_start_naming_the_variable(
    shards_for: Callable[[ThreadedEmulator], Shards],
) -> None:
    with emulator_with([]) as emu:
        proc = shards_for(emu).process(
            0,
            count=2,
            SCP_OPERATOR_SHARD_RANGES="0x0000000000000000-0x7000000000000000,"
            "0x8000000000000000-0x10000000000000000",
        )
        proc.spawn()
        assert proc.proc is not None
        proc.proc.wait(120)
        assert "SCP_OPERATOR_SHARD_RANGES" in proc.log()
        assert "gap 0x7000000000000000-0x8000000000000000" in proc.log()
        assert "scp-operator ready" not in proc.log()


@pytest.fixture(scope="module")
def gateless(control_plane: ControlPlane) -> Iterator[ControlPlane]:
    """A second control plane without ShardedListAndWatch: it ignores shardSelector."""
    with ControlPlane(control_plane.binaries, feature_gates={}) as cp:
        cp.kubectl("apply", "-f", str(CRD_FILE))
        cp.kubectl("wait", "--for=condition=Established", f"crd/{constants.CRD_NAME}")
        yield cp


def outside_shard_zero(cp: ControlPlane, namespace: str) -> str:
    """Create objects until one's uid lies outside shard 0 of 2; returns its name."""
    for attempt in range(20):
        name = f"vs-{attempt}"
        create_many(cp, namespace, [vs(name, str(uuid.uuid4()))])
        item = next(i for i in listed(cp, namespace) if i["metadata"]["name"] == name)
        if shard_of(item["metadata"]["uid"], count=2) != 0:
            return name
    raise AssertionError("every object landed in shard 0")


IGNORED = "the API server ignores shardSelector: enable the ShardedListAndWatch feature gate"


def test_without_the_feature_gate_a_shard_refuses_to_start(
    gateless: ControlPlane, tmp_path: Path
) -> None:
    namespace = f"e2e-nogate-{uuid.uuid4().hex[:6]}"
    gateless.kubectl("create", "namespace", namespace)
    outside_shard_zero(gateless, namespace)
    with emulator_with([]) as emu:
        shards = Shards(gateless, namespace, emu, tmp_path)
        proc = shards.process(0, count=2)
        try:
            proc.spawn()
            assert proc.proc is not None
            proc.proc.wait(120)
            assert IGNORED in proc.log()
            assert "scp-operator ready" not in proc.log()
        finally:
            proc.stop()


def test_without_the_feature_gate_the_first_foreign_object_stops_the_shard(
    gateless: ControlPlane, tmp_path: Path
) -> None:
    """Nothing to see at startup: the handlers' own range check stops the process, and the
    object keeps its finalizer (it is never acted on)."""
    namespace = f"e2e-nogate-{uuid.uuid4().hex[:6]}"
    gateless.kubectl("create", "namespace", namespace)
    server = str(uuid.uuid4())
    with emulator_with([server]) as emu:
        shards = Shards(gateless, namespace, emu, tmp_path)
        proc = shards.process(0, count=2)
        try:
            proc.start(timeout=120)  # an empty namespace: nothing shows the selector is ignored
            name = outside_shard_zero(gateless, namespace)
            assert proc.proc is not None
            proc.proc.wait(120)  # it stops by itself
            assert IGNORED in proc.log()
            item = next(i for i in listed(gateless, namespace) if i["metadata"]["name"] == name)
            assert "status" not in item or not (item["status"] or {}).get("conditions")
        finally:
            proc.stop()
