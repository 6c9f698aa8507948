"""``make sandbox``, the README's first command, runs its whole walk-through and ends clean.

The sandbox is a script (``tools/sandbox.py``) with its own control plane, emulator and
operator; it stops at the first expectation that does not hold (a reason renamed, a deletion
that does not happen), so running it here keeps the README's first command working.
"""

from __future__ import annotations

import os
import subprocess
import sys

from scp_testenv import ControlPlane
from tests.conftest import REPO


def test_the_sandbox_walk_through_deletes_every_sample_and_exits_zero(
    control_plane: ControlPlane,
) -> None:
    # The session's binaries (tests run with a temporary HOME, so the sandbox would not find
    # the cache and would build them again), named the way binaries.py honours.
    built = control_plane.binaries
    env = {
        **os.environ,
        "PYTHONPATH": str(REPO / "operator"),
        "TEST_ASSET_KUBE_APISERVER": str(built.kube_apiserver),
        "TEST_ASSET_ETCD": str(built.etcd),
        "TEST_ASSET_KUBECTL": str(built.kubectl),
        "TEST_ASSET_HELM": str(built.helm),
    }
    done = subprocess.run(
        [sys.executable, str(REPO / "tools" / "sandbox.py")],
        cwd=REPO,
        env=env,
        capture_output=True,
        text=True,
        timeout=280,  # under the suite's per-test timeout; the walk-through takes ~15 s
        check=False,
    )
    out = done.stdout + done.stderr
    assert done.returncode == 0, out[-4000:]
    assert "Done: every sample VirtualServer is gone" in out
    assert "ServerLocked" in out  # the locked server's 409, named as the lock
    assert "-> 202" in out
