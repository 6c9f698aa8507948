"""Process and machine measurements straight from ``/proc`` (Linux only, no psutil).

The machine is shared, so every measured phase also records how much CPU went to processes that
are not part of the benchmark ("foreign" CPU): a ratio measured while someone else's test suite
ate a core means something different from one measured on an idle machine.
"""

from __future__ import annotations

import dataclasses
import os
import time
from collections.abc import Iterable
from pathlib import Path

CLK_TCK = os.sysconf("SC_CLK_TCK")
PROC = Path("/proc")


def cpu_seconds(pid: int) -> float:
    """User + system CPU time of one process so far (0 once it is gone)."""
    try:
        text = (PROC / str(pid) / "stat").read_text()
    except OSError:
        return 0.0
    fields = text.rsplit(")", 1)[1].split()
    # After the command name: state is field 3 of proc(5); utime and stime are fields 14 and 15.
    return (int(fields[11]) + int(fields[12])) / CLK_TCK


def memory_mib(pid: int) -> dict[str, float]:
    """``VmRSS`` (now) and ``VmHWM`` (peak so far) of a process, in MiB."""
    result = {"rss": 0.0, "peak_rss": 0.0}
    try:
        lines = (PROC / str(pid) / "status").read_text().splitlines()
    except OSError:
        return result
    for line in lines:
        key, _, value = line.partition(":")
        if key in ("VmRSS", "VmHWM"):
            kib = float(value.split()[0])
            result["rss" if key == "VmRSS" else "peak_rss"] = kib / 1024
    return result


def busy_cpu_seconds() -> float:
    """CPU seconds the whole machine spent not idle (all cores), from ``/proc/stat``."""
    fields = (PROC / "stat").read_text().splitlines()[0].split()[1:]
    values = [int(v) for v in fields]
    idle = values[3] + (values[4] if len(values) > 4 else 0)  # idle + iowait
    # guest time is already included in user/nice, so only the first eight fields count.
    return (sum(values[:8]) - idle) / CLK_TCK


def loadavg() -> list[float]:
    """The 1, 5 and 15 minute load averages."""
    return [float(v) for v in (PROC / "loadavg").read_text().split()[:3]]


def pids_mentioning(text: str) -> list[int]:
    """Processes whose command line contains ``text`` (e.g. a control plane's work directory)."""
    found = []
    for entry in PROC.iterdir():
        if not entry.name.isdigit():
            continue
        try:
            cmdline = (entry / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
        except OSError:
            continue
        if text in cmdline:
            found.append(int(entry.name))
    return found


@dataclasses.dataclass
class LoadSample:
    """CPU use during one phase, in cores (1.0 = one core busy for the whole phase)."""

    seconds: float
    machine_busy_cores: float
    benchmark_cores: float
    foreign_cores: float
    loadavg_end: list[float]

    def as_dict(self) -> dict[str, object]:
        return {
            "seconds": round(self.seconds, 3),
            "machine_busy_cores": round(self.machine_busy_cores, 2),
            "benchmark_cores": round(self.benchmark_cores, 2),
            "foreign_cores": round(self.foreign_cores, 2),
            "loadavg_end": self.loadavg_end,
        }


class LoadMeter:
    """Machine CPU vs the benchmark's own processes between :meth:`start` and :meth:`stop`."""

    def __init__(self, pids: Iterable[int]) -> None:
        self.pids = sorted(set(pids))
        self._t0 = 0.0
        self._busy0 = 0.0
        self._ours0 = 0.0

    def _ours(self) -> float:
        return sum(cpu_seconds(pid) for pid in self.pids)

    def start(self) -> LoadMeter:
        self._t0 = time.monotonic()
        self._busy0 = busy_cpu_seconds()
        self._ours0 = self._ours()
        return self

    def stop(self) -> LoadSample:
        seconds = max(time.monotonic() - self._t0, 1e-6)
        busy = busy_cpu_seconds() - self._busy0
        ours = self._ours() - self._ours0
        return LoadSample(
            seconds=seconds,
            machine_busy_cores=busy / seconds,
            benchmark_cores=ours / seconds,
            foreign_cores=max(busy - ours, 0.0) / seconds,
            loadavg_end=loadavg(),
        )
