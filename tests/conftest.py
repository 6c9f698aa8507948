"""Shared fixtures: a clean SCP environment for every test."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent

# Fixtures of the e2e tier that several modules share: the operator as a process (e2e tests and
# benchmarks), and the chart tests' audited control plane and releases (registered here:
# pytest_plugins is only honoured in the root conftest).
pytest_plugins = ["tests.e2e.operator_fixtures", "tests.e2e.chart_fixtures"]


@pytest.fixture(autouse=True)
def _clean_scp_env(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """No test sees the developer's SCP settings or ~/.scpconf."""
    for name in list(os.environ):
        if name.startswith("SCP_"):
            monkeypatch.delenv(name)
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
