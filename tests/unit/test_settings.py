"""Settings fail fast, naming the variable, and never echo a secret."""

from pathlib import Path

import pytest

from scp_operator import settings


def test_defaults_are_safe() -> None:
    loaded = settings.load()
    assert loaded.scp.service_url() == "https://virtualserver.kr-west1.e.samsungsdscloud.com"
    assert loaded.scp.api_version == "1.3"
    assert loaded.operator.confirm_deletion is False


@pytest.mark.parametrize(
    ("name", "value", "named"),
    [
        ("SCP_REGION", "Mars", "SCP_REGION"),
        ("SCP_REGION", "kr-south1", "SCP_REGION"),  # exists, but not in environment e
        ("SCP_ENVIRONMENT", "q", "SCP_ENVIRONMENT"),
        ("SCP_API_VERSION", "2.0", "SCP_API_VERSION"),
        ("SCP_ENDPOINT", "ftp://x", "SCP_ENDPOINT"),
        ("SCP_LANGUAGE", "fr-FR", "SCP_LANGUAGE"),
        ("SCP_CREDENTIALS_DIR", "/nonexistent/dir", "SCP_CREDENTIALS_DIR"),
        ("SCP_CA_BUNDLE", "/nonexistent/ca.pem", "SCP_CA_BUNDLE"),
        ("SCP_OPERATOR_HTTP_TIMEOUT", "-1", "SCP_OPERATOR_HTTP_TIMEOUT"),
        ("SCP_OPERATOR_CONFIRM_DELETION", "maybe", "SCP_OPERATOR_CONFIRM_DELETION"),
        ("SCP_OPERATOR_BACKOFF_CAP", "1", "SCP_OPERATOR_BACKOFF_CAP"),
    ],
)
def test_bad_value_names_the_variable(
    monkeypatch: pytest.MonkeyPatch, name: str, value: str, named: str
) -> None:
    monkeypatch.setenv(name, value)
    with pytest.raises(settings.SettingsError, match=named):
        settings.load()


def test_one_key_without_the_other_names_the_missing_one(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SCP_SECRET_KEY", "TOPSECRET-value")
    with pytest.raises(settings.SettingsError, match="SCP_ACCESS_KEY") as info:
        settings.load()
    assert "TOPSECRET" not in str(info.value)


def test_invalid_value_of_a_secret_is_not_echoed(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SCP_ACCESS_KEY", "AK")
    monkeypatch.setenv("SCP_SECRET_KEY", "TOPSECRET-value")
    monkeypatch.setenv("SCP_REGION", "TOPSECRET-value")
    with pytest.raises(settings.SettingsError) as info:
        settings.load()
    assert "TOPSECRET" not in str(info.value)


def test_endpoint_override_and_version_prefixes(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.setenv("SCP_ENDPOINT", "http://127.0.0.1:9/")
    monkeypatch.setenv("SCP_API_VERSION", "virtualserver 1.2")
    monkeypatch.setenv("SCP_REGION", "kr-south1")  # irrelevant with an explicit endpoint
    loaded = settings.load()
    assert loaded.scp.service_url("kr-east1") == "http://127.0.0.1:9"
    assert loaded.scp.api_version == "1.2"
