"""Fixtures shared by the packaging tests (chart rendering, alert rules)."""

from __future__ import annotations

import pytest

from scp_testenv.binaries import resolve_binaries
from tests.chart_support import HelmFn, offline_helm


@pytest.fixture(scope="session")
def helm(tmp_path_factory: pytest.TempPathFactory) -> HelmFn:
    """The pinned helm, run with no cluster. Built now when it is not cached yet (what
    `make controlplane` does, once per version set), so these tests never skip."""
    binaries = resolve_binaries()
    return offline_helm(binaries.helm, tmp_path_factory.mktemp("helm-home"))
