"""Support for the fault-injection and CRD-cascade e2e tests: a private control plane, and a TCP
proxy that cuts the operator's connections on demand.

Why a private control plane: these tests kill kube-apiserver and etcd
(:meth:`~scp_testenv.ControlPlane.kill`, :meth:`~scp_testenv.ControlPlane.restart`) and delete
the CRD, which would break every other e2e test sharing the session's control plane. A second
:class:`~scp_testenv.ControlPlane` picks its own free ports and costs a few seconds.

The fault run itself: ``fault_plan.py`` (what happens) and ``fault_harness.py`` (doing it,
checking the invariants).
"""

from __future__ import annotations

import contextlib
import json
import select
import socket
import struct
import threading
from collections.abc import Iterator
from pathlib import Path

from scp_operator import constants
from scp_testenv import ControlPlane
from scp_testenv.binaries import resolve_binaries
from tests.e2e.operator_fixtures import CRD_FILE

# --- a private control plane ---------------------------------------------------------------------


@contextlib.contextmanager
def private_control_plane() -> Iterator[ControlPlane]:
    """etcd + kube-apiserver of this test module alone, with the VirtualServer CRD installed."""
    with ControlPlane(resolve_binaries(build=False)) as cp:
        install_crd(cp)
        yield cp


def install_crd(cp: ControlPlane) -> None:
    cp.kubectl("apply", "-f", str(CRD_FILE))
    cp.kubectl("wait", "--for=condition=Established", f"crd/{constants.CRD_NAME}", "--timeout=60s")


def kubeconfig_via(cp: ControlPlane, port: int, path: Path) -> Path:
    """The admin kubeconfig, but pointing at ``127.0.0.1:port`` (the proxy; same certificate)."""
    config = json.loads(cp.kubeconfig.read_text())
    config["clusters"][0]["cluster"]["server"] = f"https://127.0.0.1:{port}"
    path.write_text(json.dumps(config))
    path.chmod(0o600)
    return path


# --- a TCP proxy that can cut every connection ---------------------------------------------------


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
