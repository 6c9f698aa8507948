"""Uninstalling the chart: the pre-delete guard holds ``helm uninstall`` until its check passes,
and ``scp-operator uninstall-check`` (the guard's command) refuses while VirtualServers exist.
"""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest

from scp_emulator.testing import ThreadedEmulator
from scp_operator import constants
from tests.chart_support import CHART, values_file
from tests.e2e import charts
from tests.e2e.chart_fixtures import Audited, Release

pytestmark = pytest.mark.e2e


def test_uninstall_is_held_by_the_guard_until_it_passes(audited: Audited, tmp_path: Path) -> None:
    """helm uninstall runs the pre-delete check first and does not remove anything while the
    check has not passed (here it never runs: no kubelet); --no-hooks is the way around."""
    cp = audited.cp
    namespace = "scp-guarded"
    cp.kubectl("create", "namespace", namespace)
    # No admission policies: they would act in every namespace (see cluster_release).
    values = {"uninstallGuard": {"activeDeadlineSeconds": 30}, "admission": {"enabled": False}}
    path = values_file(tmp_path, "v", values)
    cp.helm("install", "guarded", str(CHART), "-n", namespace, "--no-hooks", "-f", str(path))
    held = cp.helm("uninstall", "guarded", "-n", namespace, "--timeout=8s", check=False)
    assert held.returncode != 0
    assert "Job/scp-guarded/guarded-scp-operator-uninstall-check" in held.stderr, held.stderr
    job = charts.get_json(cp, "job", "guarded-scp-operator-uninstall-check", "-n", namespace)
    pod = job["spec"]["template"]["spec"]
    assert pod["serviceAccountName"] == "guarded-scp-operator"
    assert pod["containers"][0]["args"] == ["uninstall-check"]
    assert job["metadata"]["annotations"]["helm.sh/hook"] == "pre-delete"
    # Nothing was removed while the check had not passed.
    cp.kubectl("get", "deployment", "guarded-scp-operator", "-n", namespace)
    cp.kubectl("get", "clusterrole", "guarded-scp-operator")

    cp.helm("uninstall", "guarded", "-n", namespace, "--no-hooks")
    assert cp.kubectl("get", "clusterrole", "guarded-scp-operator", check=False).returncode != 0
    # Helm never deletes CRDs from crds/: the VirtualServers (and their finalizers) stay.
    cp.kubectl("get", "crd", constants.CRD_NAME)


def test_uninstall_check_refuses_while_virtualservers_exist(
    audited: Audited, cluster_release: Release, chart_emulator: ThreadedEmulator
) -> None:
    cp = audited.cp
    kubeconfig = cluster_release.kubeconfig(cp)
    env = {"KUBECONFIG": str(kubeconfig), "PATH": "/usr/bin:/bin"}
    server = chart_emulator.seed(name="guarded")
    cp.kubectl("apply", "-f", "-", input=charts.virtual_server("guarded", "team-c", server["id"]))
    refused = subprocess.run(
        [str(charts.OPERATOR), "uninstall-check"],
        env=env,
        capture_output=True,
        text=True,
        check=False,
    )
    assert refused.returncode == 1
    assert "team-c/guarded" in refused.stderr
    assert "--no-hooks" in refused.stderr
    cp.kubectl("delete", "virtualserver", "guarded", "-n", "team-c")  # no operator: no finalizer
    allowed = subprocess.run(
        [str(charts.OPERATOR), "uninstall-check"],
        env=env,
        capture_output=True,
        text=True,
        check=False,
    )
    assert allowed.returncode == 0, allowed.stderr
