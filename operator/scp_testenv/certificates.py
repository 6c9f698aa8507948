"""Who may talk to the local control plane, and how they trust it.

* :class:`Tokens`: the static bearer-token identities (kube-apiserver's ``--token-auth-file``,
  read only at start);
* :func:`generate_signing_key`: the service-account token signing key (TokenRequest);
* :func:`write_kubeconfig`: a kubeconfig for one identity, trusting the API server's
  self-generated serving certificate (``ca_file``; kube-apiserver writes it into its
  ``--cert-dir``), and :func:`ssl_context` for Python clients of that server.
"""

from __future__ import annotations

import base64
import importlib
import json
import secrets
import shutil
import ssl
import subprocess
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

from scp_testenv.errors import ControlPlaneError

__all__ = ["Tokens", "generate_signing_key", "ssl_context", "write_kubeconfig"]

_FORBIDDEN = ',"\n'  # characters the token file's CSV format cannot carry


class Tokens:
    """Bearer-token identities: user name -> (token, groups)."""

    def __init__(self) -> None:
        self._tokens: dict[str, tuple[str, tuple[str, ...]]] = {}

    def add(self, user: str, groups: Sequence[str] = (), *, token: str | None = None) -> str:
        """Register ``user`` with ``groups``; returns its token (a fresh one unless given)."""
        if not user or any(c in user for c in _FORBIDDEN):
            raise ValueError(f"unsupported user name: {user!r}")
        if any(not g or any(c in g for c in _FORBIDDEN) for g in groups):
            raise ValueError(f"unsupported group names: {groups!r}")
        token = token or secrets.token_hex(24)
        self._tokens[user] = (token, tuple(groups))
        return token

    def token_for(self, user: str) -> str:
        return self._tokens[user][0]

    def __iter__(self) -> Iterator[str]:
        return iter(self._tokens)

    def write_file(self, path: Path) -> None:
        """Write kube-apiserver's ``--token-auth-file`` (``token,user,uid,"groups"``), 0600."""
        path.write_text(
            "".join(
                f'{token},{user},{user},"{",".join(groups)}"\n'
                for user, (token, groups) in self._tokens.items()
            )
        )
        path.chmod(0o600)


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


def write_kubeconfig(
    path: Path, *, cluster: str, server: str, ca_file: Path, user: str, token: str
) -> None:
    """A kubeconfig for ``user`` (bearer ``token``) at ``server``, trusting ``ca_file``; written
    atomically, mode 0600."""
    ca_data = base64.b64encode(ca_file.read_bytes()).decode()
    config = {
        "apiVersion": "v1",
        "kind": "Config",
        "clusters": [
            {"name": cluster, "cluster": {"server": server, "certificate-authority-data": ca_data}}
        ],
        "users": [{"name": user, "user": {"token": token}}],
        "contexts": [
            {
                "name": cluster,
                "context": {"cluster": cluster, "user": user, "namespace": "default"},
            }
        ],
        "current-context": cluster,
    }
    tmp = path.with_suffix(".tmp")
    tmp.write_text(json.dumps(config, indent=2) + "\n")
    tmp.chmod(0o600)
    tmp.replace(path)


def ssl_context(ca_file: Path) -> ssl.SSLContext:
    """A client context trusting exactly the API server's serving certificate."""
    return ssl.create_default_context(cafile=str(ca_file))
