"""A real local Kubernetes control plane (etcd + kube-apiserver) for e2e tests and the sandbox.

* :func:`resolve_binaries` finds or builds kube-apiserver, etcd, kubectl and helm
  (``tools/controlplane/build.sh``; cached per version set).
* :class:`ControlPlane` runs etcd + kube-apiserver on 127.0.0.1 with RBAC and token identities.
* ``python -m scp_testenv up`` starts one for interactive use; ``... binaries`` prints the paths.
"""

from scp_testenv.binaries import Binaries, BinariesError, resolve_binaries
from scp_testenv.controlplane import ControlPlane, ControlPlaneError, KubectlError, KubectlFn

__all__ = [
    "Binaries",
    "BinariesError",
    "ControlPlane",
    "ControlPlaneError",
    "KubectlError",
    "KubectlFn",
    "resolve_binaries",
]
