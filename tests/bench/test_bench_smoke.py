"""The benchmark's smoke run (``make bench-smoke``) works end to end and its numbers are sane.

It runs ``python -m tools.bench.run --smoke`` as a subprocess (its own control plane, emulator,
operator processes and the plain Kopf baseline) over every section, with tiny sizes, and checks
what the JSON and the pictures say. Deliberately no timing thresholds: the machine running CI is
shared and slow; only counts, invariants and "finite and positive".
"""

from __future__ import annotations

import copy
import dataclasses
import json
import math
import subprocess
import sys
import xml.etree.ElementTree as ET
from pathlib import Path
from typing import Any

import pytest
from tools.bench import report

from tests.conftest import REPO

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(660)]

SVG = "{http://www.w3.org/2000/svg}"


@dataclasses.dataclass
class Smoke:
    data: dict[str, Any]
    stdout: str
    output: Path


@pytest.fixture(scope="module")
def run(tmp_path_factory: pytest.TempPathFactory) -> Smoke:
    output = tmp_path_factory.mktemp("bench") / "smoke.json"
    result = subprocess.run(
        [sys.executable, "-m", "tools.bench.run", "--smoke", "--output", str(output)],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=600,
        check=False,
    )
    assert result.returncode == 0, f"stdout:\n{result.stdout}\nstderr:\n{result.stderr[-4000:]}"
    return Smoke(json.loads(output.read_text()), result.stdout, output)


@pytest.fixture(scope="module")
def smoke(run: Smoke) -> dict[str, Any]:
    return run.data


def _svg_ids(path: Path) -> tuple[set[str], str]:
    """The element ids and all text of an SVG file (which must parse as SVG)."""
    root = ET.parse(path).getroot()  # noqa: S314 (the harness just wrote this file)
    assert root.tag == f"{SVG}svg"
    ids = {el.get("id", "") for el in root.iter()}
    text = " ".join(el.text or "" for el in root.iter(f"{SVG}text"))
    return ids, text


def test_every_section_ran_and_the_summary_was_printed(run: Smoke) -> None:
    for section in ("drain", "latency", "footprint", "backlog", "blocked", "first_hour"):
        assert run.data.get(section), section
    assert "ratio" in run.stdout
    assert "summary (issue 10)" in run.stdout
    assert "operator / plain" in run.stdout


def test_drain_deletes_every_object_with_exactly_one_scp_delete_each(
    smoke: dict[str, Any],
) -> None:
    (drain,) = smoke["drain"]
    assert drain["n"] == 20
    for run in drain["runs"]:
        assert run["variant"] == "operator"
        assert run["all_gone"]
        assert run["gone"] == 20
        assert run["scp_deletes_per_deleted_object"] == 1
        assert run["objects_with_more_than_one_delete"] == 0
        assert run["scp_max_in_flight"] <= smoke["meta"]["concurrency"]
        assert len(run["gone_curve"]) == 20


def test_plain_baseline_drains_every_object_with_one_delete_each(smoke: dict[str, Any]) -> None:
    (drain,) = smoke["drain"]
    plain = drain["variants"]["plain"]
    assert plain["repeats"] == 1
    assert plain["all_gone"]
    assert plain["gone_min"] == 20
    for run in plain["runs"]:
        assert run["variant"] == "plain"
        assert run["scp_deletes_per_deleted_object"] == 1
        assert run["objects_with_more_than_one_delete"] == 0
        assert run["scp_max_in_flight"] <= smoke["meta"]["concurrency"]
        # The plain operator writes no status and posts no events: only Kopf's finalizer.
        assert "POST events" not in run["k8s_requests_drain"]["breakdown"]
        assert run["operator_cpu_ms_per_object"] > 0
    # Both drained against the same K8s-bound baseline, and were compared.
    assert plain["runs"][0]["k8s_bound"] == drain["runs"][0]["k8s_bound"]
    versus = drain["operator_vs_plain"]
    for key in ("ratio", "cpu_ms_per_object"):
        assert math.isfinite(versus[key]["median"])
        assert versus[key]["median"] > 0


def test_sharded_drain_deletes_each_server_once_across_shards(smoke: dict[str, Any]) -> None:
    (drain,) = smoke["drain"]
    # this operator has the shard settings: the 2-shard drain must have run, not been skipped
    assert "operator-2-shards" not in drain["skipped"], drain["skipped"]
    sharded = drain["variants"]["operator-2-shards"]
    assert sharded["all_gone"]
    assert sharded["gone_min"] == 20
    for run in sharded["runs"]:
        assert run["shards"] == 2
        assert len(run["per_process"]) == 2  # one process per shard, each measured
        assert all(p["cpu_seconds"] > 0 for p in run["per_process"])
        # Two shards never both delete a server.
        assert run["scp_deletes_per_deleted_object"] == 1
        assert run["objects_with_more_than_one_delete"] == 0


def test_drain_ratio_and_rates_are_finite_and_positive(smoke: dict[str, Any]) -> None:
    (drain,) = smoke["drain"]
    for value in (
        drain["median"]["ratio"],
        drain["median"]["drain_seconds"],
        drain["median"]["k8s_bound"],
        drain["median"]["objects_per_second"],
        drain["variants"]["plain"]["ratio"]["median"],
    ):
        assert isinstance(value, float | int)
        assert math.isfinite(value)
        assert value > 0


def test_drain_picture_is_an_svg_with_the_operator_the_plain_baseline_and_the_ideal(
    run: Smoke,
) -> None:
    (drain,) = run.data["drain"]
    path = run.output.with_name(drain["picture"])
    assert path.is_file()
    ids, text = _svg_ids(path)
    for series in ("series-ideal", "series-k8s-bound-0", "series-operator-0", "series-plain-0"):
        assert series in ids
    if not drain["skipped"]:
        assert "series-operator-2-shards-0" in ids
    assert "plain: ratio" in text
    assert "operator: ratio" in text


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


def test_backlog_handles_every_object_it_never_saw(run: Smoke) -> None:
    backlog = run.data["backlog"]
    assert backlog["objects"] == 20
    assert backlog["untouched_at_start"] == 20  # created while no operator ran
    assert backlog["all_handled"]
    assert backlog["handled"] == 20
    assert len(backlog["handled_curve"]) == 20
    assert backlog["scp_requests_per_object"] >= 1  # each server read once at least
    assert backlog["k8s_writes_per_object"] >= 1  # each finalizer added at least
    assert backlog["rss_samples"]
    assert backlog["peak_rss_mib"] >= backlog["settled_rss_mib"] > 0
    ids, _ = _svg_ids(run.output.with_name(backlog["picture"]))
    assert {"series-handled", "series-rss"} <= ids


def test_footprint_times_the_resume_and_a_deletion_after_each_restart(
    smoke: dict[str, Any],
) -> None:
    footprint = smoke["footprint"]
    resumed = [st for st in footprint["stages"] if st.get("resume")]
    assert [st["objects"] for st in resumed] == [10, 20]
    for stage in resumed:
        resume = stage["resume"]
        assert resume["objects"] == stage["objects"]
        assert resume["deletion_acted_on_seconds"] > 0
        assert resume["all_resumed_seconds"] >= resume["first_resumed_seconds"] > 0
        assert stage["memory_mib"]["rss"] > 0
    (growth,) = footprint["growth"]
    assert growth["objects_ratio"] == 2
    assert growth["deletion_acted_on_ratio"] > 0


def _check_heap(heap: dict[str, Any]) -> None:
    """A heap report (tools/bench/heap) that adds up: the bytes in use in pymalloc's arenas and
    the free space in them fit in the arenas, and the RSS holds at least what is in use."""
    py = heap["pymalloc"]
    assert py["arenas"] >= 1
    assert py["in_use"] + py["free_blocks"] + py["free_pools"] <= py["arenas"]
    assert heap["rss"] >= py["in_use"] > 0
    assert heap["gc_objects"] > 0


def test_settled_memory_is_broken_down_for_every_process(run: Smoke) -> None:
    for stage in run.data["footprint"]["stages"][1:]:
        _check_heap(stage["heap"])
    _check_heap(run.data["backlog"]["settled_heap"])
    assert "where the settled memory is" in run.stdout


def test_idle_latency_was_measured_for_every_sample(smoke: dict[str, Any]) -> None:
    latency = smoke["latency"]
    assert latency["latency_since_delete_request"]["count"] == latency["samples"] == 3
    assert latency["first_since_delete_request_ms"] > 0


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
    # one Kubernetes write per retry, on the real API server: the status patch, with no wake-up
    # "touch" from Kopf (issue 10; two before: handlers/pacing.py)
    per_retry = blocked["k8s_requests_per_retry"]
    assert per_retry["retries"] >= 1
    assert per_retry["writes_per_object"] <= 1.0, per_retry["breakdown"]
    hour = smoke["first_hour"]
    assert 0 < hour["calls_median"] <= hour["calls_max"] <= hour["calls_if_jitter_always_0"]
    assert hour["scp_calls_max_with_reads"] <= 20  # issue 10's bound for the first hour


def test_the_summary_puts_each_target_of_the_issue_beside_its_number(run: Smoke) -> None:
    """Issue 10's targets, read off the summary next to the smoke run's numbers, with the
    smoke's tiny sizes renamed to the sizes the issue names (5 000 and 10 000 objects)."""
    data = copy.deepcopy(run.data)
    stages = [st for st in data["footprint"]["stages"] if st["objects"]]
    sizes = (5000, 10000)
    for stage, size in zip(stages, sizes, strict=False):
        stage["objects"] = size
    for growth in data["footprint"].get("growth") or []:
        growth.update(from_objects=5000, to_objects=10000, objects_ratio=2)
    data["backlog"]["objects"] = 5000
    lines = [line.rstrip() for line in "\n".join(report.summary(data)).splitlines()]

    def target(label: str) -> str:
        (line,) = [line for line in lines if line.startswith(label)]
        return line.rsplit("  ", 1)[-1].strip()

    assert target("drain N=20 ratio to ideal, operator ") == "<= 2.0"
    assert target("drain N=20 CPU ms per object, operator ") == "<= 5"
    assert target("drain N=20 K8s writes per deleted object") == "<= 2"
    assert target("blocked object, K8s writes per retry") == "<= 1"
    assert target("5000 objects: settled RSS MiB") == "<= 150"
    assert target("5000 objects: resume, deletion acted on s") == "<= 30"
    if len(stages) > 1:
        assert target("10000 objects: settled RSS MiB") == "<= 200"
        assert target("resume t(10000)/t(5000)") == "<= 2.2 (linear)"
    assert target("backlog 5000: peak RSS MiB") == "<= 200"
    assert target("backlog 5000: settled RSS MiB") == "<= 150"
    assert target("blocked object, SCP calls in the first hour") == "<= 20"
