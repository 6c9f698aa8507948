"""``python -m tools.bench.run``: the benchmark against a real kube-apiserver and the SCP emulator.

Prints tables and issue 10's summary, and writes everything to ``<results>/<timestamp>.json``
with the pictures beside it (``<timestamp>-drain-<N>.svg``, ``<timestamp>-backlog.svg``), outside
the source tree: ``$SCP_OPERATOR_CACHE_DIR/bench/results`` (default ``${XDG_CACHE_HOME:-~/.cache}/
scp-operator/bench/results``, next to the control-plane binaries). With no arguments, every
section at issue 10's sizes. ``--smoke`` is the small run CI uses: every section, tiny (it checks
that the harness works, not how fast anything is).
See docs/benchmarks.md for what each number means.
"""

from __future__ import annotations

import argparse
import asyncio
import datetime as dt
import hashlib
import json
import math
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

if __package__ in (None, ""):  # run as a script: make the repository root importable
    sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

from scp_operator.backoff import Schedule
from scp_operator.settings import OperatorSettings
from tools.bench import REPO, plot, procfs, report, sections
from tools.bench.env import Bench, Options


def results_dir() -> Path:
    """Where results go by default: the cache directory ``tools/controlplane/build.sh`` uses
    too (``$SCP_OPERATOR_CACHE_DIR``, else ``$XDG_CACHE_HOME/scp-operator``, else
    ``~/.cache/scp-operator``), under ``bench/results``; never the source tree."""
    explicit = os.environ.get("SCP_OPERATOR_CACHE_DIR")
    if explicit:
        return Path(explicit) / "bench" / "results"
    cache = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(cache) / "scp-operator" / "bench" / "results"


SECTIONS = ("drain", "latency", "footprint", "backlog", "blocked")
# Issue 10's sizes (docs/benchmarks.md, "Running it").
DEFAULTS: dict[str, Any] = {
    "sizes": [1000],
    "latency_ms": 100.0,
    "concurrency": 32,
    "repeat": 3,
    "sections": list(SECTIONS),
    "shards": [1, 2],
    "footprint_sizes": [5000, 10000],
    "footprint_idle_seconds": 30.0,
    "backlog_size": 5000,
    "idle_samples": 10,
    "blocked_seconds": 60.0,
}
# Every section, tiny: it checks that the harness works, not how fast anything is.
SMOKE: dict[str, Any] = {
    "sizes": [20],
    "latency_ms": 20.0,
    "concurrency": 8,
    "repeat": 1,
    "sections": list(SECTIONS),
    "shards": [1, 2],
    "footprint_sizes": [10, 20],
    "footprint_idle_seconds": 1.0,
    "backlog_size": 20,
    "idle_samples": 3,
    "blocked_seconds": 15.0,
}


def _ints(text: str) -> list[int]:
    return [int(v) for v in text.split(",") if v.strip()]


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="python -m tools.bench.run",
        description=__doc__,
        formatter_class=argparse.RawTextHelpFormatter,
    )
    parser.add_argument("--smoke", action="store_true", help="small run: " + json.dumps(SMOKE))
    parser.add_argument("--sizes", type=_ints, help="drain sizes N (default 1000)")
    parser.add_argument("--latency-ms", type=float, help="emulator latency L (default 100)")
    parser.add_argument("--concurrency", type=int, help="SCP requests in flight C (default 32)")
    parser.add_argument("--repeat", type=int, help="drain repeats; medians reported (default 3)")
    parser.add_argument(
        "--sections",
        type=lambda s: [v for v in s.split(",") if v],
        help=f"comma-separated subset of {','.join(SECTIONS)} (default all)",
    )
    parser.add_argument(
        "--shards",
        type=_ints,
        help="operator processes in the drain (default 1,2; 1 always runs, with the plain "
        "Kopf baseline)",
    )
    parser.add_argument(
        "--footprint-sizes", type=_ints, help="watched objects, in steps (default 5000,10000)"
    )
    parser.add_argument(
        "--footprint-idle-seconds",
        type=float,
        help="idle CPU window per footprint step, RSS read after it (30)",
    )
    parser.add_argument(
        "--backlog-size", type=int, help="objects the operator starts on, never seen (5000)"
    )
    parser.add_argument("--idle-samples", type=int, help="idle latency samples (10)")
    parser.add_argument("--blocked-seconds", type=float, help="real blocked run length (60)")
    parser.add_argument("--blocked-objects", type=int, default=1, help="blocked objects (1)")
    parser.add_argument("--blocked-base", type=float, default=0.5, help="compressed base (0.5 s)")
    parser.add_argument("--blocked-cap", type=float, default=5.0, help="compressed cap (5 s)")
    parser.add_argument(
        "--k8s-concurrency", type=int, default=32, help="harness/baseline requests in flight (32)"
    )
    parser.add_argument("--output", type=Path, help="JSON file (default <results>/<ts>.json)")
    parser.add_argument(
        "--keep-workdir", action="store_true", help="keep logs (operator, audit) after the run"
    )
    args = parser.parse_args(argv)
    defaults = dict(SMOKE if args.smoke else DEFAULTS)
    for key, value in defaults.items():
        if getattr(args, key) is None:
            setattr(args, key, value)
    unknown = set(args.sections) - set(SECTIONS)
    if unknown:
        parser.error(f"unknown sections {sorted(unknown)}; known: {', '.join(SECTIONS)}")
    if any(k < 1 for k in args.shards):
        parser.error("--shards: each count must be at least 1")
    return args


def code_state() -> dict[str, Any]:
    """Which operator code was measured: the commit, the trees of operator/ and crds/, and a
    digest of uncommitted changes to them (commits elsewhere do not change the code)."""
    root = REPO

    def git(*args: str) -> str:
        result = subprocess.run(["git", *args], cwd=root, capture_output=True, text=True)
        return result.stdout.strip() if result.returncode == 0 else ""

    diff = git("diff", "HEAD", "--", "operator", "crds")
    untracked = git("ls-files", "--others", "--exclude-standard", "--", "operator", "crds")
    trees = [git("rev-parse", "--short", f"HEAD:{path}") for path in ("operator", "crds")]
    return {
        "commit": git("rev-parse", "--short", "HEAD") or None,
        "operator_and_crds_trees": "/".join(trees),
        "uncommitted_operator_changes": bool(diff or untracked),
        "uncommitted_digest": hashlib.sha256((diff + untracked).encode()).hexdigest()[:12],
    }


def default_schedule() -> Schedule:
    """The fast schedule with the shipped defaults (not whatever the environment says)."""
    fields = OperatorSettings.model_fields
    return Schedule(float(fields["backoff_base"].default), float(fields["backoff_cap"].default))


async def run(args: argparse.Namespace, bench: Bench) -> dict[str, Any]:
    fields = set(bench.operator_settings)
    result: dict[str, Any] = {
        "meta": {
            "started": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
            "args": {k: (v.name if isinstance(v, Path) else v) for k, v in vars(args).items()},
            "code": code_state(),
            "latency_ms": args.latency_ms,
            "concurrency": args.concurrency,
            "repeat": args.repeat,
            "cpus": os.cpu_count(),
            "loadavg_start": procfs.loadavg(),
            "concurrency_enforced_by": (
                "SCP_OPERATOR_MAX_CONCURRENT_REQUESTS (+ pool size)"
                if "max_concurrent_requests" in fields
                else "SCP_OPERATOR_MAX_CONNECTIONS (connection pool; no limiter in this version)"
            ),
            "operator_settings_fields": bench.operator_settings,
        }
    }
    async with bench.client() as kube:
        version = await kube.call("GET", "/version")
        result["meta"]["kubernetes"] = version.get("gitVersion")
        if "drain" in args.sections:
            result["drain"] = []
            for n in args.sizes:
                print(f"drain N={n} x{args.repeat} ...", file=sys.stderr, flush=True)
                result["drain"].append(
                    await sections.drain(
                        bench, n, args.repeat, args.latency_ms, args.concurrency, args.shards
                    )
                )
        if "latency" in args.sections:
            print("idle latency ...", file=sys.stderr, flush=True)
            result["latency"] = await sections.idle_latency(bench, args.idle_samples)
        if "blocked" in args.sections:
            print(f"blocked object for {args.blocked_seconds:g} s ...", file=sys.stderr, flush=True)
            result["first_hour"] = sections.first_hour(default_schedule())
            result["blocked"] = await sections.blocked(
                bench,
                args.blocked_objects,
                args.blocked_seconds,
                args.blocked_base,
                args.blocked_cap,
            )
        if "footprint" in args.sections:
            print(f"footprint {args.footprint_sizes} ...", file=sys.stderr, flush=True)
            result["footprint"] = await sections.footprint(
                bench,
                args.footprint_sizes,
                args.latency_ms,
                args.concurrency,
                args.footprint_idle_seconds,
            )
        if "backlog" in args.sections:
            print(f"backlog of {args.backlog_size} ...", file=sys.stderr, flush=True)
            # settled: after the operator's memory housekeeping has had two rounds (10 s each)
            settle = 5.0 if args.smoke else 30.0
            result["backlog"] = await sections.backlog(bench, args.backlog_size, settle)
    result["meta"]["loadavg_end"] = procfs.loadavg()
    now = code_state()
    if any(now[k] != result["meta"]["code"][k] for k in now if k != "commit"):
        result["meta"]["code"]["changed_during_run"] = True
    return result


def draw(result: dict[str, Any], output: Path) -> None:
    """The pictures, next to the JSON (``<stem>-drain-<N>.svg``, ``<stem>-backlog.svg``); each
    section's ``picture`` names its file."""
    for drain in result.get("drain") or []:
        path = output.with_name(f"{output.stem}-drain-{drain['n']}.svg")
        drain["picture"] = plot.drain_picture(drain, path).name
    if result.get("backlog"):
        path = output.with_name(f"{output.stem}-backlog.svg")
        result["backlog"]["picture"] = plot.backlog_picture(result["backlog"], path).name


def _json_default(value: Any) -> Any:
    if isinstance(value, float) and not math.isfinite(value):
        return str(value)
    if isinstance(value, Path):
        return value.name
    raise TypeError(f"not JSON serializable: {type(value).__name__}")


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    workdir = Path(tempfile.mkdtemp(prefix="scp-bench-"))
    started = time.monotonic()
    bench = Bench(
        Options(
            latency_ms=args.latency_ms,
            concurrency=args.concurrency,
            k8s_concurrency=args.k8s_concurrency,
            workdir=workdir,
        )
    )
    try:
        bench.start()
        result = asyncio.run(run(args, bench))
    finally:
        bench.stop()
        if args.keep_workdir:
            print(f"work directory kept: {workdir}", file=sys.stderr)
        else:
            shutil.rmtree(workdir, ignore_errors=True)
    result["meta"]["wall_seconds"] = round(time.monotonic() - started, 1)
    output = args.output or results_dir() / f"{dt.datetime.now().strftime('%Y%m%d-%H%M%S')}.json"
    output.parent.mkdir(parents=True, exist_ok=True)
    draw(result, output)
    output.write_text(json.dumps(result, indent=2, default=_json_default) + "\n")
    print(report.render(result))
    print(f"\nJSON: {output}  ({result['meta']['wall_seconds']} s)")
    for section in [*(result.get("drain") or []), result.get("backlog") or {}]:
        if section.get("picture"):
            print(f"picture: {output.with_name(section['picture'])}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
