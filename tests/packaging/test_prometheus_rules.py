"""The chart's alerts and the Grafana dashboard: the PrometheusRule rendered by the real helm and
checked and unit-tested by the real ``promtool`` (``promtool check rules``, ``promtool test
rules`` on ``tests/packaging/promtool/*.test.yaml``: series where each alert fires and where it
does not), and every metric the alerts and the dashboard name checked against the operator's
``metrics.py``.

promtool is built by ``tools/promtool/build.sh`` (cached; the first build takes minutes) when it
is missing, never skipped: an alert nobody tested is found out at 3 a.m. helm is the pinned one
the e2e tier builds (``make controlplane``); without it the tests that render are skipped, as in
``test_chart_render.py``.
"""

from __future__ import annotations

import json
import re
import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.chart_support import CHART, HelmFn, find, render, values_file
from tests.conftest import REPO

PROMTOOL_BUILD = REPO / "tools" / "promtool" / "build.sh"
PROMTOOL_TESTS = sorted((Path(__file__).parent / "promtool").glob("*.test.yaml"))
METRICS_SOURCE = REPO / "operator" / "scp_operator" / "metrics.py"
OPERATOR_SOURCE = REPO / "operator" / "scp_operator"
DASHBOARD = CHART / "dashboards" / "scp-operator.json"
DASHBOARD_COPY = REPO / "deploy" / "grafana" / "scp-operator-dashboard.json"

#: Metrics other work adds to metrics.py at the same time as these alerts and panels; allowed
#: until they land (then they are found in the source like every other).
PENDING_METRICS = {
    "scp_operator_oldest_blocked_seconds",
    "scp_operator_deletion_duration_seconds",
    "scp_operator_build_info",
}
#: Prometheus' own series.
PROMETHEUS_METRICS = {"up"}
#: The alerts the chart ships (each must be tested firing and quiet).
ALERTS = {
    "ScpOperatorDeletionBlocked",
    "ScpOperatorCredentialsRejected",
    "ScpOperatorScpRequestsRejected",
    "ScpOperatorScpErrors",
    "ScpOperatorDeletionBudgetExhausted",
    "ScpOperatorDown",
}


@pytest.fixture(scope="session")
def promtool() -> Path:
    """promtool from tools/promtool/build.sh, built now when it is not cached yet."""
    result = subprocess.run(
        ["bash", str(PROMTOOL_BUILD)],
        capture_output=True,
        text=True,
        timeout=3600,
        check=False,
    )
    if result.returncode != 0:
        pytest.fail(f"tools/promtool/build.sh failed ({result.returncode}):\n{result.stderr}")
    binary = Path(result.stdout.strip().splitlines()[-1]) / "promtool"
    assert binary.is_file(), binary
    return binary


def _rule(manifests: list[dict[str, Any]]) -> dict[str, Any]:
    return find(manifests, "PrometheusRule")


@pytest.fixture(scope="module")
def rule_groups(helm: HelmFn, tmp_path_factory: pytest.TempPathFactory) -> list[dict[str, Any]]:
    """spec.groups of the PrometheusRule rendered with defaults (release scp in scp-system)."""
    directory = tmp_path_factory.mktemp("rules-values")
    manifests = render(helm, values_file(directory, "on", {"prometheusRule": {"enabled": True}}))
    groups: list[dict[str, Any]] = _rule(manifests)["spec"]["groups"]
    return groups


def _alerts(groups: list[dict[str, Any]]) -> dict[str, dict[str, Any]]:
    return {r["alert"]: r for g in groups for r in g["rules"] if "alert" in r}


def _promtool(binary: Path, *args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [str(binary), *args], cwd=cwd, capture_output=True, text=True, timeout=300, check=False
    )


def _write_rules(directory: Path, groups: list[dict[str, Any]]) -> Path:
    directory.mkdir(parents=True, exist_ok=True)
    path = directory / "rules.yaml"
    path.write_text(yaml.safe_dump({"groups": groups}, sort_keys=False))
    return path


def test_rules_pass_promtool_check(
    promtool: Path, rule_groups: list[dict[str, Any]], tmp_path: Path
) -> None:
    """Valid PromQL, valid annotation templates, no duplicate rules."""
    _write_rules(tmp_path, rule_groups)
    result = _promtool(promtool, "check", "rules", "rules.yaml", cwd=tmp_path)
    assert result.returncode == 0, result.stdout + result.stderr
    assert f"SUCCESS: {len(ALERTS)} rules found" in result.stdout, result.stdout


@pytest.mark.parametrize("test_file", PROMTOOL_TESTS, ids=lambda p: p.name)
def test_alerts_fire_exactly_when_promtool_tests_say(
    promtool: Path, rule_groups: list[dict[str, Any]], tmp_path: Path, test_file: Path
) -> None:
    # promtool compares annotations exactly: the test files expect each summary (rendered with
    # $value and $labels); the long descriptions are checked by check rules and the tests below.
    groups = [
        {
            **group,
            "rules": [
                {**r, "annotations": {"summary": r["annotations"]["summary"]}}
                for r in group["rules"]
            ],
        }
        for group in rule_groups
    ]
    _write_rules(tmp_path, groups)
    shutil.copy(test_file, tmp_path / test_file.name)
    result = _promtool(promtool, "test", "rules", test_file.name, cwd=tmp_path)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "SUCCESS" in result.stdout, result.stdout


def test_every_alert_is_tested_firing_and_quiet() -> None:
    """promtool passes a test file that never mentions an alert; this makes sure none is left
    out, and that each is shown both firing and not firing."""
    assert PROMTOOL_TESTS, "no promtool test file"
    firing: set[str] = set()
    quiet: set[str] = set()
    for path in PROMTOOL_TESTS:
        for test in yaml.safe_load(path.read_text())["tests"]:
            for case in test.get("alert_rule_test", []):
                (firing if case["exp_alerts"] else quiet).add(case["alertname"])
    assert firing == ALERTS
    assert quiet == ALERTS


def test_the_rendered_rules_are_the_shipped_alerts(rule_groups: list[dict[str, Any]]) -> None:
    assert set(_alerts(rule_groups)) == ALERTS


def test_every_alert_tells_the_on_call_person_what_to_do(
    rule_groups: list[dict[str, Any]],
) -> None:
    for name, rule in _alerts(rule_groups).items():
        assert rule["labels"]["severity"] in ("warning", "critical"), name
        annotations = rule["annotations"]
        assert set(annotations) == {"summary", "description"}, name
        assert "kubectl" in annotations["description"], name
        # the chart's own names, resolved: what to run is copy-pasteable
        assert "{{ .Release" not in annotations["description"], name
    blocked = _alerts(rule_groups)["ScpOperatorDeletionBlocked"]["annotations"]["description"]
    assert "kubectl describe scpvs" in blocked
    assert "Deleting condition" in blocked
    rejected = _alerts(rule_groups)["ScpOperatorCredentialsRejected"]["annotations"]
    assert (
        "-n scp-system exec deploy/scp-scp-operator -- scp-operator check"
        in (rejected["description"])
    )


def test_alert_reasons_are_the_operators_hold_reasons(rule_groups: list[dict[str, Any]]) -> None:
    """A renamed hold reason would silently stop an alert: every reason an expression matches
    must be a quoted string in the operator's source."""
    source = "\n".join(p.read_text() for p in OPERATOR_SOURCE.rglob("*.py"))
    reasons: set[str] = set()
    for rule in _alerts(rule_groups).values():
        for matcher in re.findall(r'reason=~?"([^"]+)"', rule["expr"]):
            reasons |= set(matcher.split("|"))
    assert "DeletionBudgetExhausted" in reasons
    assert {"Unauthorized", "Forbidden"} <= reasons
    missing = {r for r in reasons if f'"{r}"' not in source}
    assert missing == set()


def test_thresholds_job_namespace_and_labels_follow_values(
    helm: HelmFn, promtool: Path, tmp_path: Path
) -> None:
    values = {
        "prometheusRule": {
            "enabled": True,
            "namespace": "monitoring",
            "labels": {"release": "prom"},
            "alertLabels": {"team": "platform"},
            "job": "scp-operator",
            "blockedSeconds": 600,
            "scpErrorRatio": 0.5,
        }
    }
    rule = _rule(render(helm, values_file(tmp_path, "v", values)))
    assert rule["metadata"]["namespace"] == "monitoring"
    assert rule["metadata"]["labels"]["release"] == "prom"
    alerts = _alerts(rule["spec"]["groups"])
    for name, alert in alerts.items():
        assert 'job="scp-operator"' in alert["expr"], name
        assert alert["labels"]["team"] == "platform", name
    assert alerts["ScpOperatorDeletionBlocked"]["expr"].endswith("> 600")
    assert alerts["ScpOperatorScpErrors"]["expr"].endswith("> 0.5")
    _write_rules(tmp_path / "rules", rule["spec"]["groups"])
    result = _promtool(promtool, "check", "rules", "rules.yaml", cwd=tmp_path / "rules")
    assert result.returncode == 0, result.stdout + result.stderr


def test_no_rule_by_default_and_none_without_metrics(helm: HelmFn, tmp_path: Path) -> None:
    manifests = render(helm, values_file(tmp_path, "d", {}))
    assert [m for m in manifests if m["kind"] == "PrometheusRule"] == []
    path = values_file(
        tmp_path, "bad", {"prometheusRule": {"enabled": True}, "metrics": {"enabled": False}}
    )
    result = helm("template", "scp", str(CHART), "-f", str(path), check=False)
    assert result.returncode != 0
    assert "prometheusRule.enabled needs metrics.enabled: true" in result.stderr


# ---- metric names --------------------------------------------------------------------------


def _defined_metrics() -> set[str]:
    """Metric names metrics.py defines, as Prometheus sees them: prometheus_client adds
    ``_total`` to a Counter's name and ``_info`` to an Info's."""
    source = METRICS_SOURCE.read_text()
    names = set()
    for kind, name in re.findall(r'\b([A-Z][A-Za-z]*)\(\s*"(scp_operator_[a-z0-9_]+)"', source):
        if kind == "Counter" and not name.endswith("_total"):
            name += "_total"
        elif kind == "Info":
            name += "_info"
        names.add(name)
    return names


def _named_metrics(expr: str) -> set[str]:
    names = set(re.findall(r"\b(scp_operator_[a-z0-9_]+)", expr))
    names |= {n for n in PROMETHEUS_METRICS if re.search(rf"\b{n}\s*\{{", expr)}
    # a histogram's series: <name>_bucket / _count / _sum
    return {re.sub(r"_(bucket|count|sum)$", "", n) for n in names}


def _dashboard_exprs(dashboard: dict[str, Any]) -> list[str]:
    exprs = [t["expr"] for p in dashboard["panels"] for t in p.get("targets", [])]
    for variable in dashboard["templating"]["list"]:
        if variable["type"] == "query":
            exprs.append(variable["definition"])
    return exprs


def test_metrics_py_defines_what_the_checks_below_rely_on() -> None:
    """The parser of metrics.py finds the metrics the README documents (or it proves nothing)."""
    assert {
        "scp_operator_scp_requests_total",
        "scp_operator_scp_request_duration_seconds",
        "scp_operator_blocked_objects",
    } <= _defined_metrics()


def test_every_metric_the_alerts_name_exists(rule_groups: list[dict[str, Any]]) -> None:
    named = set().union(*(_named_metrics(r["expr"]) for r in _alerts(rule_groups).values()))
    assert "scp_operator_scp_requests_total" in named
    unknown = named - _defined_metrics() - PENDING_METRICS - PROMETHEUS_METRICS
    assert unknown == set()


def test_every_metric_the_dashboard_names_exists() -> None:
    dashboard = json.loads(DASHBOARD.read_text())
    named = set().union(*(_named_metrics(e) for e in _dashboard_exprs(dashboard)))
    assert "scp_operator_deletions_total" in named
    unknown = named - _defined_metrics() - PENDING_METRICS - PROMETHEUS_METRICS
    assert unknown == set()


# ---- the dashboard -------------------------------------------------------------------------


def test_dashboard_copy_for_importing_by_hand_is_byte_identical() -> None:
    copy = f"cp {DASHBOARD.relative_to(REPO)} {DASHBOARD_COPY.relative_to(REPO)}"
    assert DASHBOARD_COPY.read_bytes() == DASHBOARD.read_bytes(), f"run: {copy}"


def test_dashboard_is_a_grafana_dashboard_with_a_datasource_variable() -> None:
    dashboard = json.loads(DASHBOARD.read_text())
    assert dashboard["uid"] == "scp-operator"
    assert isinstance(dashboard["schemaVersion"], int)
    variables = {v["name"]: v for v in dashboard["templating"]["list"]}
    assert variables["datasource"]["type"] == "datasource"
    assert variables["datasource"]["query"] == "prometheus"
    assert "id" not in dashboard  # Grafana assigns it on import
    ids = [p["id"] for p in dashboard["panels"]]
    assert len(ids) == len(set(ids))
    titles = set()
    for panel in dashboard["panels"]:
        assert set(panel["gridPos"]) == {"x", "y", "w", "h"}, panel["title"]
        assert panel["gridPos"]["x"] + panel["gridPos"]["w"] <= 24, panel["title"]
        titles.add(panel["title"])
        if panel["type"] == "row":
            continue
        # no data source baked in: the variable, so the JSON imports into any Grafana
        assert panel["datasource"] == {"type": "prometheus", "uid": "${datasource}"}
        for target in panel["targets"]:
            assert target["datasource"]["uid"] == "${datasource}", panel["title"]
            assert 'job=~"$job"' in target["expr"], panel["title"]
    assert {
        "Deletions by outcome",
        "Blocked objects by reason",
        "Oldest blocked deletion",
        "Deletion duration",
        "SCP requests by code and account",
        "SCP latency",
        "SCP requests in flight",
        "Retries by reason",
    } <= titles


def test_dashboard_configmap_carries_the_file_and_the_sidecar_label(
    helm: HelmFn, tmp_path: Path
) -> None:
    manifests = render(helm, values_file(tmp_path, "d", {}))
    assert [m for m in manifests if m["metadata"]["name"].endswith("-dashboard")] == []
    values = {
        "grafanaDashboard": {
            "enabled": True,
            "namespace": "monitoring",
            "annotations": {"grafana_folder": "Platform"},
        }
    }
    manifests = render(helm, values_file(tmp_path, "on", values))
    config_map = find(manifests, "ConfigMap", "scp-scp-operator-dashboard")
    assert config_map["metadata"]["namespace"] == "monitoring"
    assert config_map["metadata"]["labels"]["grafana_dashboard"] == "1"
    assert config_map["metadata"]["annotations"] == {"grafana_folder": "Platform"}
    assert json.loads(config_map["data"]["scp-operator.json"]) == json.loads(DASHBOARD.read_text())
