"""Support for the fault-injection and CRD-cascade e2e tests: a private control plane that can be
restarted piece by piece, a TCP proxy that cuts the operator's connections on demand, and the
bookkeeping of a seeded fault run.

Why a private control plane: these tests kill kube-apiserver and etcd and delete the CRD, which
would break every other e2e test sharing the session's control plane. A second
:class:`~scp_testenv.ControlPlane` picks its own free ports and costs a few seconds.

Restarting pieces uses :class:`ControlPlane` internals (``_processes``, ``_spawn``, ``_wait``,
``_etcd_healthy``, ``_apiserver_ready``): the argument lists are kept by ``Popen.args``, so a
restarted process comes back on the same ports with the same data directory and certificates,
and the kubeconfigs stay valid.
"""

from __future__ import annotations

import contextlib
import json
import os
import random
import select
import signal
import socket
import struct
import subprocess
import threading
import time
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from scp_operator import constants
from scp_testenv import ControlPlane
from scp_testenv.binaries import resolve_binaries
from tests.e2e.operator_fixtures import CRD_FILE

# --- a private, restartable control plane -----------------------------------------------------


@contextlib.contextmanager
def private_control_plane() -> Iterator[ControlPlane]:
    """etcd + kube-apiserver of this test module alone, with the VirtualServer CRD installed."""
    with ControlPlane(resolve_binaries(build=False)) as cp:
        install_crd(cp)
        yield cp


def install_crd(cp: ControlPlane) -> None:
    cp.kubectl("apply", "-f", str(CRD_FILE))
    cp.kubectl("wait", "--for=condition=Established", f"crd/{constants.CRD_NAME}", "--timeout=60s")


def _process(cp: ControlPlane, binary: str) -> subprocess.Popen[bytes]:
    for proc in cp._processes:
        args = proc.args
        if isinstance(args, list) and Path(str(args[0])).name == binary:
            return proc
    raise RuntimeError(f"{binary} is not running")


def _kill(proc: subprocess.Popen[bytes]) -> None:
    with contextlib.suppress(ProcessLookupError):
        os.killpg(proc.pid, signal.SIGKILL)
    proc.wait(10)


def _respawn(cp: ControlPlane, binary: str, old: subprocess.Popen[bytes]) -> None:
    """Start ``binary`` again with its old arguments, in its old place (stop order matters)."""
    index = cp._processes.index(old)
    new = cp._spawn(binary, [str(a) for a in old.args])  # type: ignore[union-attr]
    cp._processes.remove(new)
    cp._processes[index] = new


def kill_apiserver(cp: ControlPlane) -> None:
    """SIGKILL kube-apiserver: every watch and request in flight breaks at once."""
    _kill(_process(cp, "kube-apiserver"))


def start_apiserver(cp: ControlPlane, timeout: float = 120.0) -> None:
    old = _process(cp, "kube-apiserver")
    _respawn(cp, "kube-apiserver", old)
    cp._wait("kube-apiserver did not come back", cp._apiserver_ready, time.monotonic() + timeout)


def kill_etcd(cp: ControlPlane) -> None:
    """SIGKILL etcd: the API server stays up but cannot read or write (503s, stalled watches)."""
    _kill(_process(cp, "etcd"))


def start_etcd(cp: ControlPlane, timeout: float = 120.0) -> None:
    old = _process(cp, "etcd")
    _respawn(cp, "etcd", old)
    deadline = time.monotonic() + timeout
    cp._wait("etcd did not come back", cp._etcd_healthy, deadline)
    cp._wait("kube-apiserver did not recover from etcd", cp._apiserver_ready, deadline)


def ensure_running(cp: ControlPlane) -> None:
    """Bring back whatever a fault left stopped (healing before the invariants are checked)."""
    if _process(cp, "etcd").poll() is not None:
        start_etcd(cp)
    if _process(cp, "kube-apiserver").poll() is not None:
        start_apiserver(cp)
    cp._wait("control plane not ready", cp._apiserver_ready, time.monotonic() + 120)


def kubeconfig_via(cp: ControlPlane, port: int, path: Path) -> Path:
    """The admin kubeconfig, but pointing at ``127.0.0.1:port`` (the proxy; same certificate)."""
    config = json.loads(cp.kubeconfig.read_text())
    config["clusters"][0]["cluster"]["server"] = f"https://127.0.0.1:{port}"
    path.write_text(json.dumps(config))
    path.chmod(0o600)
    return path


# --- a TCP proxy that can cut every connection ------------------------------------------------


class TcpProxy:
    """Forwards 127.0.0.1:``port`` to ``target``; :meth:`cut` resets every open connection.

    TLS passes through untouched (the API server's certificate names 127.0.0.1), so the operator
    sees exactly what a dropped load balancer or NAT entry looks like: watch streams and requests
    in flight end with a connection reset, and the next connection works again.
    """

    def __init__(self, target_port: int) -> None:
        self.target = ("127.0.0.1", target_port)
        self._listener = socket.create_server(("127.0.0.1", 0))
        self.port: int = self._listener.getsockname()[1]
        self._lock = threading.Lock()
        self._pairs: list[tuple[socket.socket, socket.socket]] = []
        self._closed = False
        self.cuts = 0
        self._thread = threading.Thread(target=self._accept, name="tcp-proxy", daemon=True)
        self._thread.start()

    def _accept(self) -> None:
        while not self._closed:
            try:
                client, _ = self._listener.accept()
            except OSError:
                return
            try:
                upstream = socket.create_connection(self.target, timeout=5)
                upstream.settimeout(None)
            except OSError:
                _reset(client)
                continue
            with self._lock:
                self._pairs.append((client, upstream))
            threading.Thread(target=self._pump, args=(client, upstream), daemon=True).start()

    def _pump(self, a: socket.socket, b: socket.socket) -> None:
        try:
            while True:
                readable, _, _ = select.select([a, b], [], [], 1.0)
                if self._closed:
                    break
                for src in readable:
                    data = src.recv(65536)
                    if not data:
                        return
                    (b if src is a else a).sendall(data)
        except (OSError, ValueError):  # ValueError: select() on a socket cut() just closed
            pass
        finally:
            _reset(a)
            _reset(b)
            with self._lock:
                if (a, b) in self._pairs:
                    self._pairs.remove((a, b))

    def cut(self) -> int:
        """Reset every connection now; returns how many were cut."""
        with self._lock:
            pairs, self._pairs = self._pairs, []
        for a, b in pairs:
            _reset(a)
            _reset(b)
        self.cuts += 1
        return len(pairs)

    @property
    def open_connections(self) -> int:
        with self._lock:
            return len(self._pairs)

    def close(self) -> None:
        self._closed = True
        self._listener.close()
        self.cut()


def _reset(sock: socket.socket) -> None:
    with contextlib.suppress(OSError):
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    with contextlib.suppress(OSError):
        sock.close()


# --- budget, seed, and the record of a run ----------------------------------------------------


@dataclass(frozen=True)
class Budget:
    """How big and how long a fault run is. ``SCP_FAULT_BUDGET=ci`` (default) or ``long``."""

    name: str
    scale: int  # multiplies the object mix (ci: 41 objects)
    chaos_seconds: float  # how long faults are injected
    mean_gap: float  # mean seconds between fault events
    settle_seconds: float  # bound for "no stuck object" once SCP and Kubernetes are healthy
    outage: bool = False  # also one API server outage longer than Kopf's request retries (~1 min)

    @staticmethod
    def from_env(value: str | None) -> Budget:
        name = (value or "ci").strip().lower()
        if name in ("", "ci", "small", "default"):
            return Budget("ci", scale=1, chaos_seconds=50, mean_gap=0.9, settle_seconds=75)
        if name in ("long", "large"):
            return Budget(
                "long", scale=3, chaos_seconds=300, mean_gap=0.7, settle_seconds=150, outage=True
            )
        if name.endswith("s") and name[:-1].isdigit():  # e.g. SCP_FAULT_BUDGET=600s
            seconds = float(name[:-1])
            return Budget(
                name, scale=2, chaos_seconds=seconds, mean_gap=0.8, settle_seconds=150, outage=True
            )
        raise ValueError(f"SCP_FAULT_BUDGET={value!r}: use ci, long, or a duration such as 600s")


#: The suite's namespaces: most objects live in the first; the second holds the other half of
#: the pairs that share a server across namespaces (the operator serves both).
NAMESPACE = "faults"
NAMESPACE_B = "faults-b"
NAMESPACES = (NAMESPACE, NAMESPACE_B)


def seed_from_env(value: str | None) -> int:
    """``SCP_FAULT_SEED`` if set, else a fresh seed (printed, so any run can be replayed)."""
    if value and value.strip():
        return int(value.strip(), 0)
    return random.SystemRandom().randrange(1, 2**31)


@dataclass
class Role:
    """What a test object is for, and what must be true of it after the faults."""

    name: str
    policy: str = "Delete"
    protected: bool = False
    locked: bool = False  # server locked when the object is deleted
    unlock: bool = True  # ... and unlocked later (during the faults or when they stop)
    escape: bool = False  # locked for good; the owner patches deletionPolicy: Orphan
    missing: bool = False  # the server does not exist in SCP (404)
    deleted: bool = True  # the test deletes the object
    shared: bool = False  # two objects (``-a`` and ``-b``) name one server
    both: bool = False  # ... and both are deleted (else only ``-a``)
    cross_ns: bool = False  # ... ``-b`` lives in the second namespace
    protected_a: bool = False  # ... ``-a`` carries the deletion-protection annotation
    rename: bool = False  # ``-old`` is deleted right after ``-new`` (same server) is created
    keeps: bool = False  # the server must survive the run (no DELETE may take it)


ROLES: dict[str, Role] = {
    r.name: r
    for r in (
        Role("plain"),
        Role("missing", missing=True),
        Role("locked", locked=True),
        Role("escape", locked=True, unlock=False, escape=True, keeps=True),
        Role("orphan", policy="Orphan", keeps=True),
        Role("protected", protected=True, keeps=True),
        Role("kept", deleted=False, keeps=True),
        Role("shared-both", shared=True, both=True),  # both objects naming the server deleted
        Role("shared-one", shared=True, keeps=True),  # one of two is deleted: the server stays
        # the same, with the two objects in two namespaces
        Role("shared-ns-both", shared=True, both=True, cross_ns=True),
        Role("shared-ns-one", shared=True, cross_ns=True, keeps=True),
        # a Helm/ArgoCD rename: the new object names the server a moment before the old one goes
        Role("rename", rename=True, keeps=True),
        # a protected object and a Delete one share a server, both are deleted: both are held
        Role("protected-share", shared=True, both=True, protected_a=True, keeps=True),
    )
}

#: objects per role at scale 1 (shared and rename roles count pairs: two objects each)
MIX = {
    "plain": 12,
    "missing": 3,
    "locked": 5,
    "escape": 2,
    "orphan": 4,
    "protected": 3,
    "kept": 4,
    "shared-both": 2,
    "shared-one": 2,
    "shared-ns-both": 1,
    "shared-ns-one": 2,
    "rename": 3,
    "protected-share": 2,
}


@dataclass
class Obj:
    """One VirtualServer of the run."""

    name: str
    role: Role
    server_id: str
    delete: bool  # the test deletes it
    namespace: str = NAMESPACE
    protected: bool = False  # carries the deletion-protection annotation
    hold: str | None = None  # once deleted, it must stay held with this reason (None: must go)
    later: bool = False  # created during the run (the new name of a rename), not at the start
    created_at: float | None = None  # when the test created it
    deleted_at: float | None = None
    orphaned: bool = False  # deletionPolicy patched to Orphan while terminating

    @property
    def releases_without_delete(self) -> bool:
        return self.role.policy == "Orphan" or self.orphaned


@dataclass
class Tally:
    """What was injected, for the summary line."""

    faults: Counter[str] = field(default_factory=Counter)
    fault_ids: dict[str, str] = field(default_factory=dict)  # emulator fault id -> kind
    disruptions: list[tuple[float, str]] = field(default_factory=list)  # (time, what)
    events: list[str] = field(default_factory=list)  # the executed schedule, for replay

    def note(self, kind: str, what: str) -> None:
        self.faults[kind] += 1
        self.events.append(what)

    def disrupt(self, kind: str, what: str) -> None:
        self.note(kind, what)
        self.disruptions.append((time.time(), kind))

    def fired(self, requests: list[dict[str, Any]]) -> Counter[str]:
        """SCP faults that actually answered a request, by kind."""
        return Counter(
            self.fault_ids.get(str(r.get("fault_id")), "unknown")
            for r in requests
            if r.get("verdict") == "fault"
        )


@dataclass
class Checks:
    """Invariant checks: counted when they pass, collected when they fail."""

    passed: Counter[str] = field(default_factory=Counter)
    failures: list[str] = field(default_factory=list)

    def check(self, invariant: str, ok: bool, message: str) -> None:
        if ok:
            self.passed[invariant] += 1
        else:
            self.failures.append(f"{invariant}: {message}")

    def check_all(self, invariant: str, problems: list[str]) -> None:
        """One check that passes when ``problems`` is empty, else one failure per problem."""
        if not problems:
            self.passed[invariant] += 1
        self.failures += [f"{invariant}: {problem}" for problem in problems]

    @property
    def total(self) -> int:
        return sum(self.passed.values())
