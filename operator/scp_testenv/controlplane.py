"""A real, local Kubernetes control plane (etcd + kube-apiserver) for tests and the sandbox.

This is the same idea as controller-runtime's *envtest*: the genuine ``kube-apiserver`` backed
by a genuine ``etcd``, both bound to free ports on 127.0.0.1 in a private temporary directory,
with RBAC authorization and static bearer tokens for authentication.

This module is the facade; the credentials (tokens, signing key, kubeconfigs) live in
:mod:`scp_testenv.certificates`, the child processes in :mod:`scp_testenv.processes`. Size:
about 480 lines, a third of them this docstring and the API server's flags with their reasons
(now also the feature gates, ``ShardedListAndWatch`` on by default); the rest is the public
surface tests use (start/stop, kill/restart, kubectl/helm, tokens).

What is *not* running: no kube-controller-manager, no scheduler, no kubelet. Consequently

* namespace deletion never finalizes (namespaces stay ``Terminating``), so tests should isolate
  themselves with fresh namespaces instead of relying on deletion;
* garbage collection does not run: deleting an owner leaves its dependents behind (but
  finalizers are honoured: the API server itself removes an object once its finalizers are gone);
* no pods are scheduled or run; the ``ServiceAccount`` admission plugin is disabled (as envtest
  does) because nothing creates the ``default`` service accounts.

What does run inside kube-apiserver: RBAC with its bootstrap roles, CRD establishment
(``apiextensions``), admission (validation, defaulting, CEL), the ``default``/``kube-system``
namespaces, and the TokenRequest API.

Identities. Authentication uses a static token file, which kube-apiserver reads only at start,
so identities must be added *before* :meth:`ControlPlane.start`::

    cp = ControlPlane()
    token = cp.add_service_account_token("ns1", "scp-operator")  # RBAC subject kind ServiceAccount
    cp.add_token("alice", ["devs"])                              # RBAC subject kind User/Group
    with cp:
        cp.kubectl("get", "secrets", "-n", "ns1", user="system:serviceaccount:ns1:scp-operator")
        kubeconfig = cp.kubeconfig_for("alice")                  # a kubeconfig file for alice

A token identity named ``system:serviceaccount:<ns>:<name>`` with the groups
``system:serviceaccounts`` and ``system:serviceaccounts:<ns>`` is exactly what RBAC matches for a
``ServiceAccount`` subject, so RoleBindings written for the operator's real service account apply
to it; the service account object itself need not exist. (Real service-account tokens also work:
create the ServiceAccount and use ``kubectl create token``; pass it to
:meth:`ControlPlane.kubeconfig_for_token`.) The admin identity (``cp.admin_user``, group
``system:masters``) is the one in :attr:`ControlPlane.kubeconfig`.

Faults. :meth:`ControlPlane.kill` SIGKILLs one component (``"etcd"`` or ``"kube-apiserver"``);
:meth:`ControlPlane.restart` starts it again with the same arguments — same ports, data and
certificates, so every kubeconfig stays valid — and waits until it serves again;
:meth:`ControlPlane.ensure_running` brings back whatever is down::

    cp.kill("etcd")              # the API server stays up but answers 503, watches stall
    cp.restart("etcd")           # back, and kube-apiserver ready again
"""

from __future__ import annotations

import json
import os
import re
import shutil
import ssl
import subprocess
import tempfile
import time
import urllib.error
import urllib.request
import weakref
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from types import TracebackType
from typing import Any, Literal, Protocol, get_args

from scp_testenv.binaries import Binaries, resolve_binaries
from scp_testenv.certificates import Tokens, generate_signing_key, ssl_context, write_kubeconfig
from scp_testenv.errors import ControlPlaneError, KubectlError
from scp_testenv.helpers import free_port
from scp_testenv.processes import Supervisor

__all__ = ["Component", "ControlPlane", "ControlPlaneError", "KubectlError", "KubectlFn"]

ADMIN_USER = "scp-testenv-admin"
ADMIN_GROUPS = ("system:masters",)
SERVICE_CLUSTER_IP_RANGE = "10.0.0.0/24"
#: Feature gates every test control plane turns on unless told otherwise:
#: ``ShardedListAndWatch`` (alpha in Kubernetes 1.36+) makes the API server honour the
#: ``shardSelector`` of lists and watches, which sharded operators rely on (docs/scaling.md).
#: Without it the parameter is silently ignored; pass ``feature_gates={}`` (or the gate set to
#: false) for a control plane that behaves like a cluster without it.
DEFAULT_FEATURE_GATES: Mapping[str, bool] = {"ShardedListAndWatch": True}
CLUSTER_NAME = "scp-testenv"

#: The processes of a control plane, in start order.
Component = Literal["etcd", "kube-apiserver"]
COMPONENTS: tuple[Component, ...] = get_args(Component)


class KubectlFn(Protocol):
    """The signature of :meth:`ControlPlane.kubectl` (e.g. for a pytest fixture's type)."""

    def __call__(
        self,
        *args: str,
        user: str | None = ...,
        kubeconfig: Path | None = ...,
        check: bool = ...,
        input: str | None = ...,
        timeout: float = ...,
    ) -> subprocess.CompletedProcess[str]: ...


class ControlPlane:
    """etcd + kube-apiserver on 127.0.0.1; a context manager (``with ControlPlane() as cp:``).

    After :meth:`start`: :attr:`kubeconfig` (admin), :attr:`server` (``https://127.0.0.1:N``),
    :attr:`ca_file`, :attr:`admin_token`, :attr:`workdir` (logs: ``etcd.log``,
    ``kube-apiserver.log``). The work directory is removed by :meth:`stop` unless
    ``keep_workdir`` is true. See the module docstring for identities, faults and limits.
    """

    def __init__(
        self,
        binaries: Binaries | None = None,
        *,
        workdir_parent: Path | None = None,
        apiserver_port: int | None = None,
        extra_apiserver_args: Sequence[str] = (),
        startup_timeout: float = 120.0,
        keep_workdir: bool = False,
        feature_gates: Mapping[str, bool] | None = None,
    ) -> None:
        self._binaries = binaries
        self.feature_gates = dict(DEFAULT_FEATURE_GATES if feature_gates is None else feature_gates)
        self._workdir_parent = workdir_parent
        self._requested_port = apiserver_port
        self._extra_apiserver_args = list(extra_apiserver_args)
        self._startup_timeout = startup_timeout
        self._keep_workdir = keep_workdir
        self._tokens = Tokens()
        self._processes = Supervisor()
        self.admin_user = ADMIN_USER
        self.admin_token = self.add_token(ADMIN_USER, ADMIN_GROUPS)
        self._finalizer = weakref.finalize(self, self._processes.stop_all)
        self._workdir: Path | None = None
        self._port: int | None = None
        self._etcd_port: int | None = None

    # ---- identities (before start) ---------------------------------------------------------

    def add_token(self, user: str, groups: Sequence[str] = (), *, token: str | None = None) -> str:
        """Register a bearer-token identity; returns the token. Must be called before start.

        ``system:authenticated`` is added by the API server to every authenticated user.
        """
        if self._processes.started:
            raise RuntimeError("add_token() must be called before start()")
        return self._tokens.add(user, groups, token=token)

    def add_service_account_token(self, namespace: str, name: str) -> str:
        """An identity that RBAC treats as the service account ``namespace/name``."""
        return self.add_token(
            f"system:serviceaccount:{namespace}:{name}",
            ["system:serviceaccounts", f"system:serviceaccounts:{namespace}"],
        )

    def token_for(self, user: str) -> str:
        return self._tokens.token_for(user)

    # ---- lifecycle -------------------------------------------------------------------------

    def __enter__(self) -> ControlPlane:
        self.start()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()

    @property
    def running(self) -> bool:
        """Both processes are running."""
        return self._processes.all_running()

    def start(self) -> None:
        """Start etcd and kube-apiserver and wait until ``/readyz`` is ok.

        Raises :class:`ControlPlaneError` (with log tails) if that fails within the timeout.
        Port clashes (ports are picked free, then bound by the children) are retried.
        """
        if self._processes.started:
            raise RuntimeError("already started")
        if self._binaries is None:
            self._binaries = resolve_binaries()
        attempts = 1 if self._requested_port else 3
        for attempt in range(1, attempts + 1):
            self._workdir = Path(tempfile.mkdtemp(prefix="scp-testenv-", dir=self._workdir_parent))
            self._processes.bind(self._workdir)
            try:
                self._start_once(self._binaries)
                return
            except ControlPlaneError as exc:
                retry = "address already in use" in str(exc) and attempt < attempts
                # Keep the logs of a failed start for inspection (the message names the dir).
                self._stop(remove_workdir=retry)
                if not retry:
                    raise
            except BaseException:
                self.stop()
                raise

    def stop(self) -> None:
        """Stop both processes (SIGTERM, then SIGKILL) and remove the work directory."""
        self._stop(remove_workdir=not self._keep_workdir)

    def _stop(self, *, remove_workdir: bool) -> None:
        self._processes.stop_all()
        if self._workdir is not None and remove_workdir:
            shutil.rmtree(self._workdir, ignore_errors=True)

    # ---- faults ----------------------------------------------------------------------------

    def kill(self, component: Component) -> None:
        """SIGKILL ``component`` (``"etcd"`` or ``"kube-apiserver"``): every request and watch
        it serves breaks at once. It stays down until :meth:`restart`/:meth:`ensure_running`."""
        self._processes.kill(component)

    def is_running(self, component: Component) -> bool:
        return self._processes.running(component)

    def restart(self, component: Component, timeout: float = 120.0) -> None:
        """Start ``component`` again (SIGKILLing it first if it runs) with its original
        arguments — same port, data directory and certificates — and wait until it is healthy
        and, if kube-apiserver is running, until the API server is ready again."""
        self._processes.respawn(component)
        deadline = time.monotonic() + timeout
        if component == "etcd":
            self._wait("etcd did not come back", self._etcd_healthy, deadline)
            if not self.is_running("kube-apiserver"):
                return
            what = "kube-apiserver did not recover from etcd"
        else:
            what = "kube-apiserver did not come back"
        self._wait(what, self._apiserver_ready, deadline)

    def ensure_running(self, timeout: float = 120.0) -> None:
        """Restart every component that is down (etcd first) and wait until ``/readyz``."""
        deadline = time.monotonic() + timeout
        for component in COMPONENTS:
            if not self.is_running(component):
                self.restart(component, max(deadline - time.monotonic(), 1.0))
        self.wait_ready(max(deadline - time.monotonic(), 1.0))

    def wait_ready(self, timeout: float = 120.0) -> None:
        """Wait until the API server answers ``/readyz`` with ok."""
        self._wait("control plane not ready", self._apiserver_ready, time.monotonic() + timeout)

    # ---- results ---------------------------------------------------------------------------

    @property
    def binaries(self) -> Binaries:
        if self._binaries is None:
            raise RuntimeError("not started")
        return self._binaries

    @property
    def workdir(self) -> Path:
        if self._workdir is None:
            raise RuntimeError("not started")
        return self._workdir

    @property
    def port(self) -> int:
        if self._port is None:
            raise RuntimeError("not started")
        return self._port

    @property
    def server(self) -> str:
        return f"https://127.0.0.1:{self.port}"

    @property
    def etcd_url(self) -> str:
        if self._etcd_port is None:
            raise RuntimeError("not started")
        return f"http://127.0.0.1:{self._etcd_port}"

    @property
    def ca_file(self) -> Path:
        """The CA bundle of the API server's self-generated serving certificate."""
        return self.workdir / "pki" / "apiserver.crt"

    @property
    def kubeconfig(self) -> Path:
        """Kubeconfig of the admin identity (group ``system:masters``)."""
        return self.workdir / "kubeconfig"

    @property
    def env(self) -> dict[str, str]:
        """``os.environ`` plus ``KUBECONFIG`` for the admin, for subprocesses."""
        return {**os.environ, "KUBECONFIG": str(self.kubeconfig)}

    def kubeconfig_for(self, user: str) -> Path:
        """A kubeconfig file for an identity registered with :meth:`add_token`."""
        return self.kubeconfig_for_token(self.token_for(user), user)

    def kubeconfig_for_token(self, token: str, name: str) -> Path:
        """A kubeconfig file authenticating with any bearer token (e.g. a TokenRequest one)."""
        safe = re.sub(r"[^A-Za-z0-9_.-]+", "_", name)
        path = self.workdir / "kubeconfigs" / f"{safe}.kubeconfig"
        path.parent.mkdir(exist_ok=True)
        self._write_kubeconfig(path, name, token)
        return path

    # ---- helpers ---------------------------------------------------------------------------

    def ssl_context(self) -> ssl.SSLContext:
        return ssl_context(self.ca_file)

    def get_json(self, path: str, *, user: str | None = None, timeout: float = 10.0) -> Any:
        """GET ``path`` from the API server as ``user`` (default admin); parsed JSON."""
        token = self.token_for(user) if user else self.admin_token
        request = urllib.request.Request(  # noqa: S310 (https to our own server)
            self.server + path, headers={"Authorization": f"Bearer {token}"}
        )
        with urllib.request.urlopen(  # noqa: S310
            request, timeout=timeout, context=self.ssl_context()
        ) as response:
            return json.load(response)

    def kubectl(
        self,
        *args: str,
        user: str | None = None,
        kubeconfig: Path | None = None,
        check: bool = True,
        input: str | None = None,
        timeout: float = 120.0,
    ) -> subprocess.CompletedProcess[str]:
        """Run the built kubectl as ``user`` (a :meth:`add_token` identity; default admin) or
        with ``kubeconfig``; raise :class:`KubectlError` on failure unless ``check=False``."""
        config = kubeconfig or (self.kubeconfig_for(user) if user else self.kubeconfig)
        cache = f"--cache-dir={self.workdir / 'kubectl-cache'}"
        return self._run(
            [str(self.binaries.kubectl), f"--kubeconfig={config}", cache, *args],
            check=check,
            input=input,
            timeout=timeout,
        )

    def helm(
        self,
        *args: str,
        check: bool = True,
        input: str | None = None,
        timeout: float = 300.0,
    ) -> subprocess.CompletedProcess[str]:
        """Run the built helm as admin; raise :class:`KubectlError` on failure unless
        ``check=False``."""
        command = [str(self.binaries.helm), f"--kubeconfig={self.kubeconfig}", *args]
        return self._run(command, check=check, input=input, timeout=timeout)

    @staticmethod
    def _run(
        command: list[str], *, check: bool, input: str | None, timeout: float
    ) -> subprocess.CompletedProcess[str]:
        result = subprocess.run(
            command, input=input, capture_output=True, text=True, timeout=timeout, check=False
        )
        if check and result.returncode != 0:
            raise KubectlError(result.returncode, command, result.stdout, result.stderr)
        return result

    # ---- internals -------------------------------------------------------------------------

    def _write_kubeconfig(self, path: Path, user: str, token: str) -> None:
        write_kubeconfig(
            path,
            cluster=CLUSTER_NAME,
            server=self.server,
            ca_file=self.ca_file,
            user=user,
            token=token,
        )

    def _wait(self, what: str, probe: Callable[[], bool], deadline: float) -> None:
        self._processes.wait(what, probe, max(deadline - time.monotonic(), 0.0))

    def _start_once(self, binaries: Binaries) -> None:
        workdir = self.workdir
        deadline = time.monotonic() + self._startup_timeout
        (workdir / "pki").mkdir(mode=0o700)
        sa_key = workdir / "pki" / "service-account.key"
        generate_signing_key(sa_key)
        token_file = workdir / "tokens.csv"
        self._tokens.write_file(token_file)

        self._etcd_port, peer_port = free_port(), free_port()
        self._processes.spawn(
            "etcd",
            [
                str(binaries.etcd),
                f"--name={CLUSTER_NAME}",
                f"--data-dir={workdir / 'etcd'}",
                f"--listen-client-urls={self.etcd_url}",
                f"--advertise-client-urls={self.etcd_url}",
                f"--listen-peer-urls=http://127.0.0.1:{peer_port}",
                f"--initial-advertise-peer-urls=http://127.0.0.1:{peer_port}",
                f"--initial-cluster={CLUSTER_NAME}=http://127.0.0.1:{peer_port}",
                "--unsafe-no-fsync=true",  # test data: durability is not needed, speed is
                "--log-level=warn",
            ],
        )
        self._wait("etcd did not become healthy", self._etcd_healthy, deadline)

        self._port = self._requested_port or free_port()
        self._processes.spawn(
            "kube-apiserver",
            [
                str(binaries.kube_apiserver),
                f"--etcd-servers={self.etcd_url}",
                "--bind-address=127.0.0.1",
                "--advertise-address=127.0.0.1",
                # A loopback advertise address is refused by the endpoint reconciler of the
                # "kubernetes" Service; nothing runs in-cluster, so it has no endpoints instead.
                "--endpoint-reconciler-type=none",
                f"--secure-port={self._port}",
                f"--cert-dir={workdir / 'pki'}",
                "--authorization-mode=RBAC",
                f"--token-auth-file={token_file}",
                f"--service-account-issuer={self.server}",
                f"--service-account-key-file={sa_key}",
                f"--service-account-signing-key-file={sa_key}",
                f"--service-cluster-ip-range={SERVICE_CLUSTER_IP_RANGE}",
                # No controller-manager creates the "default" service accounts (as in envtest).
                "--disable-admission-plugins=ServiceAccount",
                "--allow-privileged=true",
                "--profiling=false",
                *self._feature_gate_args(),
                *self._extra_apiserver_args,
            ],
        )
        self._wait("kube-apiserver did not become ready", self._apiserver_ready, deadline)
        self._write_kubeconfig(self.kubeconfig, self.admin_user, self.admin_token)

    def _feature_gate_args(self) -> list[str]:
        """``--feature-gates=A=true,B=false`` for :attr:`feature_gates`; nothing when empty."""
        if not self.feature_gates:
            return []
        gates = ",".join(
            f"{name}={str(on).lower()}" for name, on in sorted(self.feature_gates.items())
        )
        return [f"--feature-gates={gates}"]

    def _etcd_healthy(self) -> bool:
        try:
            with urllib.request.urlopen(  # noqa: S310 (plain http on loopback)
                f"{self.etcd_url}/health", timeout=2
            ) as response:
                body: Mapping[str, Any] = json.load(response)
        except (OSError, ValueError):
            return False
        return body.get("health") == "true"

    def _apiserver_ready(self) -> bool:
        if not self.ca_file.exists():
            return False
        request = urllib.request.Request(  # noqa: S310
            f"{self.server}/readyz", headers={"Authorization": f"Bearer {self.admin_token}"}
        )
        try:
            with urllib.request.urlopen(  # noqa: S310
                request, timeout=2, context=self.ssl_context()
            ) as response:
                body = response.read().strip()
                return bool(response.status == 200 and body == b"ok")
        except (OSError, ssl.SSLError, urllib.error.URLError):
            return False
