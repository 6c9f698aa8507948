"""The benchmark's smoke run (``make bench-smoke``) works end to end and its numbers are sane.

It runs ``python -m tools.bench.run --smoke`` as a subprocess (its own control plane, emulator and
operator processes) and checks what the JSON says. Deliberately no timing thresholds: the
machine running CI is shared and slow; only counts, invariants and "finite and positive".
"""

from __future__ import annotations

import json
import math
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import REPO

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(420)]


@pytest.fixture(scope="module")
def smoke(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    output = tmp_path_factory.mktemp("bench") / "smoke.json"
    result = subprocess.run(
        [sys.executable, "-m", "tools.bench.run", "--smoke", "--output", str(output)],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=400,
        check=False,
    )
    assert result.returncode == 0, f"stdout:\n{result.stdout}\nstderr:\n{result.stderr[-4000:]}"
    assert "ratio" in result.stdout  # the table was printed
    data: dict[str, Any] = json.loads(Path(output).read_text())
    return data


def test_drain_deletes_every_object_with_exactly_one_scp_delete_each(
    smoke: dict[str, Any],
) -> None:
    (drain,) = smoke["drain"]
    assert drain["n"] == 20
    for run in drain["runs"]:
        assert run["all_gone"]
        assert run["gone"] == 20
        assert run["scp_deletes_per_deleted_object"] == 1
        assert run["objects_with_more_than_one_delete"] == 0
        assert run["scp_max_in_flight"] <= smoke["meta"]["concurrency"]


def test_drain_ratio_and_rates_are_finite_and_positive(smoke: dict[str, Any]) -> None:
    (drain,) = smoke["drain"]
    for value in (
        drain["median"]["ratio"],
        drain["median"]["drain_seconds"],
        drain["median"]["k8s_bound"],
        drain["median"]["objects_per_second"],
    ):
        assert isinstance(value, float | int)
        assert math.isfinite(value)
        assert value > 0


def test_kubernetes_requests_are_counted_for_the_operator_identity(
    smoke: dict[str, Any],
) -> None:
    run = smoke["drain"][0]["runs"][0]
    drain = run["k8s_requests_drain"]
    # At least the finalizer removal per object; the audit log and the API server's own
    # counter (minus the harness's requests) must tell the same story about writes.
    assert drain["writes_per_object"] >= 1
    assert run["k8s_write_counts_agree"]
    assert run["k8s_requests_create"]["writes_per_object"] >= 1


def test_blocked_object_follows_the_backoff_schedule_one_call_at_a_time(
    smoke: dict[str, Any],
) -> None:
    blocked = smoke["blocked"]
    assert blocked["still_terminating"] == blocked["objects"]
    assert blocked["max_in_flight_per_object"] == 1
    assert not blocked["retried_early"]
    for obj in blocked["per_object"]:
        assert obj["statuses"] == [409]  # SCP kept refusing every DELETE
        assert 2 <= obj["calls"] <= obj["predicted_max_calls"]
        # the server is read after the first refusal and every fourth: which blocker it is
        assert obj["read_statuses"] == [200]
        assert 1 <= obj["reads"] <= math.ceil(obj["calls"] / 4)
    hour = smoke["first_hour"]
    assert 0 < hour["calls_median"] <= hour["calls_max"] <= hour["calls_if_jitter_always_0"]
    assert hour["scp_calls_max_with_reads"] <= 20  # issue 10's bound for the first hour
