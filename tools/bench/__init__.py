"""The scp-operator benchmark: the operator against a real kube-apiserver and the SCP emulator.

Run it with ``make bench`` (full) or ``make bench-smoke`` (small); ``python -m tools.bench.run
--help`` lists the knobs. ``docs/benchmarks.md`` explains every number.

``scp_testenv`` is repository tooling, not part of the wheel: ``operator/`` is put on
``sys.path`` here when it is not importable already (an editable install makes it importable).
"""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]

if importlib.util.find_spec("scp_testenv") is None:  # pragma: no cover - depends on the install
    sys.path.append(str(REPO / "operator"))
