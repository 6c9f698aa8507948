"""Unknown SCP_* variables are named at startup (with a likely typo's fix), never their values."""

from __future__ import annotations

import pytest

from scp_operator import settings
from tests.conftest import REPO

SECRET = "TOPSECRET-value"


def test_a_misspelt_setting_is_named_with_the_setting_it_likely_means() -> None:
    env = {"SCP_OPERATOR_DRYRUN": "true", "SCP_ACCES_KEY": SECRET}
    assert settings.unknown_variables(env) == [
        ("SCP_ACCES_KEY", "SCP_ACCESS_KEY"),
        ("SCP_OPERATOR_DRYRUN", "SCP_OPERATOR_DRY_RUN"),
    ]
    warning = settings.unknown_variables_warning(env)
    assert warning is not None
    assert "SCP_OPERATOR_DRYRUN (did you mean SCP_OPERATOR_DRY_RUN?)" in warning
    assert "SCP_ACCES_KEY (did you mean SCP_ACCESS_KEY?)" in warning
    assert "\n" not in warning  # one line, one warning
    assert SECRET not in warning
    assert "true" not in warning


def test_an_unknown_variable_with_no_close_setting_is_named_alone() -> None:
    assert settings.unknown_variables({"SCP_ZZZ": "1"}) == [("SCP_ZZZ", None)]
    assert settings.unknown_variables_warning({"SCP_ZZZ": "1"}) == (
        "Unknown SCP_* environment variable(s), ignored: SCP_ZZZ"
    )


def test_every_setting_and_every_other_variable_is_quiet() -> None:
    env = {name: "x" for name in settings.known_variables()}
    env |= {"PATH": "/bin", "SCPX": "1", "KUBECONFIG": "k", "MY_SCP_REGION": "x"}
    assert settings.unknown_variables(env) == []
    assert settings.unknown_variables_warning(env) is None


def test_the_projects_own_non_setting_variables_are_quiet() -> None:
    env = dict.fromkeys(settings.KNOWN_NON_SETTINGS, "x")
    env |= {"SCP_EMULATOR_ACCESS_KEY": "x", "SCP_EMULATOR_SECRET_KEY": SECRET}
    assert settings.unknown_variables(env) == []


@pytest.mark.parametrize("name", sorted(settings.KNOWN_NON_SETTINGS))
def test_each_allowed_variable_is_really_used_by_the_project(name: str) -> None:
    """The allow-list must not outlive its reasons: each name is read somewhere else."""
    places = [
        path
        for folder in ("operator", "tools", "tests")
        for path in (REPO / folder).rglob("*")
        if path.suffix in {".py", ".sh"}
        and path.name not in {"settings.py", "test_unknown_env.py"}
        and path.is_file()
        and name in path.read_text(errors="replace")
    ]
    assert places, f"{name} is allowed but nothing uses it"


def test_kubernetes_service_links_of_the_charts_service_are_quiet() -> None:
    """A release named scp-operator has a Service scp-operator-metrics; Kubernetes gives every
    pod in the namespace variables named after it."""
    env = {
        "SCP_OPERATOR_METRICS_SERVICE_HOST": "10.0.0.7",
        "SCP_OPERATOR_METRICS_SERVICE_PORT": "9090",
        "SCP_OPERATOR_METRICS_SERVICE_PORT_METRICS": "9090",
        "SCP_OPERATOR_METRICS_PORT_9090_TCP": "tcp://10.0.0.7:9090",
        "SCP_OPERATOR_METRICS_PORT_9090_TCP_PROTO": "tcp",
        "SCP_OPERATOR_METRICS_PORT_9090_TCP_PORT": "9090",
        "SCP_OPERATOR_METRICS_PORT_9090_TCP_ADDR": "10.0.0.7",
        "SCP_OTHER_PORT": "tcp://10.0.0.8:80",  # another Service's bare link
    }
    assert settings.unknown_variables(env) == []


def test_a_misspelt_port_setting_is_not_mistaken_for_a_service_link() -> None:
    assert settings.unknown_variables({"SCP_OPERATOR_METRIC_PORT": "9091"}) == [
        ("SCP_OPERATOR_METRIC_PORT", "SCP_OPERATOR_METRICS_PORT")
    ]


def test_names_are_compared_as_pydantic_settings_reads_them() -> None:
    """pydantic-settings reads names case-insensitively: scp_region is a setting, not unknown."""
    assert settings.unknown_variables({"scp_region": "kr-west1"}) == []
    assert settings.unknown_variables({"scp_regoin": "kr-west1"}) == [("scp_regoin", "SCP_REGION")]
