"""Which namespaces this process serves, as given on the command line.

Kopf takes ``--namespace`` flags but does not pass them to handlers; the few places that act
outside Kopf's watches (the CRD cascade, the lease name) must stay inside the same scope, so
``scp-operator run`` records it here before Kopf starts. Empty means every namespace.
"""

from __future__ import annotations

import fnmatch
import os
from collections.abc import Iterable, Mapping, Sequence

_watched: tuple[str, ...] = ()


def set_watched(namespaces: Iterable[str]) -> None:
    """Record the exact namespaces served (called once, by the CLI, before Kopf starts)."""
    global _watched
    _watched = tuple(sorted(set(namespaces)))


def watched() -> tuple[str, ...]:
    """The namespaces served; empty means every namespace."""
    return _watched


def from_kopf_args(
    args: Sequence[str], environ: Mapping[str, str] | None = None
) -> tuple[str, ...]:
    """The namespaces in ``kopf run`` arguments, read with Kopf's own option parser.

    Every spelling Kopf accepts counts (``-n x``, ``-nx``, ``--namespace=x``, ``a,b``), plus
    Kopf's ``KOPF_RUN_NAMESPACE`` variable; sorted and de-duplicated, so two spellings of one
    scope are one scope.
    """
    import kopf.cli

    environ = os.environ if environ is None else environ
    context = kopf.cli.run.make_context("run", list(args), resilient_parsing=True)
    patterns = [str(p) for p in context.params.get("namespaces") or ()]
    if environ.get("KOPF_RUN_NAMESPACE"):
        patterns.append(environ["KOPF_RUN_NAMESPACE"])
    parts = {p.strip() for pattern in patterns for p in pattern.split(",")}
    return tuple(sorted(p for p in parts if p))


def is_exact(namespaces: Iterable[str]) -> bool:
    """True when every entry names one namespace (no Kopf glob pattern, no ``!`` exclusion)."""
    return not any(ch in ns for ns in namespaces for ch in "*?[!")


def serves(namespace: str, namespaces: Sequence[str]) -> bool:
    """Whether Kopf's namespace patterns (globs, ``!`` exclusions) include ``namespace``."""
    if not namespaces:
        return True
    include = [p for p in namespaces if not p.startswith("!")]
    exclude = [p[1:] for p in namespaces if p.startswith("!")]
    wanted = not include or any(fnmatch.fnmatchcase(namespace, p) for p in include)
    return wanted and not any(fnmatch.fnmatchcase(namespace, p) for p in exclude)
