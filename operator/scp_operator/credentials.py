"""Where the SCP keys come from, and how they stay secret.

Order: ``SCP_ACCESS_KEY``/``SCP_SECRET_KEY``, then ``SCP_CREDENTIALS_DIR`` (a mounted Secret with
files ``access-key`` and ``secret-key``), then ``~/.scpconf/credentials.json`` (Samsung's own tools'
file). The directory is re-read whenever its files change, so rotating the Secret needs no restart.
The secret is a :class:`pydantic.SecretStr` from the moment it is read: its ``repr`` and ``str``
are masked, and no message built here ever includes it.
"""

from __future__ import annotations

import dataclasses
import json
import threading
from pathlib import Path
from typing import Protocol

from pydantic import SecretStr

ACCESS_FILE = "access-key"
SECRET_FILE = "secret-key"


class CredentialsUnavailable(Exception):
    """No usable credentials right now; the message says where we looked, never a value."""


@dataclasses.dataclass(frozen=True)
class Credentials:
    """An SCP key pair and the optional account id it signs for."""

    access_key: str
    secret_key: SecretStr
    source: str

    def __repr__(self) -> str:
        return (
            f"Credentials(access_key={self.access_key!r}, secret_key='**********', "
            f"source={self.source!r})"
        )


class CredentialSource(Protocol):
    """What the SCP client signs with: the operator's own keys, or an ScpAccount's."""

    def get(self) -> Credentials:
        """The credentials for the next request, or raise :class:`CredentialsUnavailable`."""
        ...


class SecretCredentials:
    """An ScpAccount's keys, as last read from its Secret through the Kubernetes API.

    The account's resolver reads the Secret before each use and calls :meth:`update`, so a
    rotated key is used from the next request on, with the same connection pool.
    """

    def __init__(self, source: str) -> None:
        self._source = source
        self._current: Credentials | None = None
        self._problem = f"the keys of {source} have not been read yet"

    def update(self, access_key: str, secret_key: str) -> None:
        """Use these keys from now on (checked: printable ASCII, no spaces)."""
        self._current = _checked(
            Credentials(access_key.strip(), SecretStr(secret_key.strip()), self._source)
        )

    def get(self) -> Credentials:
        if self._current is None:
            raise CredentialsUnavailable(self._problem)
        return self._current


class CredentialsProvider:
    """Hands out the current credentials; cheap to call before every request."""

    def __init__(
        self,
        *,
        access_key: SecretStr | None,
        secret_key: SecretStr | None,
        directory: Path | None,
        home: Path | None = None,
    ) -> None:
        self._env = (access_key, secret_key)
        self._directory = directory
        self._home_file = (
            (home if home is not None else Path.home()) / ".scpconf" / "credentials.json"
        )
        self._lock = threading.Lock()
        self._cached: tuple[tuple[int, int, int, int], Credentials] | None = None

    @property
    def sources(self) -> str:
        """Where credentials are looked for, in order, for messages."""
        names = []
        if self._env != (None, None):
            names.append("SCP_ACCESS_KEY/SCP_SECRET_KEY")
        if self._directory is not None:
            names.append(f"SCP_CREDENTIALS_DIR ({self._directory})")
        names.append(str(self._home_file).replace(str(Path.home()), "~", 1))
        return ", ".join(names)

    def get(self) -> Credentials:
        """The credentials to sign the next request with, or :class:`CredentialsUnavailable`."""
        access, secret = self._env
        if access is not None or secret is not None:
            if (
                not access
                or not secret
                or not access.get_secret_value()
                or not secret.get_secret_value()
            ):
                missing = (
                    "SCP_ACCESS_KEY"
                    if not access or not access.get_secret_value()
                    else "SCP_SECRET_KEY"
                )
                raise CredentialsUnavailable(f"{missing} is empty or unset")
            return _checked(
                Credentials(access.get_secret_value().strip(), _strip(secret), "environment")
            )
        if self._directory is not None:
            return self._from_directory(self._directory)
        if self._home_file.exists():
            return self._from_json(self._home_file)
        raise CredentialsUnavailable(
            "no SCP credentials: set SCP_ACCESS_KEY and SCP_SECRET_KEY, or SCP_CREDENTIALS_DIR "
            "to a directory with files access-key and secret-key"
        )

    def _from_directory(self, directory: Path) -> Credentials:
        access_path, secret_path = directory / ACCESS_FILE, directory / SECRET_FILE
        try:
            a, s = access_path.stat(), secret_path.stat()
        except OSError as exc:
            raise CredentialsUnavailable(
                f"SCP_CREDENTIALS_DIR: cannot read {exc.filename}: {exc.strerror}"
            ) from None
        key = (a.st_ino, a.st_mtime_ns, s.st_ino, s.st_mtime_ns)
        with self._lock:
            if self._cached is not None and self._cached[0] == key:
                return self._cached[1]
        try:
            access = access_path.read_text().strip()
            secret = secret_path.read_text().strip()
        except (OSError, UnicodeDecodeError) as exc:
            raise CredentialsUnavailable(
                f"SCP_CREDENTIALS_DIR: cannot read the key files: {type(exc).__name__}"
            ) from None
        if not access or not secret:
            empty = ACCESS_FILE if not access else SECRET_FILE
            raise CredentialsUnavailable(f"SCP_CREDENTIALS_DIR: file {empty} is empty")
        creds = _checked(Credentials(access, SecretStr(secret), f"directory {directory}"))
        with self._lock:
            self._cached = (key, creds)
        return creds

    def _from_json(self, path: Path) -> Credentials:
        where = str(path).replace(str(Path.home()), "~", 1)
        try:
            data = json.loads(path.read_text())
        except (OSError, ValueError) as exc:
            raise CredentialsUnavailable(
                f"{where} is not readable JSON ({type(exc).__name__})"
            ) from None
        if not isinstance(data, dict):
            raise CredentialsUnavailable(f"{where} must hold a JSON object")
        access, secret = data.get("access-key"), data.get("secret-key")
        if not isinstance(access, str) or not access.strip():
            raise CredentialsUnavailable(f"{where} has no access-key")
        if not isinstance(secret, str) or not secret.strip():
            raise CredentialsUnavailable(f"{where} has no secret-key")
        return _checked(Credentials(access.strip(), SecretStr(secret.strip()), where))


def _strip(secret: SecretStr) -> SecretStr:
    return SecretStr(secret.get_secret_value().strip())


def _checked(creds: Credentials) -> Credentials:
    """Keys must be printable ASCII without spaces: HTTP headers carry them (a pasted smart quote
    or zero-width space would otherwise fail deep inside the HTTP client). Never echoes a value.
    """
    for what, value in (
        ("access key", creds.access_key),
        ("secret key", creds.secret_key.get_secret_value()),
    ):
        if not value.isascii() or not value.isprintable() or any(c.isspace() for c in value):
            raise CredentialsUnavailable(
                f"the {what} from {creds.source} holds characters a key cannot have "
                "(non-ASCII, spaces or control characters); paste it again"
            )
    return creds
