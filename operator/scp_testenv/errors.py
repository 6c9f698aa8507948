"""The errors of the local control plane."""

from __future__ import annotations

import subprocess

__all__ = ["ControlPlaneError", "KubectlError"]


class ControlPlaneError(RuntimeError):
    """The control plane failed to start (the message includes the tails of its logs)."""


class KubectlError(subprocess.CalledProcessError):
    """``kubectl`` (or ``helm``) exited non-zero; ``str()`` includes the command and stderr."""

    def __str__(self) -> str:
        stderr = self.stderr.strip() if isinstance(self.stderr, str) else self.stderr
        return f"{super().__str__()}\nstderr:\n{stderr}"
