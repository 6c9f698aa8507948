"""Which namespaces this process serves, as given on the command line.

Kopf takes ``--namespace`` flags but does not pass them to handlers; the few places that act
outside Kopf's watches (the CRD cascade, the lease name) must stay inside the same scope, so
``scp-operator run`` records it here before Kopf starts. Empty means every namespace.
"""

from __future__ import annotations

from collections.abc import Iterable

_watched: tuple[str, ...] = ()


def set_watched(namespaces: Iterable[str]) -> None:
    """Record the exact namespaces served (called once, by the CLI, before Kopf starts)."""
    global _watched
    _watched = tuple(sorted(set(namespaces)))


def watched() -> tuple[str, ...]:
    """The namespaces served; empty means every namespace."""
    return _watched


def from_kopf_args(args: Iterable[str]) -> tuple[str, ...]:
    """The ``--namespace``/``-n`` values in ``kopf run`` arguments (both ``=x`` and ``x`` forms)."""
    found: list[str] = []
    pending = False
    for arg in args:
        if pending:
            found.append(arg)
            pending = False
            continue
        for flag in ("--namespace", "-n"):
            if arg == flag:
                pending = True
            elif arg.startswith(flag + "="):
                found.append(arg.split("=", 1)[1])
    return tuple(found)
