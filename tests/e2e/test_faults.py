"""Fault injection end to end: the invariants of docs/architecture.md under faults, on a real
control plane.

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

Then faults stop and every object is checked (``fault_harness.check_invariants``): no orphan,
no wrong delete (in particular, no DELETE ever reaches a server while an object naming it is
live, protected or Orphan), no stuck object, no duplicate storms, no operator crash. The summary
line names the seed; ``SCP_FAULT_SEED=<seed>`` replays the same schedule of faults (what is
injected, where and in which order; the timing of the processes under test is, of course, their
own). ``SCP_FAULT_BUDGET=long`` runs three times the objects for five minutes of faults (see
docs/faults.md).

The plan of a run (objects, schedule) is ``fault_plan.py``; carrying it out, the invariants and
the summary are ``fault_harness.py``; the private control plane and the TCP proxy are
``faults_support.py``. This module holds only the tests.
"""

from __future__ import annotations

import os
import random
import re
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from scp_emulator.config import EmulatorConfig
from scp_emulator.testing import ThreadedEmulator
from scp_operator import constants
from scp_testenv import ControlPlane
from scp_testenv.operator_process import OperatorProcess
from tests.e2e import faults_support as fs
from tests.e2e.fault_harness import (
    EMULATOR_FAULT_TIMEOUT,
    OPERATOR_ENV,
    Run,
    check_invariants,
    settled,
    settles,
    summarise,
)
from tests.e2e.fault_plan import (
    MANDATORY,
    MIX,
    NAMESPACES,
    Budget,
    make_objects,
    make_schedule,
    seed_from_env,
)

SEED = seed_from_env(os.environ.get("SCP_FAULT_SEED"))
BUDGET = Budget.from_env(os.environ.get("SCP_FAULT_BUDGET"))


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
            assert settles(
                lambda: all(
                    constants.FINALIZER in (x["metadata"].get("finalizers") or [])
                    for x in run.objects().values()
                ),
                60,
            ), f"seed {SEED}: not every object got the finalizer within 60s"
            chaos = run.run(schedule, BUDGET)
            run.heal()
            healed = time.monotonic()
            on_time = settles(settled(run), BUDGET.settle_seconds)
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

    summary = summarise(run, objs, requests, checks, seed=SEED, budget=BUDGET) + (
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
    assert len(renames) == MIX["rename"]
    for line in renames:  # the new name is created first, then the old one deleted
        new, old = re.findall(r"'([^']+)'", line)
        assert new.endswith("-new")
        assert old == new.removesuffix("-new") + "-old"
