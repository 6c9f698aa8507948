"""The control plane's child processes: start, wait for, kill, restart and stop them.

:class:`Supervisor` keeps one process per named component (``etcd``, ``kube-apiserver``) in
start order, each in its own session (process group) with its log in ``<workdir>/<name>.log``.
A component is restarted with its original argument list, so it comes back on the same ports,
with the same data directory and certificates; stopping goes in reverse start order (the API
server before its etcd). On Linux, children started from the main thread die with this process
even when it is SIGKILLed.
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import IO

from scp_testenv.errors import ControlPlaneError

__all__ = ["Supervisor"]

_LOG_TAIL_LINES = 40


def tail(path: Path, lines: int = _LOG_TAIL_LINES) -> str:
    """The last ``lines`` lines of a log file (or a note that there is none)."""
    try:
        text = path.read_text(errors="replace")
    except OSError:
        return "(no log)"
    return "\n".join(text.splitlines()[-lines:]) or "(empty log)"


def _parent_death_signal() -> Callable[[], None] | None:
    """On Linux, a preexec hook so children die with this process even if it is SIGKILLed.

    The kernel sends the signal when the *thread* that forked the child exits, so it is only
    used when starting from the main thread (which lives as long as the process).
    """
    if not sys.platform.startswith("linux") or threading.current_thread() is not (
        threading.main_thread()
    ):
        return None
    try:
        import ctypes

        libc = ctypes.CDLL(None, use_errno=True)
    except (OSError, ImportError):
        return None
    pr_set_pdeathsig = 1

    def preexec() -> None:
        libc.prctl(pr_set_pdeathsig, signal.SIGKILL)

    return preexec


def _stop_process(proc: subprocess.Popen[bytes], grace: float) -> None:
    """SIGTERM the process group, wait ``grace`` seconds, then SIGKILL it."""
    if proc.poll() is not None:
        return
    for sig, wait in ((signal.SIGTERM, grace), (signal.SIGKILL, 10.0)):
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(proc.pid, sig)  # started with start_new_session: pgid == pid
        try:
            proc.wait(timeout=wait)
            return
        except subprocess.TimeoutExpired:
            continue


class Supervisor:
    """Named child processes of one work directory (see the module docstring)."""

    def __init__(self) -> None:
        self._processes: dict[str, subprocess.Popen[bytes]] = {}  # in start order
        self._killed: set[str] = set()  # stopped on purpose by kill(): not a failure
        self._log_files: list[IO[bytes]] = []
        self._workdir: Path | None = None

    def bind(self, workdir: Path) -> None:
        """Use ``workdir`` (cwd and logs) for the processes started from now on."""
        self._workdir = workdir

    @property
    def workdir(self) -> Path:
        if self._workdir is None:
            raise RuntimeError("no work directory")
        return self._workdir

    @property
    def started(self) -> bool:
        return bool(self._processes)

    @property
    def names(self) -> list[str]:
        return list(self._processes)

    def all_running(self) -> bool:
        return self.started and all(p.poll() is None for p in self._processes.values())

    def running(self, name: str) -> bool:
        return self._process(name).poll() is None

    def pid(self, name: str) -> int:
        return self._process(name).pid

    def _process(self, name: str) -> subprocess.Popen[bytes]:
        try:
            return self._processes[name]
        except KeyError:
            raise ValueError(
                f"no component {name!r}; known: {', '.join(self._processes)}"
            ) from None

    # ---- start, kill, restart ----------------------------------------------------------------

    def spawn(self, name: str, argv: list[str]) -> None:
        """Start ``name`` (appending to its log); it takes its place in the stop order at the
        end, or keeps its old place when it is started again."""
        log = (self.workdir / f"{name}.log").open("ab")
        self._log_files.append(log)
        self._processes[name] = subprocess.Popen(
            argv,
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=subprocess.STDOUT,
            cwd=self.workdir,
            start_new_session=True,
            preexec_fn=_parent_death_signal(),
        )
        self._killed.discard(name)

    def kill(self, name: str) -> None:
        """SIGKILL ``name``'s process group at once (no graceful shutdown) and reap it."""
        proc = self._process(name)
        self._killed.add(name)
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGKILL)
        proc.wait(10)

    def respawn(self, name: str) -> None:
        """Start ``name`` again with its original arguments (SIGKILLing it first if it runs)."""
        proc = self._process(name)
        if proc.poll() is None:
            self.kill(name)
        args = proc.args
        assert isinstance(args, list)
        self.spawn(name, [str(a) for a in args])

    # ---- waiting -----------------------------------------------------------------------------

    def wait(self, what: str, probe: Callable[[], bool], timeout: float) -> None:
        """Poll ``probe`` until true; raise :class:`ControlPlaneError` (with the logs' tails)
        on ``timeout`` or as soon as a component exits that was not killed on purpose."""
        deadline = time.monotonic() + timeout
        while True:
            for name, proc in self._processes.items():
                if proc.poll() is not None and name not in self._killed:
                    raise self.failure(f"{what}: {name} exited with {proc.returncode}")
            if probe():
                return
            if time.monotonic() > deadline:
                raise self.failure(f"{what}: timed out after {timeout:.0f}s")
            time.sleep(0.2)

    def failure(self, what: str) -> ControlPlaneError:
        """An error naming the work directory, with the tail of every component's log."""
        logs = "\n".join(
            f"--- last lines of {path} ---\n{tail(path)}"
            for path in (self.workdir / f"{name}.log" for name in self._processes)
            if path.exists()
        )
        return ControlPlaneError(f"{what} (work directory: {self.workdir})\n{logs}")

    # ---- stop --------------------------------------------------------------------------------

    def stop_all(self, grace: float = 10.0) -> None:
        """Stop every process in reverse start order (SIGTERM, then SIGKILL) and close the logs.
        Safe to call more than once (also as a finalizer)."""
        for name in reversed(list(self._processes)):
            _stop_process(self._processes.pop(name), grace)
        self._killed.clear()
        for log in self._log_files:
            log.close()
        self._log_files.clear()
