"""Process and machine measurements straight from ``/proc`` (Linux only, no psutil).

The machine is shared, so every measured phase also records how much CPU went to processes that
are not part of the benchmark ("foreign" CPU): a ratio measured while someone else's test suite
ate a core means something different from one measured on an idle machine.
"""

from __future__ import annotations

import dataclasses
import os
import threading
import time
from collections.abc import Iterable, Mapping
from pathlib import Path

CLK_TCK = os.sysconf("SC_CLK_TCK")
PROC = Path("/proc")


def cpu_seconds(pid: int, thread: int | None = None) -> float:
    """User + system CPU time of one process (or one of its threads) so far (0 once gone)."""
    base = PROC / str(pid)
    path = base / "stat" if thread is None else base / "task" / str(thread) / "stat"
    try:
        text = path.read_text()
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


def tcp_connections(pid: int, remote_ports: Mapping[str, int]) -> dict[str, int]:
    """Established TCP connections of a process, counted by named remote port."""
    inodes = set()
    try:
        for fd in (PROC / str(pid) / "fd").iterdir():
            try:
                target = os.readlink(fd)
            except OSError:
                continue
            if target.startswith("socket:["):
                inodes.add(target[8:-1])
    except OSError:
        return {}
    by_port = {port: name for name, port in remote_ports.items()}
    counts = dict.fromkeys(remote_ports, 0)
    for table in ("tcp", "tcp6"):
        try:
            lines = (PROC / str(pid) / "net" / table).read_text().splitlines()[1:]
        except OSError:
            continue
        for line in lines:
            fields = line.split()
            remote_port = int(fields[2].rsplit(":", 1)[1], 16)
            if fields[3] == "01" and fields[9] in inodes and remote_port in by_port:
                counts[by_port[remote_port]] += 1
    return counts


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
    by_process_cores: dict[str, float]
    loadavg_end: list[float]

    def as_dict(self) -> dict[str, object]:
        return {
            "seconds": round(self.seconds, 3),
            "machine_busy_cores": round(self.machine_busy_cores, 2),
            "benchmark_cores": round(self.benchmark_cores, 2),
            "foreign_cores": round(self.foreign_cores, 2),
            "by_process_cores": {k: round(v, 2) for k, v in self.by_process_cores.items()},
            "loadavg_end": self.loadavg_end,
        }


class LoadMeter:
    """Machine CPU vs the benchmark's own processes between :meth:`start` and :meth:`stop`.

    ``processes`` names the benchmark's processes; an ``operator`` entry (one pid per shard) is
    also split into its event-loop threads (``operator-loop``) and its worker threads
    (``operator-threads``: sync handlers, anything run in ``asyncio.to_thread``).
    """

    def __init__(self, processes: Mapping[str, Iterable[int]]) -> None:
        self.processes = {name: sorted(set(pids)) for name, pids in processes.items()}
        self._t0 = 0.0
        self._busy0 = 0.0
        self._ours0: dict[str, float] = {}

    def _ours(self) -> dict[str, float]:
        result = {
            name: sum(cpu_seconds(pid) for pid in pids) for name, pids in self.processes.items()
        }
        if "operator" in self.processes:  # one process per shard: their loops together
            pids = self.processes["operator"]
            result["operator-loop"] = sum(cpu_seconds(pid, thread=pid) for pid in pids)
        return result

    def start(self) -> LoadMeter:
        self._t0 = time.monotonic()
        self._busy0 = busy_cpu_seconds()
        self._ours0 = self._ours()
        return self

    def stop(self) -> LoadSample:
        seconds = max(time.monotonic() - self._t0, 1e-6)
        busy = busy_cpu_seconds() - self._busy0
        now = self._ours()
        used = {name: now[name] - self._ours0.get(name, 0.0) for name in now}
        if "operator-loop" in used:
            used["operator-threads"] = used["operator"] - used["operator-loop"]
        ours = sum(used[name] for name in self.processes)
        return LoadSample(
            seconds=seconds,
            machine_busy_cores=busy / seconds,
            benchmark_cores=ours / seconds,
            foreign_cores=max(busy - ours, 0.0) / seconds,
            by_process_cores={name: value / seconds for name, value in used.items()},
            loadavg_end=loadavg(),
        )


class RssSampler:
    """``VmRSS`` of a process every ``interval`` seconds, in a thread, until :meth:`stop`.

    ``VmHWM`` already gives the peak; the samples show *when* the memory was taken (a burst of
    first handlings, the resume) and whether it came back.
    """

    def __init__(self, pid: int, interval: float = 0.5) -> None:
        self.pid = pid
        self.interval = interval
        self.samples: list[tuple[float, float]] = []  # (epoch seconds, RSS MiB)
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="rss-sampler", daemon=True)

    def start(self) -> RssSampler:
        self._thread.start()
        return self

    def _run(self) -> None:
        while not self._stop.is_set():
            rss = memory_mib(self.pid)["rss"]
            if rss:
                self.samples.append((time.time(), rss))
            self._stop.wait(self.interval)

    def stop(self) -> list[tuple[float, float]]:
        self._stop.set()
        self._thread.join()
        return self.samples
