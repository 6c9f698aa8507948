"""The benchmark's pictures: SVG files written next to the JSON result.

A drain's picture shows objects left over time for every run of every variant (the operator,
the plain Kopf baseline, the operator with more shards; dotted: objects whose DELETE had not
reached SCP yet) and the K8s-bound baseline, against the ideal line: a straight fall from N
to 0 in ``max(ceil(N/C)*L, K8s-bound)``. Where a curve leaves the ideal line, and whether it
is flat (nothing released) or slow (released one by one), is what the ratio alone does not
say.

A backlog's picture shows objects handled and the operator's RSS from the process's start.

Matplotlib with the Agg backend (no display); text stays text in the SVG
(``svg.fonttype = none``) and each curve is a group with the id ``series-<variant>-<repeat>``,
so the smoke test can check what a picture holds.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import matplotlib

matplotlib.use("Agg")

import matplotlib.pyplot as plt  # after choosing the backend

matplotlib.rcParams["svg.fonttype"] = "none"
matplotlib.rcParams["svg.hashsalt"] = "scp-bench"  # stable ids, diffable files

COLOURS = {"operator": "tab:blue", "plain": "tab:orange", "k8s-bound": "tab:gray"}
EXTRA_COLOURS = ["tab:green", "tab:purple", "tab:brown", "tab:pink"]


def _colour(name: str, index: int) -> str:
    return COLOURS.get(name, EXTRA_COLOURS[index % len(EXTRA_COLOURS)])


def _left(curve: list[float], n: int) -> tuple[list[float], list[float]]:
    """A step curve of objects left: N at 0, one less at each time in ``curve``."""
    xs = [0.0, *curve]
    ys = [float(n), *(float(n - i) for i in range(1, len(curve) + 1))]
    return xs, ys


def _label(name: str, summary: dict[str, Any]) -> str:
    ratio, cpu = summary["ratio"], summary["cpu_ms_per_object"]
    return (
        f"{name}: ratio {ratio['median']:.2f} [{ratio['min']:.2f}-{ratio['max']:.2f}], "
        f"{cpu['median']:.1f} ms CPU/object ({summary['repeats']} "
        + ("run)" if summary["repeats"] == 1 else "runs)")
    )


def drain_picture(drain: dict[str, Any], path: Path) -> Path:
    """Objects left over time in every drain run of one N, against the ideal line."""
    n = int(drain["n"])
    fig, ax = plt.subplots(figsize=(10, 6))
    try:
        # Each repeat has its own K8s-bound baseline; the line is the median repeat's ideal.
        ideals = sorted(r["ideal_seconds"] for r in drain["runs"])
        ideal = ideals[(len(ideals) - 1) // 2]
        ax.plot([0.0, ideal], [n, 0], "k--", linewidth=1.5, gid="series-ideal")
        ax.annotate(
            f"ideal {ideal:.2f} s = max(ceil(N/C)*L, K8s-bound)",
            (ideal, 0),
            textcoords="offset points",
            xytext=(4, 8),
        )
        labelled: set[str] = set()
        for repeat, run in enumerate(drain["runs"]):
            xs, ys = _left(run["k8s_bound"].get("gone_curve") or [], n)
            ax.step(
                xs,
                ys,
                where="post",
                color=COLOURS["k8s-bound"],
                linewidth=0.8,
                alpha=0.7,
                gid=f"series-k8s-bound-{repeat}",
                label=None if "k8s" in labelled else "K8s-bound baseline (finalizer off at once)",
            )
            labelled.add("k8s")
        for index, (name, summary) in enumerate(drain["variants"].items()):
            for repeat, run in enumerate(summary["runs"]):
                xs, ys = _left(run["gone_curve"], n)
                ax.step(
                    xs,
                    ys,
                    where="post",
                    color=_colour(name, index),
                    linewidth=1.4,
                    alpha=0.85,
                    gid=f"series-{name}-{repeat}",
                    label=None if name in labelled else _label(name, summary),
                )
                labelled.add(name)
                # Dotted: objects whose DELETE had not reached SCP yet. The gap to the solid
                # curve of the same colour is the release (finalizer off, object gone).
                sent = run.get("delete_curve") or []
                if sent:
                    xs, ys = _left(sent, n)
                    ax.step(
                        xs,
                        ys,
                        where="post",
                        color=_colour(name, index),
                        linewidth=0.9,
                        linestyle=":",
                        alpha=0.8,
                        gid=f"sent-{name}-{repeat}",
                    )
        ax.set_xlabel("seconds since the collection DELETE")
        ax.set_ylabel("objects left")
        ax.set_ylim(bottom=0)
        ax.set_xlim(left=0)
        ax.set_title(
            f"Drain of N = {n} (L = {drain['latency_ms']:g} ms, C = {drain['concurrency']}): "
            "objects left (solid), SCP DELETEs not yet sent (dotted)"
        )
        ax.grid(alpha=0.3)
        # Below the plot: inside, it would hide the slowest curves' start.
        ax.legend(loc="upper center", bbox_to_anchor=(0.5, -0.1), fontsize="small")
        fig.tight_layout()
        fig.savefig(path, format="svg", bbox_inches="tight")
    finally:
        plt.close(fig)
    return path


def backlog_picture(backlog: dict[str, Any], path: Path) -> Path:
    """Objects handled and the operator's RSS over time, from the start of the process."""
    n = int(backlog["objects"])
    fig, ax = plt.subplots(figsize=(10, 6))
    try:
        curve = backlog["handled_curve"]
        ax.step(
            [0.0, *curve],
            [0, *range(1, len(curve) + 1)],
            where="post",
            color=COLOURS["operator"],
            gid="series-handled",
            label=f"objects handled (of {n})",
        )
        ax.set_xlabel("seconds since the operator process started")
        ax.set_ylabel("objects handled (finalizer and status.server)")
        ax.set_ylim(0, n * 1.05)
        rss = ax.twinx()
        samples = backlog["rss_samples"]
        rss.plot(
            [s[0] for s in samples],
            [s[1] for s in samples],
            color="tab:red",
            gid="series-rss",
            label=f"RSS MiB (peak {backlog['peak_rss_mib']:.0f}, "
            f"settled {backlog['settled_rss_mib']:.0f})",
        )
        rss.set_ylabel("RSS MiB")
        rss.set_ylim(bottom=0)
        lines = ax.get_legend_handles_labels()
        more = rss.get_legend_handles_labels()
        ax.legend(lines[0] + more[0], lines[1] + more[1], loc="lower right", fontsize="small")
        ax.set_title(f"Backlog: operator started on {n} objects it never saw")
        ax.grid(alpha=0.3)
        fig.tight_layout()
        fig.savefig(path, format="svg")
    finally:
        plt.close(fig)
    return path
