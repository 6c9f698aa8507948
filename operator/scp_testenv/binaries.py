"""Locate (and, if needed, build) the control-plane binaries: kube-apiserver, etcd, kubectl, helm.

The binaries are built from source by ``tools/controlplane/build.sh`` (Go module proxy, pinned
versions, cached per version set); see that script for the cache layout. Binaries a user already
has are honoured, with the same variables as controller-runtime's envtest:

* ``TEST_ASSET_KUBE_APISERVER``, ``TEST_ASSET_ETCD``, ``TEST_ASSET_KUBECTL``: explicit paths;
* ``KUBEBUILDER_ASSETS``: a directory holding ``kube-apiserver``, ``etcd`` and ``kubectl``;
* ``TEST_ASSET_HELM`` or ``HELM_BINARY``: an explicit path to ``helm``.

When all four are given this way nothing is built (and neither Go nor bash is needed);
otherwise ``build.sh`` builds only the missing ones.
"""

from __future__ import annotations

import os
import re
import subprocess
from dataclasses import dataclass
from pathlib import Path

__all__ = [
    "Binaries",
    "BinariesError",
    "BinariesNotBuilt",
    "find_repo_root",
    "pinned_versions",
    "resolve_binaries",
]

BUILD_SCRIPT = Path("tools") / "controlplane" / "build.sh"

# Environment variables naming one binary each, in order of precedence.
_ENV_VARS: dict[str, tuple[str, ...]] = {
    "kube-apiserver": ("TEST_ASSET_KUBE_APISERVER",),
    "etcd": ("TEST_ASSET_ETCD",),
    "kubectl": ("TEST_ASSET_KUBECTL",),
    "helm": ("TEST_ASSET_HELM", "HELM_BINARY"),
}


class BinariesError(RuntimeError):
    """The binaries could not be found or built."""


class BinariesNotBuilt(BinariesError):
    """``resolve_binaries(build=False)``: some binaries would have to be built first."""


@dataclass(frozen=True)
class Binaries:
    """Paths of the control-plane executables."""

    kube_apiserver: Path
    etcd: Path
    kubectl: Path
    helm: Path

    @classmethod
    def from_dir(cls, bin_dir: Path) -> Binaries:
        """The binaries named ``kube-apiserver``, ``etcd``, ``kubectl``, ``helm`` in a directory."""
        return cls(
            kube_apiserver=bin_dir / "kube-apiserver",
            etcd=bin_dir / "etcd",
            kubectl=bin_dir / "kubectl",
            helm=bin_dir / "helm",
        )

    def as_dict(self) -> dict[str, Path]:
        return {
            "kube-apiserver": self.kube_apiserver,
            "etcd": self.etcd,
            "kubectl": self.kubectl,
            "helm": self.helm,
        }

    def check(self) -> None:
        """Raise :class:`BinariesError` unless every path is an executable file."""
        for name, path in self.as_dict().items():
            if not (path.is_file() and os.access(path, os.X_OK)):
                raise BinariesError(f"{name} is not an executable file: {path}")


def find_repo_root() -> Path:
    """The scp-operator checkout: ``$SCP_OPERATOR_REPO_ROOT``, else an ancestor of this file."""
    explicit = os.environ.get("SCP_OPERATOR_REPO_ROOT")
    if explicit:
        root = Path(explicit).resolve()
        if not (root / BUILD_SCRIPT).is_file():
            raise BinariesError(f"SCP_OPERATOR_REPO_ROOT={explicit} has no {BUILD_SCRIPT}")
        return root
    for parent in Path(__file__).resolve().parents:
        if (parent / BUILD_SCRIPT).is_file():
            return parent
    raise BinariesError(
        f"cannot find {BUILD_SCRIPT} above {__file__}; set SCP_OPERATOR_REPO_ROOT to the "
        "scp-operator checkout, or point TEST_ASSET_*/KUBEBUILDER_ASSETS/HELM_BINARY at binaries"
    )


def _from_environment() -> dict[str, Path]:
    """The binaries the environment names explicitly (see the module docstring)."""
    found: dict[str, Path] = {}
    assets = os.environ.get("KUBEBUILDER_ASSETS")
    for name, variables in _ENV_VARS.items():
        for variable in variables:
            value = os.environ.get(variable)
            if value:
                found[name] = Path(value)
                break
        else:
            if assets and os.access(Path(assets) / name, os.X_OK):
                found[name] = Path(assets) / name
    return found


def pinned_versions(repo_root: Path | None = None) -> dict[str, str]:
    """The versions pinned in ``tools/controlplane/{kube,etcd,helm}/go.mod``.

    Keys: ``kubernetes`` (e.g. ``v1.37.2``), ``etcd`` (``v3.7.3``), ``helm`` (``v4.3.1``).
    """
    base = (repo_root or find_repo_root()) / "tools" / "controlplane"
    patterns = {
        "kubernetes": ("kube", r"k8s\.io/kubernetes"),
        "etcd": ("etcd", r"go\.etcd\.io/etcd/server/v3"),
        "helm": ("helm", r"helm\.sh/helm/v\d+"),
    }
    versions: dict[str, str] = {}
    for key, (module_dir, module) in patterns.items():
        text = (base / module_dir / "go.mod").read_text()
        match = re.search(rf"^\s*(?:require\s+)?{module}\s+(v\S+)", text, re.MULTILINE)
        if not match:
            raise BinariesError(f"no {module} requirement in {base / module_dir / 'go.mod'}")
        versions[key] = match.group(1)
    return versions


def resolve_binaries(*, build: bool = True) -> Binaries:
    """Return the four binaries, building the missing ones with ``tools/controlplane/build.sh``.

    The first build takes a while (about half an hour on two cores with an empty Go module
    cache); later calls only check a stamp file. Build progress goes to this process's stderr.
    With ``build=False`` nothing is built: :class:`BinariesNotBuilt` is raised instead.
    """
    given = _from_environment()
    if len(given) == len(_ENV_VARS):
        binaries = Binaries(
            kube_apiserver=given["kube-apiserver"],
            etcd=given["etcd"],
            kubectl=given["kubectl"],
            helm=given["helm"],
        )
    else:
        script = find_repo_root() / BUILD_SCRIPT
        try:
            result = subprocess.run(
                ["bash", str(script), *([] if build else ["--check"])],
                stdin=subprocess.DEVNULL,
                stdout=subprocess.PIPE,
                text=True,
                check=False,
            )
        except OSError as exc:
            raise BinariesError(f"cannot run {script}: {exc}") from exc
        lines = [line for line in result.stdout.splitlines() if line.strip()]
        if result.returncode == 3 and not build:
            raise BinariesNotBuilt(f"control-plane binaries are not built yet (run {script})")
        if result.returncode != 0 or not lines:
            raise BinariesError(
                f"{script} failed with exit code {result.returncode} (its stderr has the details)"
            )
        binaries = Binaries.from_dir(Path(lines[-1]))
    binaries.check()
    return binaries
