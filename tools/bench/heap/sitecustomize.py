"""Benchmark only: on SIGUSR1, append where this process's memory is to ``$BENCH_HEAP_FILE``.

The harness puts this directory first on the ``PYTHONPATH`` of the operator processes it starts
(never the shipped operator's), so Python imports this module at startup. On the signal it
writes one JSON line: Python's small-object allocator (pymalloc: its 1 MiB arenas, the bytes in
blocks still in use, and the free space inside the arenas), glibc's heap (``mallinfo2``) and
the RSS. RSS far above "in use" means memory held by arenas or heap pages that a few live
objects pin, not memory the operator still needs (docs/benchmarks.md, "Where the settled memory
is"). The numbers come from ``sys._debugmallocstats``, which prints to the C stderr only, so
that is redirected into a pipe for the call.
"""

from __future__ import annotations

import ctypes
import gc
import json
import os
import re
import signal
import sys
import tempfile
import time
from types import FrameType

_PYMALLOC = {
    "arenas": re.compile(r"# arenas allocated current\s*=\s*([\d,]+)"),
    "in_use": re.compile(r"# bytes in allocated blocks\s*=\s*([\d,]+)"),
    "free_blocks": re.compile(r"# bytes in available blocks\s*=\s*([\d,]+)"),
    "free_pools": re.compile(r"\d+ unused pools \* \d+ bytes\s*=\s*([\d,]+)"),
}
_MIB = 1024 * 1024


def _pymalloc() -> dict[str, float]:
    """pymalloc's totals, in MiB (empty when Python was built without it)."""
    with tempfile.TemporaryFile() as out:
        saved = os.dup(2)
        os.dup2(out.fileno(), 2)
        try:
            sys._debugmallocstats()
        finally:
            os.dup2(saved, 2)
            os.close(saved)
        out.seek(0)
        text = out.read().decode(errors="replace")
    result: dict[str, float] = {}
    for key, pattern in _PYMALLOC.items():
        match = pattern.search(text)
        if match:
            value = int(match.group(1).replace(",", ""))
            result[key] = value if key == "arenas" else round(value / _MIB, 1)
    return result


class _MallInfo2(ctypes.Structure):
    _fields_ = [
        (name, ctypes.c_size_t)
        for name in (
            "arena",
            "ordblks",
            "smblks",
            "hblks",
            "hblkhd",
            "usmblks",
            "fsmblks",
            "uordblks",
            "fordblks",
            "keepcost",
        )
    ]


def _glibc() -> dict[str, float]:
    """glibc's heap in MiB: in use, free (kept by malloc), mmapped (empty when not glibc)."""
    try:
        libc = ctypes.CDLL("libc.so.6")
        libc.mallinfo2.restype = _MallInfo2
    except (OSError, AttributeError):
        return {}
    info = libc.mallinfo2()
    return {
        "in_use": round(info.uordblks / _MIB, 1),
        "free": round(info.fordblks / _MIB, 1),
        "mmapped": round(info.hblkhd / _MIB, 1),
    }


def _rss() -> float:
    with open("/proc/self/status") as status:
        for line in status:
            if line.startswith("VmRSS:"):
                return round(int(line.split()[1]) / 1024, 1)
    return 0.0


def _report(signum: int, frame: FrameType | None) -> None:
    path = os.environ.get("BENCH_HEAP_FILE")
    if not path:
        return
    line = {
        "time": time.time(),
        "rss": _rss(),  # before anything below allocates
        "pymalloc": _pymalloc(),
        "glibc": _glibc(),
        "gc_objects": len(gc.get_objects()),
    }
    with open(path, "a") as out:
        out.write(json.dumps(line) + "\n")


if os.environ.get("BENCH_HEAP_FILE"):
    signal.signal(signal.SIGUSR1, _report)
