"""The benchmark's sections: drain, idle latency, footprint and blocked object.

Every section starts its own operator process watching a fresh namespace, so sections and
repeats do not share state. Times are wall-clock epoch seconds on this machine; the emulator's
request log uses the same clock.
"""

from __future__ import annotations

import asyncio
import collections
import dataclasses
import itertools
import math
import statistics
import time
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any

from scp_emulator.requestlog import RequestLogEntry
from scp_operator.backoff import Schedule
from scp_operator.constants import API_VERSION, FINALIZER, KIND
from scp_operator.handlers.facts import REREAD_EVERY
from tools.bench import procfs
from tools.bench.env import Bench, BenchOperator, random_server_ids
from tools.bench.kube import (
    WRITE_VERBS,
    AuditRequest,
    Key,
    Tracker,
    audit_counts,
    parse_time,
    request_totals,
    summarize,
    vs_path,
)
from tools.bench.schedule import gap_bounds, predict

HOLD_FINALIZER = "bench.scp.dev/hold"  # the K8s-bound baseline's own finalizer
KOPF_FINALIZER = "kopf.zalando.org/KopfFinalizerMarker"  # Kopf's default: the plain baseline's


def quantile(values: list[float], q: float) -> float | None:
    """Nearest-rank quantile (None for no data)."""
    if not values:
        return None
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, max(0, math.ceil(q * len(ordered)) - 1))]


def ms_summary(seconds: list[float]) -> dict[str, Any]:
    return {
        "count": len(seconds),
        "p50_ms": _ms(quantile(seconds, 0.5)),
        "p99_ms": _ms(quantile(seconds, 0.99)),
        "max_ms": _ms(max(seconds) if seconds else None),
    }


def _ms(value: float | None) -> float | None:
    return None if value is None else round(value * 1000, 1)


def scp_by_method(entries: list[RequestLogEntry], ids: set[str]) -> dict[str, int]:
    counts: collections.Counter[str] = collections.Counter(
        f"{e.method} {e.status}" for e in entries if e.server_id in ids
    )
    return dict(sorted(counts.items()))


def _handled(count: int) -> Callable[[Tracker], bool]:
    """All ``count`` objects carry the finalizer and the operator's observed status."""
    return lambda t: t.count("finalized") >= count and t.count("observed") >= count


def _finalized(count: int) -> Callable[[Tracker], bool]:
    """All ``count`` objects carry the finalizer (the plain baseline writes no status)."""
    return lambda t: t.count("finalized") >= count


def _gone(name: str) -> Callable[[Tracker], bool]:
    return lambda t: t.objects[name].gone is not None


async def _settle(bench: Bench) -> None:
    await bench.audit.wait_quiet(quiet=2.0, within=120.0)


def _in_window(requests: list[AuditRequest], start: float, end: float) -> list[AuditRequest]:
    return [r for r in requests if start <= r.received < end]


# ---- drain -----------------------------------------------------------------------------------


async def k8s_bound(bench: Bench, n: int, within: float) -> dict[str, Any]:
    """The fastest the API server lets N objects go: create them with a finalizer, delete the
    collection, and remove each finalizer with one JSON patch as soon as the watch shows the
    object terminating — the minimum writes a finalizer-holding controller needs."""
    kube = bench.k
    ns = await bench.namespace("k8s")
    tasks: list[asyncio.Task[Any]] = []
    patched: set[str] = set()
    patch = [{"op": "remove", "path": "/metadata/finalizers"}]

    def react(kind: str, obj: dict[str, Any]) -> None:
        meta = obj.get("metadata") or {}
        name = meta.get("name", "")
        if (
            kind != "DELETED"
            and meta.get("deletionTimestamp")
            and HOLD_FINALIZER in (meta.get("finalizers") or [])
            and name not in patched
        ):
            patched.add(name)
            call = kube.call(
                "PATCH", vs_path(ns, name), patch, content_type="application/json-patch+json"
            )
            tasks.append(asyncio.create_task(call))

    tracker = Tracker(kube, ns, HOLD_FINALIZER, on_event=react)
    await tracker.start()
    try:
        await bench.create_objects(ns, random_server_ids(n), finalizer=HOLD_FINALIZER)
        await tracker.wait(lambda t: t.count("finalized") >= n, within, f"{n} baseline objects")
        meter = bench.meter()
        t0 = time.time()
        delete = await bench.delete_all(ns)
        await tracker.wait(lambda t: t.count("gone") >= n, within, "baseline objects gone")
        end = max(t.gone or 0.0 for t in tracker.objects.values())
        load = meter.stop()
        answered = await delete
        await asyncio.gather(*tasks)
    finally:
        await tracker.stop()
    last_marked = max((t.marked or t0) - t0 for t in tracker.objects.values())
    return {
        "namespace": ns,
        "seconds": round(end - t0, 3),
        "deletecollection_answered_s": round(answered - t0, 3),
        "last_marked_s": round(last_marked, 3),
        "gone_curve": _curve((t.gone for t in tracker.objects.values()), t0),
        "writes": 1 + len(tasks),
        "load": load.as_dict(),
    }


@dataclasses.dataclass(frozen=True)
class Variant:
    """Who drains: the operator (``shards`` processes) or the plain Kopf baseline."""

    name: str
    plain: bool = False
    shards: int = 1


OPERATOR = Variant("operator")
PLAIN = Variant("plain", plain=True)


def variants_for(shards: list[int]) -> list[Variant]:
    """The operator, the plain baseline, and the operator with each extra shard count."""
    extra = [Variant(f"operator-{k}-shards", shards=k) for k in sorted(set(shards)) if k > 1]
    return [OPERATOR, PLAIN, *extra]


async def drain_run(
    bench: Bench, n: int, variant: Variant, tag: str, within: float
) -> dict[str, Any]:
    """N objects held by the operator (or the plain baseline), deleted at once; everything
    measured in one pass."""
    kube = bench.k
    ns = await bench.namespace("plain" if variant.plain else "drain")
    server_ids = bench.seed(n)
    by_id = dict(zip(server_ids, [f"vs-{i:05d}" for i in range(n)], strict=True))
    if variant.plain:
        procs = [await bench.start_plain(ns, tag)]
        finalizer, handled = KOPF_FINALIZER, _finalized(n)
    else:
        procs = await bench.start_shards(ns, tag, variant.shards)
        finalizer, handled = FINALIZER, _handled(n)
    pids = [p.proc.pid for p in procs if p.proc is not None]
    tracker = Tracker(kube, ns, finalizer)
    await tracker.start()
    try:
        # Creation: the finalizer and (the operator only) what SCP says (status.server).
        audit_start, created_at = bench.audit.offset(), time.time()
        log_start = bench.log_index()
        await bench.create_objects(ns, server_ids)
        await tracker.wait(handled, within, f"{n} objects handled by {variant.name}")
        ready = max(max(t.finalized or 0, t.observed or 0) for t in tracker.objects.values())
        await _settle(bench)
        create_counts = audit_counts(bench.audit.read(audit_start))
        create_scp = scp_by_method(bench.log_since(log_start), set(server_ids))

        # The drain.
        audit_start, log_start = bench.audit.offset(), bench.log_index()
        totals_before = request_totals(await kube.metrics_text())
        own_before = collections.Counter(kube.own)
        bench.probe_reset()
        cpu_before = [procfs.cpu_seconds(pid) for pid in pids]
        meter = bench.meter(*procs)
        t0 = time.time()
        delete = await bench.delete_all(ns)
        await tracker.wait(lambda t: t.count("gone") >= n, within, f"{n} objects gone")
        end = max(t.gone or 0.0 for t in tracker.objects.values())
        load = meter.stop()
        delete_answered = await delete
        cpu = [procfs.cpu_seconds(pid) - c for pid, c in zip(pids, cpu_before, strict=True)]
        memory = [procfs.memory_mib(pid) for pid in pids]
        connections = [bench.connections(p) for p in procs]
        await _settle(bench)
        totals_after = request_totals(await kube.metrics_text())
        own_diff = collections.Counter(kube.own)
        own_diff.subtract(own_before)
        drain_requests = bench.audit.read(audit_start)
        entries = bench.log_since(log_start)
        max_in_flight, per_server = bench.probe_read()
        operator_metrics = [await bench.operator_metrics(p) for p in procs]
    finally:
        await tracker.stop()
        for proc in procs:
            await bench.stop_operator(proc)

    # Kubernetes requests: the audit log (exact, the operator's identity only) and, as a check,
    # apiserver_request_total minus the harness's own requests in the same window.
    by_metrics: collections.Counter[Key] = collections.Counter(totals_after)
    by_metrics.subtract(totals_before)
    by_metrics.subtract(own_diff)
    by_audit = audit_counts(drain_requests)
    audit_writes = sum(v for (verb, _), v in by_audit.items() if verb in WRITE_VERBS)
    metric_writes = sum(v for (verb, _), v in by_metrics.items() if verb in WRITE_VERBS)

    deletes = [e for e in entries if e.method == "DELETE" and e.server_id in by_id]
    per_object = collections.Counter(e.server_id for e in deletes)
    since_marked, since_request = [], []
    for entry in deletes:
        times = tracker.objects.get(by_id[entry.server_id or ""])
        arrived = parse_time(entry.time)
        since_request.append(arrived - t0)
        if times is not None and times.marked is not None:
            since_marked.append(arrived - times.marked)
    gone = tracker.count("gone")
    marked = [t.marked - t0 for t in tracker.objects.values() if t.marked is not None]
    sent = [parse_time(e.time) - t0 for e in deletes]
    operator_cpu = sum(cpu)
    return {
        "variant": variant.name,
        "shards": variant.shards,
        "namespace": ns,
        "n": n,
        "all_gone": gone >= n,
        "gone": gone,
        "create_seconds": round(ready - created_at, 3),
        "drain_seconds": round(end - t0, 3),
        "deletecollection_answered_s": round(delete_answered - t0, 3),
        # Where the time went: the API server marking objects (as the watch shows them), the
        # operator sending DELETEs, and the finalizers coming off (all from t0).
        "last_marked_s": round(max(marked, default=0.0), 3),
        "last_delete_sent_s": round(max(sent, default=0.0), 3),
        # The pictures' curves: when each object went, and when its DELETE reached SCP.
        "gone_curve": _curve((t.gone for t in tracker.objects.values()), t0),
        "delete_curve": sorted(round(s, 3) for s in sent),
        "operator_cpu_share": round(operator_cpu / max(end - t0, 1e-9), 2),
        "operator_cpu_ms_per_object": round(1000 * operator_cpu / n, 2),
        "objects_per_second": round(n / max(end - t0, 1e-9), 2),
        "k8s_requests_create": summarize(create_counts, n),
        "k8s_requests_drain": summarize(by_audit, n),
        "k8s_requests_drain_by_apiserver_metrics": summarize(
            collections.Counter({k: v for k, v in by_metrics.items() if v}), n
        ),
        "k8s_write_counts_agree": audit_writes == metric_writes,
        "scp_requests_create": create_scp,
        "scp_requests_drain": scp_by_method(entries, set(server_ids)),
        "scp_deletes_per_deleted_object": round(len(deletes) / max(gone, 1), 3),
        "objects_with_more_than_one_delete": sum(1 for v in per_object.values() if v > 1),
        "scp_max_in_flight": max_in_flight,
        "scp_max_in_flight_per_server": max(per_server.values(), default=0),
        "latency_since_marked": ms_summary(since_marked),
        "latency_since_delete_request": ms_summary(since_request),
        "operator_cpu_seconds": round(operator_cpu, 2),
        "operator_memory_mib": {k: round(v, 1) for k, v in memory[0].items()},
        "operator_connections": connections[0],
        # One entry per process (per shard); the CPU per object is over all N objects.
        "per_process": [
            {
                "cpu_seconds": round(c, 2),
                "cpu_ms_per_object": round(1000 * c / n, 2),
                "memory_mib": {k: round(v, 1) for k, v in m.items()},
                "connections": conns,
            }
            for c, m, conns in zip(cpu, memory, connections, strict=True)
        ],
        "load": load.as_dict(),
        "operator_metrics": operator_metrics[0],
    }


def _curve(times: Iterable[float | None], t0: float) -> list[float]:
    """Sorted offsets from ``t0`` of the times that happened (the curves of the pictures)."""
    return sorted(round(t - t0, 3) for t in times if t is not None)


def spread(values: list[float]) -> dict[str, float | None]:
    """Median, min and max (None for no data): what the table shows as ``m [min-max]``."""
    if not values:
        return {"median": None, "min": None, "max": None}
    return {
        "median": round(statistics.median(values), 3),
        "min": round(min(values), 3),
        "max": round(max(values), 3),
    }


def variant_summary(runs: list[dict[str, Any]]) -> dict[str, Any]:
    """One variant's repeats: ratio and CPU per object as median [min-max], and its runs."""
    processes = max((len(r["per_process"]) for r in runs), default=0)
    return {
        "repeats": len(runs),
        "all_gone": all(r["all_gone"] for r in runs),
        "gone_min": min((r["gone"] for r in runs), default=0),
        "ratio": spread([r["ratio"] for r in runs]),
        "drain_seconds": spread([r["drain_seconds"] for r in runs]),
        "cpu_ms_per_object": spread([r["operator_cpu_ms_per_object"] for r in runs]),
        # Per shard: CPU ms per object of the whole N (each process's own share of the work).
        "cpu_ms_per_object_by_process": [
            spread(
                [
                    r["per_process"][i]["cpu_ms_per_object"]
                    for r in runs
                    if i < len(r["per_process"])
                ]
            )
            for i in range(processes)
        ],
        "scp_deletes_per_deleted_object": spread(
            [r["scp_deletes_per_deleted_object"] for r in runs]
        ),
        "runs": runs,
    }


async def drain(
    bench: Bench,
    n: int,
    repeat: int,
    latency_ms: float,
    concurrency: int,
    shards: list[int] | None = None,
) -> dict[str, Any]:
    """Repeated drains of N objects, each repeat with its own K8s-bound baseline and, against
    the same baseline, the operator, the plain Kopf baseline and the operator with each extra
    shard count (alternating order: first to last, then last to first)."""
    scp_bound = math.ceil(n / concurrency) * latency_ms / 1000
    timeout = max(300.0, 40 * scp_bound + n * 0.2)
    variants = variants_for(shards or [1])
    skipped: dict[str, str] = {}
    if any(v.shards > 1 for v in variants) and not bench.supports_shards:
        skipped = {
            v.name: "this operator has no SCP_OPERATOR_SHARDS/SCP_OPERATOR_SHARD_INDEX settings"
            for v in variants
            if v.shards > 1
        }
        variants = [v for v in variants if v.shards == 1]
    runs: dict[str, list[dict[str, Any]]] = {v.name: [] for v in variants}
    orders = []
    for r in range(repeat):
        baseline = await k8s_bound(bench, n, timeout)
        order = variants if r % 2 == 0 else variants[::-1]
        orders.append([v.name for v in order])
        for variant in order:
            run = await drain_run(bench, n, variant, f"drain-{n}-{r}-{variant.name}", timeout)
            ideal = max(scp_bound, baseline["seconds"])
            run["repeat"] = r
            run["k8s_bound"] = baseline
            run["scp_bound_seconds"] = scp_bound
            run["ideal_seconds"] = round(ideal, 3)
            run["ratio"] = round(run["drain_seconds"] / ideal, 3) if ideal > 0 else math.inf
            runs[variant.name].append(run)
    ops, plains = runs[OPERATOR.name], runs[PLAIN.name]
    return {
        "n": n,
        "latency_ms": latency_ms,
        "concurrency": concurrency,
        "order": orders,
        # The operator (one process): as before, so older readers of the JSON keep working.
        "runs": ops,
        "median": {
            key: statistics.median(r[key] if key != "k8s_bound" else r[key]["seconds"] for r in ops)
            for key in (
                "drain_seconds",
                "objects_per_second",
                "k8s_bound",
                "ideal_seconds",
                "ratio",
                "operator_cpu_seconds",
                "operator_cpu_ms_per_object",
            )
        },
        "min_ratio": min(r["ratio"] for r in ops),
        "max_ratio": max(r["ratio"] for r in ops),
        "variants": {
            name: variant_summary(rs if name != OPERATOR.name else ops) for name, rs in runs.items()
        },
        # Per repeat, the operator against the plain baseline drained against the same
        # K8s-bound baseline: > 1 means the operator is slower / costs more CPU.
        "operator_vs_plain": {
            "ratio": spread([o["ratio"] / p["ratio"] for o, p in zip(ops, plains, strict=True)]),
            "cpu_ms_per_object": spread(
                [
                    o["operator_cpu_ms_per_object"] / max(p["operator_cpu_ms_per_object"], 1e-9)
                    for o, p in zip(ops, plains, strict=True)
                ]
            ),
        },
        "skipped": skipped,
    }


# ---- latency while idle ----------------------------------------------------------------------


async def idle_latency(bench: Bench, samples: int, within: float = 120.0) -> dict[str, Any]:
    """One object deleted at a time on an idle operator: deletion request -> DELETE at SCP."""
    kube = bench.k
    ns = await bench.namespace("idle")
    server_ids = bench.seed(samples)
    operator = await bench.start_operator(ns, "idle")
    tracker = Tracker(kube, ns, FINALIZER)
    await tracker.start()
    since_request, since_marked, to_gone = [], [], []
    try:
        names = await bench.create_objects(ns, server_ids)
        await tracker.wait(
            _handled(samples),
            within,
            "idle objects observed",
        )
        await _settle(bench)
        for name, server_id in zip(names, server_ids, strict=True):
            log_start = bench.log_index()
            sent = time.time()
            await kube.call("DELETE", vs_path(ns, name))
            await tracker.wait(_gone(name), within, f"{name} gone")
            times = tracker.objects[name]
            hits = [
                e
                for e in bench.log_since(log_start)
                if e.method == "DELETE" and e.server_id == server_id
            ]
            if hits:
                arrived = parse_time(hits[0].time)
                since_request.append(arrived - sent)
                if times.marked is not None:
                    since_marked.append(arrived - times.marked)
            to_gone.append((times.gone or sent) - sent)
            await asyncio.sleep(0.5)
    finally:
        await tracker.stop()
        await bench.stop_operator(operator)
    return {
        "samples": samples,
        # The first deletion after the operator started pays one-time costs (client set-up).
        "first_since_delete_request_ms": _ms(since_request[0] if since_request else None),
        "warm_since_delete_request": ms_summary(since_request[1:]),
        "latency_since_delete_request": ms_summary(since_request),
        "latency_since_marked": ms_summary(since_marked),
        "delete_request_to_gone": ms_summary(to_gone),
    }


# ---- footprint and resume --------------------------------------------------------------------

PROBE_PREFIX = "probe-"  # the footprint's resume probes; the watched objects are "vs-..."


def _handled_watched(count: int) -> Callable[[Tracker], bool]:
    """As :func:`_handled`, over the watched objects only (not the resume probes)."""

    def check(t: Tracker) -> bool:
        done = [
            name
            for name, times in t.objects.items()
            if name.startswith("vs-") and times.finalized is not None and times.observed
        ]
        return len(done) >= count

    return check


async def footprint(
    bench: Bench,
    sizes: list[int],
    latency_ms: float,
    concurrency: int,
    idle_window: float = 10.0,
) -> dict[str, Any]:
    """Operator RSS and CPU with growing numbers of watched objects; after each step, the
    operator is restarted and the resume of every object is timed, together with how soon the
    new process acts on a deletion made while no operator ran (the resume probe)."""
    kube = bench.k
    ns = await bench.namespace("footprint")
    tracker = Tracker(kube, ns, FINALIZER)
    await tracker.start()
    stages: list[dict[str, Any]] = []
    total, all_ids = 0, list[str]()
    probe: tuple[str, str] | None = None  # (name, server id) deleted before the next start
    try:
        for step, size in enumerate(sorted(sizes)):
            add = size - total
            if add <= 0:
                continue
            if probe is not None:
                await kube.call("DELETE", vs_path(ns, probe[0]))
            operator = await bench.start_operator(ns, f"footprint-{size}")
            assert operator.proc is not None
            pid = operator.proc.pid
            try:
                if step == 0:
                    stages.append({"objects": 0, "memory_mib": _memory(pid)})
                else:
                    stages[-1]["resume"] = await _resume(bench, operator, ns, total, all_ids, probe)
                server_ids = bench.seed(add, prefix=f"fp{size}")
                all_ids += server_ids
                cpu0, t0 = procfs.cpu_seconds(pid), time.time()
                meter = bench.meter(operator)
                await bench.create_objects(ns, server_ids, first=total)
                total = size
                await tracker.wait(
                    _handled_watched(size), max(300.0, add * 0.5), f"{size} observed"
                )
                handled = time.time() - t0
                load = meter.stop()
                await _settle(bench)
                cpu_handling = procfs.cpu_seconds(pid) - cpu0
                idle0 = procfs.cpu_seconds(pid)
                await asyncio.sleep(idle_window)
                idle_cores = (procfs.cpu_seconds(pid) - idle0) / idle_window
                memory = _memory(pid)
                stages.append(
                    {
                        "objects": size,
                        "added": add,
                        "handling_seconds": round(handled, 2),
                        "cpu_seconds_handling": round(cpu_handling, 2),
                        "cpu_ms_per_object": round(1000 * cpu_handling / add, 2),
                        "idle_cpu_cores": round(idle_cores, 4),
                        # after the step was handled, API traffic quiet and the idle window
                        "memory_mib": memory,
                        "heap": await bench.heap(operator),
                        "connections": bench.connections(operator),
                        "load": load.as_dict(),
                    }
                )
                probe = await _new_probe(bench, tracker, ns, size)
            finally:
                await bench.stop_operator(operator)
        # The last step's resume, by a fresh process.
        if probe is not None:
            await kube.call("DELETE", vs_path(ns, probe[0]))
        operator = await bench.start_operator(ns, f"footprint-{total}-resume")
        try:
            stages[-1]["resume"] = await _resume(bench, operator, ns, total, all_ids, probe)
        finally:
            await bench.stop_operator(operator)
    finally:
        await tracker.stop()
    resumed = [st for st in stages if st.get("resume")]
    growth = [
        {
            "from_objects": a["objects"],
            "to_objects": b["objects"],
            "objects_ratio": round(b["objects"] / a["objects"], 3),
            "deletion_acted_on_ratio": _ratio(
                b["resume"].get("deletion_acted_on_seconds"),
                a["resume"].get("deletion_acted_on_seconds"),
            ),
            "all_resumed_ratio": _ratio(
                b["resume"]["all_resumed_seconds"], a["resume"]["all_resumed_seconds"]
            ),
            "settled_rss_ratio": _ratio(b["memory_mib"]["rss"], a["memory_mib"]["rss"]),
        }
        for a, b in itertools.pairwise(resumed)
    ]
    return {
        "namespace": ns,
        "latency_ms": latency_ms,
        "concurrency": concurrency,
        "idle_window_seconds": idle_window,
        "stages": stages,
        "resume": stages[-1]["resume"],
        "growth": growth,
    }


def _ratio(a: float | None, b: float | None) -> float | None:
    return round(a / b, 3) if a is not None and b else None


async def _new_probe(bench: Bench, tracker: Tracker, ns: str, size: int) -> tuple[str, str]:
    """One more object, handled by the running operator, to be deleted while none runs."""
    (server_id,) = bench.seed(1, prefix=f"probe{size}")
    name = f"{PROBE_PREFIX}{size}"
    body = {
        "apiVersion": API_VERSION,
        "kind": KIND,
        "metadata": {"name": name},
        "spec": {"serverId": server_id},
    }
    await bench.k.call("POST", vs_path(ns), body)
    await tracker.wait(
        lambda t: name in t.objects and t.objects[name].observed is not None,
        120.0,
        f"resume probe {name} observed",
    )
    await _settle(bench)
    return name, server_id


class LogFollower:
    """The complete lines added to a log file since the last call (a 10 000-object resume
    writes megabytes; reading it whole five times a second would cost the operator CPU)."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self._offset = 0
        self._partial = b""

    def new_lines(self) -> list[str]:
        try:
            with self.path.open("rb") as f:
                f.seek(self._offset)
                data = f.read()
        except FileNotFoundError:
            return []
        self._offset += len(data)
        *complete, self._partial = (self._partial + data).split(b"\n")
        return [line.decode(errors="replace") for line in complete]


def _memory(pid: int) -> dict[str, float]:
    return {k: round(v, 1) for k, v in procfs.memory_mib(pid).items()}


async def _resume(
    bench: Bench,
    operator: BenchOperator,
    ns: str,
    objects: int,
    server_ids: list[str],
    probe: tuple[str, str] | None = None,
) -> dict[str, Any]:
    """Time from the (just started) process's start to "Resuming is processed" for every
    watched object, and to the SCP DELETE of the probe (deleted before the start); its CPU,
    memory and requests."""
    assert operator.proc is not None
    assert operator.started_at is not None
    pid, started = operator.proc.pid, operator.started_at
    # start() returns a second after the ready line (it gives Kopf a moment to list and watch).
    ready = operator.ready_at - started - 1.0 if operator.ready_at else None
    audit_start, log_start = operator.audit_offset, operator.log_offset
    meter = bench.meter(operator)
    deadline = time.monotonic() + max(600.0, objects * 0.5)
    first, acted_on, scanned = None, None, log_start
    marker = f"[{ns}/vs-"  # Kopf's object prefix: the watched objects, not the probe
    resumed_names: set[str] = set()
    lines = LogFollower(operator.log_path)
    while True:
        for line in lines.new_lines():
            if "Resuming is processed" in line and marker in line:
                resumed_names.add(line.split(marker, 1)[1].split("]", 1)[0])
        count = len(resumed_names)
        if first is None and count:
            first = time.time() - started
        if probe is not None and acted_on is None:
            new = bench.log_since(scanned)
            scanned += len(new)
            hits = [e for e in new if e.method == "DELETE" and e.server_id == probe[1]]
            if hits:
                acted_on = parse_time(hits[0].time) - started
        if count >= objects and (probe is None or acted_on is not None):
            break
        if time.monotonic() > deadline:
            raise TimeoutError(f"resume of {objects} objects did not finish ({count} resumed)")
        await asyncio.sleep(0.2)
    resumed = time.time() - started
    load = meter.stop()
    cpu = procfs.cpu_seconds(pid)
    memory = _memory(pid)
    connections = bench.connections(operator)
    await _settle(bench)
    return {
        "objects": objects,
        "ready_line_seconds": round(ready, 2) if ready is not None else None,
        "first_resumed_seconds": round(first if first is not None else resumed, 2),
        "all_resumed_seconds": round(resumed, 2),
        # From starting the process to the arrival at SCP of the DELETE for an object deleted
        # while no operator ran: how long a restart keeps a new deletion waiting.
        "deletion_acted_on_seconds": round(acted_on, 2) if acted_on is not None else None,
        "scp_bound_seconds": round(
            math.ceil(objects / bench.options.concurrency) * bench.options.latency_ms / 1000, 2
        ),
        "cpu_seconds": round(cpu, 2),
        "memory_mib": memory,
        "connections": connections,
        "k8s_requests": summarize(audit_counts(bench.audit.read(audit_start)), objects),
        "scp_requests": scp_by_method(bench.log_since(log_start), set(server_ids)),
        "load": load.as_dict(),
    }


# ---- a backlog: objects created while no operator ran ----------------------------------------


async def backlog(
    bench: Bench, n: int, settle_seconds: float = 30.0, within: float | None = None
) -> dict[str, Any]:
    """N objects created while no operator runs (never observed: no finalizer, no status),
    then the operator is started on them: its peak and settled memory, the time until every
    object is handled (finalizer and ``status.server``), and what that cost SCP and the API
    server per object."""
    kube = bench.k
    ns = await bench.namespace("backlog")
    server_ids = bench.seed(n, prefix="backlog")
    tracker = Tracker(kube, ns, FINALIZER)
    await tracker.start()
    limit = within if within is not None else max(600.0, n * 0.5)
    try:
        await bench.create_objects(ns, server_ids)
        await tracker.wait(lambda t: len(t.objects) >= n, limit, f"{n} backlog objects listed")
        untouched = sum(
            1 for t in tracker.objects.values() if t.finalized is None and t.observed is None
        )
        operator = await bench.start_operator(ns, "backlog", rss_every=0.5)
        assert operator.proc is not None
        assert operator.started_at is not None
        assert operator.rss is not None
        pid, started, sampler = operator.proc.pid, operator.started_at, operator.rss
        try:
            meter = bench.meter(operator)
            await tracker.wait(_handled(n), limit, f"{n} backlog objects handled")
            handled_times = [
                max(t.finalized or 0.0, t.observed or 0.0) for t in tracker.objects.values()
            ]
            load = meter.stop()
            cpu_handling = procfs.cpu_seconds(pid)
            await _settle(bench)
            await asyncio.sleep(settle_seconds)
            memory = _memory(pid)
            heap = await bench.heap(operator)
        finally:
            samples = sampler.stop()
            await bench.stop_operator(operator)
        requests = bench.audit.read(operator.audit_offset)
        ids = set(server_ids)
        entries = [e for e in bench.log_since(operator.log_offset) if e.server_id in ids]
    finally:
        await tracker.stop()
    done = max(handled_times)
    k8s = summarize(audit_counts(requests), n)
    return {
        "namespace": ns,
        "objects": n,
        "untouched_at_start": untouched,
        "all_handled": tracker.count("finalized") >= n and tracker.count("observed") >= n,
        "handled": min(tracker.count("finalized"), tracker.count("observed")),
        # From starting the process (and from its ready line) to the last object handled.
        "handled_seconds": round(done - started, 2),
        "handled_after_ready_seconds": round(done - (operator.ready_at or started) + 1.0, 2),
        "handled_curve": _curve(handled_times, started),
        "peak_rss_mib": memory["peak_rss"],  # VmHWM: the process's peak, sampled or not
        "settled_rss_mib": memory["rss"],  # after the API traffic went quiet + settle_seconds
        "settle_seconds": settle_seconds,
        "settled_heap": heap,  # where the settled RSS is (tools/bench/heap)
        "rss_samples": [[round(t - started, 2), round(rss, 1)] for t, rss in samples],
        # The process's CPU from its start to the last object handled: start-up (imports, the
        # Kubernetes and SCP clients; about 1.5 s) included.
        "cpu_seconds": round(cpu_handling, 2),
        "cpu_ms_per_object": round(1000 * cpu_handling / n, 2),
        "scp_requests": scp_by_method(entries, ids),
        "scp_requests_per_object": round(len(entries) / n, 3),
        "k8s_requests": k8s,
        "k8s_writes_per_object": k8s["writes_per_object"],
        "load": load.as_dict(),
    }


# ---- an object SCP keeps refusing ------------------------------------------------------------


def first_hour(schedule: Schedule) -> dict[str, Any]:
    """SCP calls for one 409-blocked object in its first hour, from the schedule alone: its
    DELETEs, plus the reads of the server that say which blocker it is (the first refusal and
    every ``REREAD_EVERY``-th after)."""
    hour = predict(schedule, 3600.0)
    for key in ("calls_median", "calls_max"):
        deletes = int(hour[key])
        hour[f"scp_{key}_with_reads"] = deletes + math.ceil(deletes / REREAD_EVERY)
    return hour


async def blocked(
    bench: Bench, objects: int, seconds: float, base: float, cap: float
) -> dict[str, Any]:
    """Objects whose servers stay locked (409), run for ``seconds`` on a compressed schedule;
    each object's calls are compared with the schedule, gap by gap."""
    kube = bench.k
    schedule = Schedule(base, cap)
    ns = await bench.namespace("blocked")
    server_ids = bench.seed(objects, locked=True, prefix="locked")
    env = {"SCP_OPERATOR_BACKOFF_BASE": str(base), "SCP_OPERATOR_BACKOFF_CAP": str(cap)}
    operator = await bench.start_operator(ns, "blocked", env)
    tracker = Tracker(kube, ns, FINALIZER)
    await tracker.start()
    try:
        await bench.create_objects(ns, server_ids)
        await tracker.wait(
            _handled(objects),
            120.0,
            "blocked objects observed",
        )
        await _settle(bench)
        audit_start, log_start = bench.audit.offset(), bench.log_index()
        bench.probe_reset()
        t0 = time.time()
        await (await bench.delete_all(ns))
        await asyncio.sleep(max(0.0, t0 + seconds - time.time()))
        t_end = t0 + seconds
        entries = bench.log_since(log_start)
        requests = bench.audit.read(audit_start)
        max_in_flight, per_server = bench.probe_read()
        still_there = objects - tracker.count("gone")
    finally:
        await tracker.stop()
        await bench.stop_operator(operator)

    prediction = predict(schedule, seconds)
    per_object, calls_of = [], []
    for server_id in server_ids:
        calls = sorted(
            parse_time(e.time)
            for e in entries
            if e.method == "DELETE" and e.server_id == server_id and parse_time(e.time) < t_end
        )
        calls_of.append(calls)
        early, late = [], []
        for attempt, (a, b) in enumerate(itertools.pairwise(calls)):
            lo, hi = gap_bounds(schedule, attempt)
            early.append(b - a - lo)  # must never be negative: no retry before its time
            late.append(b - a - hi)  # the per-cycle overhead beyond the longest delay
        # What the schedule allows in the rest of the window after this object's first call.
        expected = predict(schedule, t_end - calls[0] if calls else seconds, draws=2000)
        reads = [
            e
            for e in entries
            if e.method == "GET" and e.server_id == server_id and t0 <= parse_time(e.time) < t_end
        ]
        per_object.append(
            {
                "calls": len(calls),
                "statuses": sorted(
                    {
                        e.status or 0
                        for e in entries
                        if e.server_id == server_id and e.method == "DELETE"
                    }
                ),
                # reads of the server after a refusal (which blocker it is): first and every 4th
                "reads": len(reads),
                "read_statuses": sorted({e.status or 0 for e in reads}),
                "predicted_median_calls": expected["calls_median"],
                "predicted_max_calls": expected["calls_if_jitter_always_0"],
                "min_margin_before_earliest_s": round(min(early), 3) if early else None,
                "max_lateness_after_latest_s": round(max(late), 3) if late else None,
                "max_in_flight": per_server.get(server_id, 0),
            }
        )
    # Kubernetes cost of a retry in the steady state: each cycle's writes fall between its call
    # and the next call, so requests in [latest 2nd call, earliest last call) over the calls in
    # that span (exact with one object; the span skips the first attempt and its event).
    per_retry: dict[str, Any] = {}
    first_attempt: dict[str, Any] = {}
    if all(len(c) >= 3 for c in calls_of):
        start, stop = max(c[1] for c in calls_of), min(c[-1] for c in calls_of)
        retries = sum(1 for c in calls_of for t in c if start <= t < stop)
        if retries:
            per_retry = summarize(audit_counts(_in_window(requests, start, stop)), retries)
            per_retry["retries"] = retries
        first = _in_window(requests, t0, min(c[1] for c in calls_of))
        first_attempt = summarize(audit_counts(first), objects)
    return {
        "namespace": ns,
        "objects": objects,
        "seconds": seconds,
        "still_terminating": still_there,
        "schedule": {"base": base, "cap": cap},
        "prediction": prediction,
        "per_object": per_object,
        "max_in_flight_per_object": max(per_server.get(s, 0) for s in server_ids),
        # A retry earlier than the schedule's shortest delay (50 ms of clock slack) is a bug.
        "retried_early": any(
            (o["min_margin_before_earliest_s"] or 0.0) < -0.05 for o in per_object
        ),
        "scp_max_in_flight": max_in_flight,
        "k8s_requests_per_retry": per_retry,
        "k8s_requests_first_attempt": first_attempt,
    }
