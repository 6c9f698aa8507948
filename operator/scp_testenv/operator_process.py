"""Run ``scp-operator run`` as a real process (for the e2e tier, the sandbox and benchmarks).

A real process, not an in-process Kopf, so tests can SIGKILL it at an awkward moment and prove
that a restarted operator finishes what the killed one started.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections.abc import Mapping, Sequence
from pathlib import Path

READY_LINE = "scp-operator ready"


class OperatorProcessError(RuntimeError):
    """The operator did not start; the message carries the tail of its log."""


def operator_executable() -> str:
    """``scp-operator`` from the running interpreter's environment."""
    candidate = Path(sys.executable).parent / "scp-operator"
    return str(candidate) if candidate.exists() else "scp-operator"


class OperatorProcess:
    """One ``scp-operator run`` process with its own log file."""

    def __init__(
        self,
        *,
        kubeconfig: Path,
        log_path: Path,
        env: Mapping[str, str],
        namespaces: Sequence[str] = (),
        extra_args: Sequence[str] = (),
    ) -> None:
        self.kubeconfig = kubeconfig
        self.log_path = log_path
        self.env = dict(env)
        self.namespaces = list(namespaces)
        self.extra_args = list(extra_args)
        self.proc: subprocess.Popen[bytes] | None = None
        self._log_offset = 0

    def start(self, timeout: float = 60.0) -> None:
        """Start and wait for the ready line (settings loaded, SCP client built)."""
        self.spawn()
        self.wait_ready(timeout)

    def spawn(self) -> None:
        """Start the process without waiting for it to become ready (e.g. a second instance
        that is expected to wait for the Lease)."""
        args = [operator_executable(), "run", *self.extra_args]
        args += [f"--namespace={ns}" for ns in self.namespaces] or ["--all-namespaces"]
        base = {k: v for k, v in os.environ.items() if not k.startswith("SCP_")}
        env = {**base, "KUBECONFIG": str(self.kubeconfig), **self.env}
        self.log_path.parent.mkdir(parents=True, exist_ok=True)
        self._log_offset = self.log_path.stat().st_size if self.log_path.exists() else 0
        with self.log_path.open("ab") as log:
            self.proc = subprocess.Popen(
                args, stdout=log, stderr=subprocess.STDOUT, env=env, start_new_session=True
            )

    def wait_ready(self, timeout: float = 60.0) -> None:
        """Wait for the ready line of a spawned process; kill it and fail after ``timeout``."""
        assert self.proc is not None, "spawn() first"
        deadline = time.monotonic() + timeout
        while READY_LINE not in self.log():
            if self.proc.poll() is not None:
                raise OperatorProcessError(
                    f"operator exited {self.proc.returncode}:\n{self.tail()}"
                )
            if time.monotonic() > deadline:
                self.kill()
                raise OperatorProcessError(f"operator not ready in {timeout}s:\n{self.tail()}")
            time.sleep(0.1)
        # Kopf needs a moment after the startup hook to list and watch.
        time.sleep(1.0)

    def log(self) -> str:
        """This run's log so far."""
        if not self.log_path.exists():
            return ""
        with self.log_path.open("rb") as f:
            f.seek(self._log_offset)
            return f.read().decode(errors="replace")

    def tail(self, lines: int = 40) -> str:
        """The last lines of the log, for failure messages."""
        return "\n".join(self.log().splitlines()[-lines:])

    def stop(self, grace: float = 15.0) -> None:
        """SIGTERM, then SIGKILL after ``grace`` seconds."""
        if self.proc is None or self.proc.poll() is not None:
            return
        self.proc.send_signal(signal.SIGTERM)
        try:
            self.proc.wait(grace)
        except subprocess.TimeoutExpired:
            self.kill()

    def kill(self) -> None:
        """SIGKILL the process group at once: no cleanup, no finalizer work."""
        if self.proc is None or self.proc.poll() is not None:
            return
        os.killpg(self.proc.pid, signal.SIGKILL)
        self.proc.wait(10)

    @property
    def running(self) -> bool:
        return self.proc is not None and self.proc.poll() is None
