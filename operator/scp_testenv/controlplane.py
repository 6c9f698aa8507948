"""A real, local Kubernetes control plane (etcd + kube-apiserver) for tests and the sandbox.

This is the same idea as controller-runtime's *envtest*: the genuine ``kube-apiserver`` backed
by a genuine ``etcd``, both bound to free ports on 127.0.0.1 in a private temporary directory,
with RBAC authorization and static bearer tokens for authentication.

Size: about 580 lines (certificates, processes and the facade in one module); splitting it, with
public ``kill()``/``restart()`` for the fault harness, is open issue 13, item 5.

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
"""

from __future__ import annotations

import base64
import contextlib
import importlib
import json
import os
import re
import secrets
import shutil
import signal
import socket
import ssl
import subprocess
import sys
import tempfile
import threading
import time
import urllib.error
import urllib.request
import weakref
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from types import TracebackType
from typing import IO, Any, Protocol

from scp_testenv.binaries import Binaries, resolve_binaries

__all__ = ["ControlPlane", "ControlPlaneError", "KubectlError", "KubectlFn"]

ADMIN_USER = "scp-testenv-admin"
ADMIN_GROUPS = ("system:masters",)
SERVICE_CLUSTER_IP_RANGE = "10.0.0.0/24"
CLUSTER_NAME = "scp-testenv"
_LOG_TAIL_LINES = 40


class ControlPlaneError(RuntimeError):
    """The control plane failed to start (the message includes the tails of its logs)."""


class KubectlError(subprocess.CalledProcessError):
    """``kubectl`` (or ``helm``) exited non-zero; ``str()`` includes the command and stderr."""

    def __str__(self) -> str:
        stderr = self.stderr.strip() if isinstance(self.stderr, str) else self.stderr
        return f"{super().__str__()}\nstderr:\n{stderr}"


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


def free_port() -> int:
    """A TCP port on 127.0.0.1 that is free right now (it may be taken again before use)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def _tail(path: Path, lines: int = _LOG_TAIL_LINES) -> str:
    try:
        text = path.read_text(errors="replace")
    except OSError:
        return "(no log)"
    return "\n".join(text.splitlines()[-lines:]) or "(empty log)"


def generate_signing_key(path: Path) -> None:
    """Write a PEM RSA private key (service-account token signing) with openssl or cryptography."""
    openssl = shutil.which("openssl")
    if openssl:
        subprocess.run(
            [
                openssl,
                "genpkey",
                "-algorithm",
                "RSA",
                "-pkeyopt",
                "rsa_keygen_bits:2048",
                "-out",
                str(path),
            ],
            capture_output=True,
            check=True,
        )
        return
    # Fallback without the CLI (e.g. slim container images): the optional 'cryptography' package.
    try:
        primitives = importlib.import_module("cryptography.hazmat.primitives")
        rsa = importlib.import_module("cryptography.hazmat.primitives.asymmetric.rsa")
    except ImportError as exc:
        raise ControlPlaneError(
            "need the openssl CLI or the 'cryptography' package to create a signing key"
        ) from exc
    serialization: Any = primitives.serialization
    key: Any = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    path.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.TraditionalOpenSSL,
            serialization.NoEncryption(),
        )
    )


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


def _stop_all(processes: list[subprocess.Popen[bytes]], grace: float = 10.0) -> None:
    """Stop processes in reverse start order (kube-apiserver before etcd)."""
    while processes:
        _stop_process(processes.pop(), grace)


class ControlPlane:
    """etcd + kube-apiserver on 127.0.0.1; a context manager (``with ControlPlane() as cp:``).

    After :meth:`start`: :attr:`kubeconfig` (admin), :attr:`server` (``https://127.0.0.1:N``),
    :attr:`ca_file`, :attr:`admin_token`, :attr:`workdir` (logs: ``etcd.log``,
    ``kube-apiserver.log``). The work directory is removed by :meth:`stop` unless
    ``keep_workdir`` is true. See the module docstring for identities and limits.
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
    ) -> None:
        self._binaries = binaries
        self._workdir_parent = workdir_parent
        self._requested_port = apiserver_port
        self._extra_apiserver_args = list(extra_apiserver_args)
        self._startup_timeout = startup_timeout
        self._keep_workdir = keep_workdir
        self._tokens: dict[str, tuple[str, tuple[str, ...]]] = {}  # user -> (token, groups)
        self._processes: list[subprocess.Popen[bytes]] = []
        self.admin_user = ADMIN_USER
        self.admin_token = self.add_token(ADMIN_USER, ADMIN_GROUPS)
        self._finalizer = weakref.finalize(self, _stop_all, self._processes)
        self._workdir: Path | None = None
        self._port: int | None = None
        self._etcd_port: int | None = None
        self._log_files: list[IO[bytes]] = []

    # ---- identities (before start) ---------------------------------------------------------

    def add_token(self, user: str, groups: Sequence[str] = (), *, token: str | None = None) -> str:
        """Register a bearer-token identity; returns the token. Must be called before start.

        ``system:authenticated`` is added by the API server to every authenticated user.
        """
        if self._processes:
            raise RuntimeError("add_token() must be called before start()")
        if not user or any(c in user for c in ',"\n'):
            raise ValueError(f"unsupported user name: {user!r}")
        if any(not g or any(c in g for c in ',"\n') for g in groups):
            raise ValueError(f"unsupported group names: {groups!r}")
        token = token or secrets.token_hex(24)
        self._tokens[user] = (token, tuple(groups))
        return token

    def add_service_account_token(self, namespace: str, name: str) -> str:
        """An identity that RBAC treats as the service account ``namespace/name``."""
        return self.add_token(
            f"system:serviceaccount:{namespace}:{name}",
            ["system:serviceaccounts", f"system:serviceaccounts:{namespace}"],
        )

    def token_for(self, user: str) -> str:
        return self._tokens[user][0]

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
        return bool(self._processes) and all(p.poll() is None for p in self._processes)

    def start(self) -> None:
        """Start etcd and kube-apiserver and wait until ``/readyz`` is ok.

        Raises :class:`ControlPlaneError` (with log tails) if that fails within the timeout.
        Port clashes (ports are picked free, then bound by the children) are retried.
        """
        if self._processes:
            raise RuntimeError("already started")
        if self._binaries is None:
            self._binaries = resolve_binaries()
        attempts = 1 if self._requested_port else 3
        for attempt in range(1, attempts + 1):
            self._workdir = Path(tempfile.mkdtemp(prefix="scp-testenv-", dir=self._workdir_parent))
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
        _stop_all(self._processes)
        for log in self._log_files:
            log.close()
        self._log_files.clear()
        if self._workdir is not None and remove_workdir:
            shutil.rmtree(self._workdir, ignore_errors=True)

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
        return ssl.create_default_context(cafile=str(self.ca_file))

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
        ca_data = base64.b64encode(self.ca_file.read_bytes()).decode()
        config = {
            "apiVersion": "v1",
            "kind": "Config",
            "clusters": [
                {
                    "name": CLUSTER_NAME,
                    "cluster": {"server": self.server, "certificate-authority-data": ca_data},
                }
            ],
            "users": [{"name": user, "user": {"token": token}}],
            "contexts": [
                {
                    "name": CLUSTER_NAME,
                    "context": {"cluster": CLUSTER_NAME, "user": user, "namespace": "default"},
                }
            ],
            "current-context": CLUSTER_NAME,
        }
        tmp = path.with_suffix(".tmp")
        tmp.write_text(json.dumps(config, indent=2) + "\n")
        tmp.chmod(0o600)
        tmp.replace(path)

    def _spawn(self, name: str, argv: list[str]) -> subprocess.Popen[bytes]:
        log = (self.workdir / f"{name}.log").open("ab")
        self._log_files.append(log)
        proc = subprocess.Popen(
            argv,
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=subprocess.STDOUT,
            cwd=self.workdir,
            start_new_session=True,
            preexec_fn=_parent_death_signal(),
        )
        self._processes.append(proc)
        return proc

    def _failure(self, what: str) -> ControlPlaneError:
        logs = "\n".join(
            f"--- last lines of {path} ---\n{_tail(path)}"
            for path in (self.workdir / "etcd.log", self.workdir / "kube-apiserver.log")
            if path.exists()
        )
        return ControlPlaneError(f"{what} (work directory: {self.workdir})\n{logs}")

    def _wait(self, what: str, probe: Callable[[], bool], deadline: float) -> None:
        while True:
            for proc in self._processes:
                if proc.poll() is not None:
                    argv = proc.args
                    name = Path(str(argv[0] if isinstance(argv, list) else argv)).name
                    raise self._failure(f"{what}: {name} exited with {proc.returncode}")
            if probe():
                return
            if time.monotonic() > deadline:
                raise self._failure(f"{what}: timed out after {self._startup_timeout:.0f}s")
            time.sleep(0.2)

    def _start_once(self, binaries: Binaries) -> None:
        workdir = self.workdir
        deadline = time.monotonic() + self._startup_timeout
        (workdir / "pki").mkdir(mode=0o700)
        sa_key = workdir / "pki" / "service-account.key"
        generate_signing_key(sa_key)
        token_file = workdir / "tokens.csv"
        token_file.write_text(
            "".join(
                f'{token},{user},{user},"{",".join(groups)}"\n'
                for user, (token, groups) in self._tokens.items()
            )
        )
        token_file.chmod(0o600)

        self._etcd_port, peer_port = free_port(), free_port()
        self._spawn(
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
        self._spawn(
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
                *self._extra_apiserver_args,
            ],
        )
        self._wait("kube-apiserver did not become ready", self._apiserver_ready, deadline)
        self._write_kubeconfig(self.kubeconfig, self.admin_user, self.admin_token)

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
