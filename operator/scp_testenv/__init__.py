"""A real local Kubernetes control plane (etcd + kube-apiserver) for e2e tests and the sandbox.

* :func:`resolve_binaries` finds or builds kube-apiserver, etcd, kubectl and helm
  (``tools/controlplane/build.sh``; cached per version set).
* :class:`ControlPlane` runs etcd + kube-apiserver on 127.0.0.1 with RBAC and token identities,
  and can kill and restart either of them (:mod:`scp_testenv.controlplane`; credentials in
  :mod:`scp_testenv.certificates`, child processes in :mod:`scp_testenv.processes`).
* :class:`~scp_testenv.operator_process.OperatorProcess` runs ``scp-operator`` as a process.
* :func:`wait_for`, :func:`eventually` and :func:`free_port` (:mod:`scp_testenv.helpers`) are
  what every test tier, the sandbox and the benchmark share.
* ``python -m scp_testenv up`` starts one for interactive use; ``... binaries`` prints the paths.

Repository tooling: not part of the wheel (``pyproject.toml`` excludes it). Tests get it through
pytest's ``pythonpath``; ``tools/`` scripts put ``operator/`` on ``sys.path`` themselves.
"""

from scp_testenv.binaries import Binaries, BinariesError, resolve_binaries
from scp_testenv.controlplane import (
    Component,
    ControlPlane,
    ControlPlaneError,
    KubectlError,
    KubectlFn,
)
from scp_testenv.helpers import WaitTimeout, eventually, free_port, wait_for

__all__ = [
    "Binaries",
    "BinariesError",
    "Component",
    "ControlPlane",
    "ControlPlaneError",
    "KubectlError",
    "KubectlFn",
    "WaitTimeout",
    "eventually",
    "free_port",
    "resolve_binaries",
    "wait_for",
]
