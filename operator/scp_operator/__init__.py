"""scp-operator: delete Samsung Cloud Platform virtual servers when their VirtualServer goes."""

from importlib.metadata import PackageNotFoundError, version

try:
    __version__ = version("scp-operator")
except PackageNotFoundError:  # pragma: no cover - running from a bare source tree
    __version__ = "0.0.0+unknown"

__all__ = ["__version__"]
