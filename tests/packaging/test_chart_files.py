"""The chart's files agree with the rest of the repository (no cluster, no helm needed)."""

from __future__ import annotations

import json
import re
import tomllib
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

from scp_operator import constants
from scp_operator.settings import OperatorSettings, ScpSettings
from tests.conftest import REPO

CHART = REPO / "helm" / "scp-operator"
CRD_FILE = f"{constants.CRD_NAME}.yaml"
INSTALL_DOC = REPO / "docs" / "install.md"
#: Values documented as one row (free-form Kubernetes objects), not key by key.
OPAQUE = {"resources", "podSecurityContext", "securityContext", "livenessProbe", "readinessProbe"}


def _values() -> dict[str, Any]:
    data: dict[str, Any] = yaml.safe_load((CHART / "values.yaml").read_text())
    return data


def _leaves(values: dict[str, Any], prefix: str = "") -> Iterator[tuple[str, Any]]:
    for key, value in values.items():
        path = prefix + key
        if isinstance(value, dict) and value and path not in OPAQUE:
            yield from _leaves(value, path + ".")
        else:
            yield path, value


def _doc_table() -> dict[str, str]:
    """``key -> default`` from the configuration table of docs/install.md."""
    rows = re.findall(r"^\| `([^`]+)` \| `([^`]*)` \|", INSTALL_DOC.read_text(), re.MULTILINE)
    assert rows, "no configuration table found in docs/install.md"
    table = dict(rows)
    assert len(table) == len(rows), "a key is documented twice"
    return table


def _crd_files(directory: Path) -> list[str]:
    return sorted(p.name for p in directory.iterdir())


@pytest.mark.parametrize("name", _crd_files(REPO / "crds"))
def test_chart_crd_is_a_byte_identical_copy(name: str) -> None:
    original = (REPO / "crds" / name).read_bytes()
    copy = CHART / "crds" / name
    assert copy.is_file(), f"run: cp crds/{name} helm/scp-operator/crds/"
    assert copy.read_bytes() == original, f"run: cp crds/{name} helm/scp-operator/crds/"


def test_chart_ships_exactly_the_repositorys_crds() -> None:
    assert CRD_FILE in _crd_files(REPO / "crds")
    assert _crd_files(CHART / "crds") == _crd_files(REPO / "crds")


def test_install_doc_documents_every_value_with_its_default() -> None:
    documented = _doc_table()
    leaves = dict(_leaves(_values()))
    assert sorted(documented) == sorted(leaves), {
        "undocumented": sorted(set(leaves) - set(documented)),
        "not in values.yaml": sorted(set(documented) - set(leaves)),
    }
    wrong = {
        key: (documented[key], leaves[key])
        for key in leaves
        if json.loads(documented[key]) != leaves[key]
    }
    assert wrong == {}


def test_every_value_is_described_by_the_schema() -> None:
    schema = json.loads((CHART / "values.schema.json").read_text())
    missing = []
    for path, _ in _leaves(_values()):
        node = schema
        for part in path.split("."):
            properties = node.get("properties", {})
            if part not in properties:
                missing.append(path)
                break
            node = properties[part]
    assert missing == []
    assert schema["additionalProperties"] is False


def test_chart_versions_follow_the_package() -> None:
    chart = yaml.safe_load((CHART / "Chart.yaml").read_text())
    project = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]
    assert chart["name"] == "scp-operator"
    assert chart["appVersion"] == project["version"]
    dockerfile = (REPO / "Dockerfile").read_text()
    assert f"ARG VERSION={project['version']}" in dockerfile


@pytest.mark.parametrize(
    "path", ["values.yaml", "templates/configmap.yaml", "templates/deployment.yaml"]
)
def test_keys_are_never_environment_variables(path: str) -> None:
    text = (CHART / path).read_text()
    assert "SCP_ACCESS_KEY:" not in text
    assert "SCP_SECRET_KEY:" not in text
    assert "secretKeyRef" not in text


def test_chart_names_the_operators_fixed_names() -> None:
    rbac = (CHART / "templates" / "rbac.yaml").read_text()
    assert f'apiGroups: ["{constants.GROUP}"]' in rbac
    assert f'resources: ["{constants.PLURAL}"]' in rbac
    assert f'resourceNames: ["{constants.CRD_NAME}"]' in rbac


def test_no_absolute_paths_of_a_machine_leak_into_shipped_files() -> None:
    shipped = [
        *CHART.rglob("*"),
        REPO / "Dockerfile",
        REPO / ".dockerignore",
        *(REPO / "deploy").rglob("*"),
        REPO / "docs" / "install.md",
        REPO / "docs" / "lifecycle.md",
    ]
    for path in shipped:
        if path.is_file():
            text = path.read_text()
            assert not re.search(r"/(root|home/\w+|tmp/pytest|work)/", text), path


def test_the_chart_sets_every_setting_of_the_operator() -> None:
    """A new SCP_* / SCP_OPERATOR_* setting must reach the chart (the keys come as files)."""
    template = (CHART / "templates" / "configmap.yaml").read_text()
    in_chart = set(re.findall(r"^\s+(SCP_[A-Z_]+):", template, re.MULTILINE))
    settings = {f"SCP_{name.upper()}" for name in ScpSettings.model_fields}
    settings |= {f"SCP_OPERATOR_{name.upper()}" for name in OperatorSettings.model_fields}
    assert in_chart == settings - {"SCP_ACCESS_KEY", "SCP_SECRET_KEY"}
