"""The e2e tier: a real kube-apiserver + etcd (``scp_testenv.ControlPlane``), started once per
session, with real kubectl and helm. Every test under tests/e2e is marked ``e2e``.

The binaries are resolved (built on first use, cached afterwards) when collection finishes, so
a first-time build is not charged to any test's timeout. No controller-manager runs: namespaces
never finish deleting and there is no garbage collection (see ``scp_testenv.controlplane``).

Identities: ``UNPRIVILEGED_USER`` (no RBAC grants) and ``OPERATOR_SA_USER`` (RBAC subject
``ServiceAccount scp-operator/scp-operator``) have tokens; run kubectl as them with
``kubectl(..., user=...)``. For a service account in a test's own namespace, create it and use
a real token: ``kubectl("create", "token", name, "-n", namespace)`` then
``control_plane.kubeconfig_for_token(token, name)`` and ``kubectl(..., kubeconfig=path)``.
"""

from __future__ import annotations

import re
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from scp_testenv import Binaries, ControlPlane, KubectlFn
from scp_testenv.binaries import BinariesNotBuilt, resolve_binaries

E2E_DIR = Path(__file__).resolve().parent
UNPRIVILEGED_USER = "e2e-unprivileged"
OPERATOR_SA_NAMESPACE = "scp-operator"
OPERATOR_SA_NAME = "scp-operator"
OPERATOR_SA_USER = f"system:serviceaccount:{OPERATOR_SA_NAMESPACE}:{OPERATOR_SA_NAME}"

_BINARIES = pytest.StashKey[Binaries]()


@pytest.hookimpl(tryfirst=True)
def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    for item in items:
        if E2E_DIR in item.path.parents:
            item.add_marker(pytest.mark.e2e)


def pytest_collection_finish(session: pytest.Session) -> None:
    """Build the binaries (first time only) before any test runs, outside test timeouts."""
    if not any(E2E_DIR in item.path.parents for item in session.items):
        return
    try:
        binaries = resolve_binaries(build=False)
    except BinariesNotBuilt:
        reporter = session.config.pluginmanager.get_plugin("terminalreporter")
        if reporter is not None:
            reporter.write_line(
                "e2e: building kube-apiserver/etcd/kubectl/helm from source "
                "(first run only; takes a while) ..."
            )
        binaries = resolve_binaries()
    session.config.stash[_BINARIES] = binaries


@pytest.fixture(scope="session")
def control_plane(request: pytest.FixtureRequest) -> Iterator[ControlPlane]:
    """etcd + kube-apiserver for the whole session; ``.kubeconfig`` is the admin's."""
    binaries = request.config.stash.get(_BINARIES, None) or resolve_binaries()
    cp = ControlPlane(binaries)
    cp.add_token(UNPRIVILEGED_USER, ["e2e:unprivileged"])
    cp.add_service_account_token(OPERATOR_SA_NAMESPACE, OPERATOR_SA_NAME)
    with cp:
        yield cp


@pytest.fixture
def kubectl(control_plane: ControlPlane) -> KubectlFn:
    """``kubectl(*args, user=None, kubeconfig=None, check=True, input=None)`` → CompletedProcess.

    Runs the built kubectl against the control plane (as admin unless ``user``/``kubeconfig``);
    raises ``scp_testenv.KubectlError`` (with stderr) on failure unless ``check=False``.
    """
    return control_plane.kubectl


@pytest.fixture
def make_namespace(control_plane: ControlPlane) -> Iterator[Callable[[str], str]]:
    """Factory: ``make_namespace(prefix)`` creates ``e2e-<prefix>-<random>`` and returns its name;
    each is deleted after the test (though it never finishes terminating)."""
    made: list[str] = []

    def make(prefix: str) -> str:
        name = f"e2e-{prefix}-{uuid.uuid4().hex[:6]}"
        control_plane.kubectl("create", "namespace", name)
        made.append(name)
        return name

    yield make
    for name in made:
        control_plane.kubectl("delete", "namespace", name, "--wait=false", check=False)


@pytest.fixture
def namespace(make_namespace: Callable[[str], str], request: pytest.FixtureRequest) -> str:
    """A fresh namespace per test, named after it."""
    slug = re.sub(r"[^a-z0-9]+", "-", request.node.name.lower()).strip("-")[:40].strip("-")
    return make_namespace(slug)
