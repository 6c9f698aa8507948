"""Dry run, the blast-radius budget, metrics, health probes and who reports events, through the
real operator."""

from __future__ import annotations

import functools
import socket
from typing import Any

import httpx
import kopf
import pytest
from prometheus_client import REGISTRY

from scp_emulator.server import EmulatorServer
from scp_operator.metrics import BLOCKED
from scp_testenv import eventually, free_port
from tests.operator.conftest import FAST_ENV, running_operator
from tests.operator.kube import condition, create, delete, obj, patch

pytestmark = pytest.mark.operator


def deletes(emu: EmulatorServer) -> list[Any]:
    return emu.state.find_requests(method="DELETE")


async def test_dry_run_reports_and_deletes_nothing(
    k8s: Any,
    emulator: EmulatorServer,
    monkeypatch: pytest.MonkeyPatch,
    posted: list[dict[str, Any]],
) -> None:
    sid = emulator.state.add_server(name="dry").id
    async with running_operator(monkeypatch, emulator, SCP_OPERATOR_DRY_RUN="true"):
        await create(k8s, "dry", sid)
        await delete(k8s, "dry")
        cond = await eventually(lambda: condition(k8s, "dry", "Deleting"), what="condition")
        assert cond["reason"] == "DryRun"
        assert f"would delete server {sid}" in cond["message"]
        await eventually(lambda: any(e["reason"] == "DryRun" for e in posted), what="event")
        assert obj(k8s, "dry") is not None
    assert deletes(emulator) == []
    assert emulator.state.get_server(sid) is not None


async def test_blast_radius_budget_holds_the_excess_until_bypassed(
    k8s: Any, emulator: EmulatorServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    sids = [emulator.state.add_server(name=f"b{i}").id for i in range(3)]
    async with running_operator(
        monkeypatch,
        emulator,
        SCP_OPERATOR_MAX_DELETIONS_PER_WINDOW="1",
        SCP_OPERATOR_DELETION_WINDOW="3600",
    ):
        for i, sid in enumerate(sids):
            await create(k8s, f"b{i}", sid)
        for i in range(3):
            await delete(k8s, f"b{i}")
        await eventually(
            lambda: sum(obj(k8s, f"b{i}") is None for i in range(3)) == 1, what="one deleted"
        )
        held = [f"b{i}" for i in range(3) if obj(k8s, f"b{i}") is not None]
        for name in held:
            await eventually(
                lambda name=name: (
                    (condition(k8s, name, "Deleting") or {}).get("reason")
                    == "DeletionBudgetExhausted"
                ),
                what=f"{name} held",
            )
        assert len({c.server_id for c in deletes(emulator)}) == 1
        await patch(
            k8s,
            held[0],
            {"metadata": {"annotations": {"virtualserver.scp.dev/bypass-deletion-budget": "true"}}},
        )
        await eventually(lambda: obj(k8s, held[0]) is None, within=30, what="bypassed one goes")
        assert obj(k8s, held[1]) is not None


def _value(text: str, series: str) -> float:
    for line in text.splitlines():
        if line.startswith(series + " "):
            return float(line.split()[-1])
    raise AssertionError(f"{series} not in the metrics")


async def _delete_one_hold_one(k8s: Any, gone: tuple[str, str], held: tuple[str, str]) -> None:
    """Create and delete two objects, (name, server id) each; wait until the first is gone (the
    second's server is locked: it stays)."""
    for name, server_id in (gone, held):
        await create(k8s, name, server_id)
    for name, _ in (gone, held):
        await delete(k8s, name)
    await eventually(lambda: obj(k8s, gone[0]) is None, what="deleted")


async def test_metrics_endpoint_counts_requests_and_outcomes(
    k8s: Any, emulator: EmulatorServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    port = free_port()
    blocked_before = BLOCKED.labels("ServerLocked")._value.get()
    sid = emulator.state.add_server(name="m").id
    locked = emulator.state.add_server(name="ml", locked=True).id
    async with running_operator(monkeypatch, emulator, SCP_OPERATOR_METRICS_PORT=str(port)):
        await _delete_one_hold_one(k8s, ("m", sid), ("ml", locked))
        await eventually(
            lambda: (condition(k8s, "ml", "Deleting") or {}).get("reason") == "ServerLocked",
            what="blocked",
        )
        async with httpx.AsyncClient() as http:
            text = (await http.get(f"http://127.0.0.1:{port}/metrics")).text
    assert 'scp_operator_scp_requests_total{account="default",code="202",method="DELETE"}' in text
    assert 'scp_operator_scp_requests_total{account="default",code="409",method="DELETE"}' in text
    assert 'scp_operator_deletions_total{outcome="DeleteAccepted"}' in text
    # the registry is process-wide: other tests' held objects count too, so compare to before
    assert _value(text, 'scp_operator_blocked_objects{reason="ServerLocked"}') == blocked_before + 1
    assert 'scp_operator_retries_total{reason="ServerLocked"}' in text
    assert 'scp_operator_api_version_info{support="current",version="1.3"} 1.0' in text
    assert "scp_operator_scp_request_duration_seconds_bucket" in text


async def test_a_busy_metrics_port_stops_startup_naming_the_variable(
    k8s: Any,
    emulator: EmulatorServer,
    monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
) -> None:
    with socket.socket() as busy:
        busy.bind(("0.0.0.0", 0))  # noqa: S104  (the operator binds all interfaces too)
        busy.listen()
        port = busy.getsockname()[1]
        with pytest.raises(Exception, match="handlers failed"):
            async with running_operator(monkeypatch, emulator, SCP_OPERATOR_METRICS_PORT=str(port)):
                pass
    failed = [r.getMessage() for r in caplog.records if "failed permanently" in r.getMessage()]
    assert failed
    assert f"SCP_OPERATOR_METRICS_PORT: cannot serve metrics on port {port}" in failed[0]


def _duration_count(outcome: str) -> float:
    value = REGISTRY.get_sample_value(
        "scp_operator_deletion_duration_seconds_count", {"outcome": outcome}
    )
    return value or 0.0


async def test_metrics_show_build_info_deletion_durations_and_the_oldest_hold(
    k8s: Any, emulator: EmulatorServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    port = free_port()
    accepted_before = _duration_count("DeleteAccepted")
    sid = emulator.state.add_server(name="t").id
    locked = emulator.state.add_server(name="tl", locked=True).id
    async with running_operator(monkeypatch, emulator, SCP_OPERATOR_METRICS_PORT=str(port)):
        await _delete_one_hold_one(k8s, ("t", sid), ("tl", locked))
        # held, whatever the reason is called (the condition is written after the hold counts)
        await eventually(lambda: condition(k8s, "tl", "Deleting") is not None, what="held")
        async with httpx.AsyncClient() as http:
            text = (await http.get(f"http://127.0.0.1:{port}/metrics")).text
    assert "scp_operator_build_info{" in text
    assert 'python_version="' in text
    # the released object's wait since its deletionTimestamp was observed over HTTP
    series = 'scp_operator_deletion_duration_seconds_count{outcome="DeleteAccepted"}'
    assert _value(text, series) == accepted_before + 1
    # the held object is this operator's oldest hold (a stopped operator's tracker is not shown)
    assert _value(text, "scp_operator_oldest_blocked_seconds") > 0
    assert REGISTRY.get_sample_value("scp_operator_oldest_blocked_seconds") == 0.0  # stopped


async def test_the_liveness_endpoint_reports_scp_and_credentials(
    k8s: Any, emulator: EmulatorServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    port = free_port()
    url = f"http://127.0.0.1:{port}/healthz"
    # the `--liveness` flag of `kopf run`, given to the in-process operator
    monkeypatch.setattr(kopf, "operator", functools.partial(kopf.operator, liveness_endpoint=url))
    sid = emulator.state.add_server(name="lv").id
    async with running_operator(monkeypatch, emulator):
        await create(k8s, "lv", sid)
        await delete(k8s, "lv")
        await eventually(lambda: obj(k8s, "lv") is None, what="deleted")
        async with httpx.AsyncClient() as http:
            answer = await http.get(url)
    assert answer.status_code == 200
    health = answer.json()
    assert health["credentials"] == {"state": "loaded", "source": "environment"}
    assert health["scp"]["state"] == "answered"
    assert health["scp"]["code"] in {"200", "202", "404"}
    assert {"at", "ageSeconds"} <= set(health["scp"])
    assert FAST_ENV["SCP_SECRET_KEY"] not in answer.text


async def test_events_are_reported_by_scp_operator(
    k8s: Any, emulator: EmulatorServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    locked = emulator.state.add_server(name="ev", locked=True).id
    async with running_operator(monkeypatch, emulator):
        await create(k8s, "ev", locked)
        await delete(k8s, "ev")
        await eventually(lambda: bool(_posted_events(k8s)), what="an event posted")
    for event in _posted_events(k8s):
        assert event["reportingComponent"] == "scp-operator"
        assert event["source"]["component"] == "scp-operator"


def _posted_events(k8s: Any) -> list[dict[str, Any]]:
    """Events as the operator sent them (kmock keeps every request, not every event)."""
    return [
        request.data
        for request in list(k8s)
        if request.method == "POST" and request.url.path.endswith("/events")
    ]


async def test_an_unknown_variable_is_named_once_at_startup(
    k8s: Any,
    emulator: EmulatorServer,
    monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
) -> None:
    async with running_operator(monkeypatch, emulator, SCP_OPERATOR_DRYRUN="true"):
        pass
    warnings = [r.getMessage() for r in caplog.records if "Unknown SCP_*" in r.getMessage()]
    assert warnings == [
        "Unknown SCP_* environment variable(s), ignored: "
        "SCP_OPERATOR_DRYRUN (did you mean SCP_OPERATOR_DRY_RUN?)"
    ]
