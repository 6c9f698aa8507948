"""Every documented value combination, rendered, passes the API server's own validation (a
server-side dry run against this module's control plane, with the CRDs the chart may render
objects of). Rendering without a cluster: ``tests/packaging/test_chart_render.py``.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from tests.chart_support import (
    COMBINATIONS,
    RELEASE_NAMESPACE,
    WITH_MUTATING_POLICY,
    render,
    values_file,
)
from tests.e2e.chart_fixtures import Audited

pytestmark = pytest.mark.e2e


@pytest.mark.parametrize("combination", list(COMBINATIONS))
def test_rendered_manifests_pass_server_side_dry_run(
    audited: Audited, tmp_path: Path, combination: str
) -> None:
    values = values_file(tmp_path, combination, COMBINATIONS[combination])
    manifests = render(
        audited.cp.helm, values, namespace=RELEASE_NAMESPACE, extra=WITH_MUTATING_POLICY
    )
    document = "\n---\n".join(json.dumps(m) for m in manifests)
    result = audited.cp.kubectl("apply", "--dry-run=server", "-f", "-", input=document)
    applied = [line for line in result.stdout.splitlines() if "(server dry run)" in line]
    assert len(applied) == len(manifests), result.stdout
