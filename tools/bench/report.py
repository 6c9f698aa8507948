"""The human-readable table of a benchmark result (the JSON has everything else)."""

from __future__ import annotations

from typing import Any


def _fmt(value: Any, digits: int = 2) -> str:
    if value is None:
        return "-"
    if isinstance(value, float):
        return f"{value:.{digits}f}"
    return str(value)


def _row(cells: list[str], widths: list[int]) -> str:
    return "  ".join(
        c.rjust(w) if i else c.ljust(w) for i, (c, w) in enumerate(zip(cells, widths, strict=True))
    )


def table(headers: list[str], rows: list[list[str]]) -> str:
    widths = [
        max(len(h), *(len(r[i]) for r in rows)) if rows else len(h) for i, h in enumerate(headers)
    ]
    lines = [_row(headers, widths), _row(["-" * w for w in widths], widths)]
    lines += [_row(r, widths) for r in rows]
    return "\n".join(lines)


def _requests(summary: dict[str, Any] | None) -> str:
    if not summary:
        return "-"
    return f"{summary['writes_per_object']:.2f} w / {summary['reads_per_object']:.2f} r"


def _breakdown(summary: dict[str, Any] | None) -> str:
    if not summary:
        return "-"
    per = summary["objects"]
    return ", ".join(f"{k} {v / per:.2f}" for k, v in summary["breakdown"].items())


def render(result: dict[str, Any]) -> str:
    meta = result["meta"]
    out = [
        f"scp-operator benchmark {meta['started']}  (L={meta['latency_ms']:g} ms, "
        f"C={meta['concurrency']}, repeat={meta['repeat']}, kube-apiserver {meta['kubernetes']})",
        f"operator code: commit {meta['code']['commit']}"
        + (
            f" + uncommitted changes {meta['code']['uncommitted_digest']}"
            if meta["code"]["uncommitted_operator_changes"]
            else ""
        )
        + (" (CHANGED during the run)" if meta["code"].get("changed_during_run") else ""),
        f"machine: {meta['cpus']} CPUs, load average at start {meta['loadavg_start']}, "
        f"at end {meta.get('loadavg_end')}; C enforced by {meta['concurrency_enforced_by']}",
    ]
    drains = result.get("drain") or []
    if drains:
        rows = []
        for d in drains:
            m = d["median"]
            rows.append(
                [
                    str(d["n"]),
                    _fmt(m["drain_seconds"]),
                    _fmt(m["objects_per_second"], 1),
                    _fmt(m["k8s_bound"]),
                    _fmt(d["runs"][0]["scp_bound_seconds"]),
                    _fmt(m["ideal_seconds"]),
                    f"{m['ratio']:.2f} [{d['min_ratio']:.2f}-{d['max_ratio']:.2f}]",
                    _fmt(statistics_of(d, "foreign_cores"), 2),
                ]
            )
        out += [
            "",
            "drain: N objects deleted at once "
            "(medians; ratio = drain / max(ceil(N/C)*L, K8s-bound))",
            table(
                [
                    "N",
                    "drain s",
                    "obj/s",
                    "K8s-bound s",
                    "ceil(N/C)*L s",
                    "ideal s",
                    "ratio [min-max]",
                    "foreign CPU",
                ],
                rows,
            ),
        ]
        rows = [
            [
                str(d["n"]),
                _fmt(_median(d, "deletecollection_answered_s")),
                _fmt(_median(d, "last_marked_s")),
                _fmt(_median(d, "last_delete_sent_s")),
                _fmt(_median(d, "drain_seconds")),
                _fmt(_median(d, "operator_cpu_ms_per_object"), 1),
                _cores(d, "operator-loop"),
                _cores(d, "operator-threads"),
                _cores(d, "kube-apiserver"),
                _fmt(_median(d, "k8s_bound", "last_marked_s")),
            ]
            for d in drains
        ]
        out += [
            "",
            "where the drain's time went (medians; seconds from the collection DELETE; "
            "CPU in cores during the drain)",
            table(
                [
                    "N",
                    "DELETE answered",
                    "last marked",
                    "last SCP DELETE",
                    "last gone",
                    "op CPU ms/obj",
                    "op loop cores",
                    "op threads cores",
                    "apiserver cores",
                    "baseline: last marked",
                ],
                rows,
            ),
        ]
        rows = []
        for d in drains:
            run = d["runs"][-1]
            rows.append(
                [
                    f"create, N={d['n']}",
                    _requests(run["k8s_requests_create"]),
                    _breakdown(run["k8s_requests_create"]),
                ]
            )
            rows.append(
                [
                    f"delete, N={d['n']}",
                    _requests(run["k8s_requests_drain"]),
                    _breakdown(run["k8s_requests_drain"]),
                ]
            )
        blocked = result.get("blocked")
        if blocked and blocked.get("k8s_requests_per_retry"):
            retry = blocked["k8s_requests_per_retry"]
            rows.append(["blocked, per retry", _requests(retry), _breakdown(retry)])
        agree = all(r["k8s_write_counts_agree"] for d in drains for r in d["runs"])
        out += [
            "",
            "Kubernetes requests per object, operator identity only (audit log; writes "
            f"{'agree' if agree else 'DISAGREE'} with apiserver_request_total minus the harness)",
            table(["phase", "writes / reads", "breakdown per object"], rows),
        ]
        rows = []
        for d in drains:
            run = d["runs"][-1]
            rows.append(
                [
                    str(d["n"]),
                    _fmt(run["scp_deletes_per_deleted_object"]),
                    str(run["objects_with_more_than_one_delete"]),
                    str(run["scp_max_in_flight"]),
                    f"{run['latency_since_marked']['p50_ms']} / "
                    f"{run['latency_since_marked']['p99_ms']}",
                    f"{run['latency_since_delete_request']['p50_ms']} / "
                    f"{run['latency_since_delete_request']['p99_ms']}",
                ]
            )
        out += [
            "",
            "SCP side of the drain (last repeat)",
            table(
                [
                    "N",
                    "DELETEs per object",
                    "objects >1 DELETE",
                    "max in flight",
                    "marked->DELETE p50/p99 ms",
                    "collection DELETE->DELETE p50/p99 ms",
                ],
                rows,
            ),
        ]
    idle = result.get("latency")
    if idle:
        out += [
            "",
            f"idle latency ({idle['samples']} single deletions): delete request -> DELETE at SCP "
            f"first {idle['first_since_delete_request_ms']} ms, then "
            f"p50 {idle['warm_since_delete_request']['p50_ms']} ms, "
            f"p99 {idle['warm_since_delete_request']['p99_ms']} ms; "
            f"marked -> DELETE p50 {idle['latency_since_marked']['p50_ms']} ms; "
            f"delete request -> object gone p50 {idle['delete_request_to_gone']['p50_ms']} ms",
        ]
    fp = result.get("footprint")
    if fp:
        rows = []
        for st in fp["stages"]:
            r = st.get("resume") or {}
            rows.append(
                [
                    str(st["objects"]),
                    _fmt(st["memory_mib"]["rss"], 1),
                    _fmt(st["memory_mib"]["peak_rss"], 1),
                    _fmt(st.get("cpu_ms_per_object")),
                    _fmt(st.get("idle_cpu_cores"), 4),
                    _fmt((st.get("connections") or {}).get("kube-apiserver")),
                    _fmt(r.get("first_resumed_seconds")),
                    _fmt(r.get("all_resumed_seconds")),
                    _fmt(r.get("scp_bound_seconds")),
                    _fmt(r.get("cpu_seconds")),
                    _fmt((r.get("memory_mib") or {}).get("peak_rss"), 1),
                ]
            )
        r = fp["resume"]
        out += [
            "",
            "operator footprint (objects added in steps; after each step a new process resumes "
            "them all)",
            table(
                [
                    "objects",
                    "RSS MiB",
                    "peak RSS MiB",
                    "CPU ms/obj",
                    "idle CPU cores",
                    "API conns",
                    "resume: first s",
                    "all s",
                    "ceil(N/C)*L s",
                    "CPU s",
                    "peak RSS MiB",
                ],
                rows,
            ),
            f"resume requests per object: K8s {_requests(r['k8s_requests'])}, "
            f"SCP {r['scp_requests']} for {r['objects']} objects",
        ]
    hour = result.get("first_hour")
    if hour:
        out += [
            "",
            f"blocked object, first hour from the schedule (base {hour['schedule']['base']:g} s, "
            f"cap {hour['schedule']['cap']:g} s): median {hour['calls_median']} DELETEs, "
            f"max {hour['calls_max']} over {10_000} jitter draws, "
            f"{hour['calls_if_jitter_always_0']} if every draw were 0; with the reads after a "
            f"409, median {hour.get('scp_calls_median_with_reads', '?')} SCP calls, "
            f"max {hour.get('scp_calls_max_with_reads', '?')}",
        ]
    blocked = result.get("blocked")
    if blocked:
        rows = [
            [
                str(i),
                str(o["calls"]),
                f"{o['predicted_median_calls']} (at most {o['predicted_max_calls']})",
                _fmt(o["min_margin_before_earliest_s"], 3),
                _fmt(o["max_lateness_after_latest_s"], 3),
                str(o["max_in_flight"]),
            ]
            for i, o in enumerate(blocked["per_object"])
        ]
        out += [
            f"blocked object, real run: {blocked['seconds']:g} s on base "
            f"{blocked['schedule']['base']:g} s, cap {blocked['schedule']['cap']:g} s",
            table(
                [
                    "object",
                    "SCP calls",
                    "schedule predicts",
                    "min margin s (>=0)",
                    "max lateness s",
                    "max in flight",
                ],
                rows,
            ),
        ]
    return "\n".join(out)


def _cores(drain: dict[str, Any], process: str) -> str:
    values = sorted(r["load"].get("by_process_cores", {}).get(process, 0.0) for r in drain["runs"])
    return _fmt(values[len(values) // 2] if values else None)


def _median(drain: dict[str, Any], key: str, sub: str | None = None) -> float | None:
    values = sorted(
        (r[key][sub] if sub else r[key]) for r in drain["runs"] if r.get(key) is not None
    )
    return values[len(values) // 2] if values else None


def statistics_of(drain: dict[str, Any], key: str) -> float | None:
    values = sorted(r["load"][key] for r in drain["runs"])
    return values[len(values) // 2] if values else None
