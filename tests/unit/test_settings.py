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


@pytest.mark.parametrize(
    ("endpoint", "stored"),
    [
        ("https://SCP.Example.com", "https://scp.example.com"),
        ("https://scp.example.com:443/", "https://scp.example.com"),
        ("https://bücher.example", "https://xn--bcher-kva.example"),
        ("http://127.0.0.1:80", "http://127.0.0.1"),
    ],
)
def test_an_endpoint_is_kept_in_the_form_that_is_sent(
    monkeypatch: pytest.MonkeyPatch, endpoint: str, stored: str
) -> None:
    monkeypatch.setenv("SCP_ENDPOINT", endpoint)
    assert settings.load().scp.service_url() == stored


@pytest.mark.parametrize("endpoint", ["http://scp.example.com", "http://10.1.2.3:8080/scp"])
def test_a_plain_http_endpoint_for_another_machine_is_refused_naming_the_variable(
    monkeypatch: pytest.MonkeyPatch, endpoint: str
) -> None:
    monkeypatch.setenv("SCP_ENDPOINT", endpoint)
    with pytest.raises(settings.SettingsError, match=r"^SCP_ENDPOINT: .*use https://"):
        settings.load()


def test_an_endpoint_with_a_password_is_refused_without_echoing_it(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("SCP_ENDPOINT", "https://user:TOPSECRET-pw@scp.example.com")
    with pytest.raises(settings.SettingsError, match=r"^SCP_ENDPOINT: ") as info:
        settings.load()
    assert "TOPSECRET" not in str(info.value)


@pytest.mark.parametrize(
    "account_id",
    ["acc\u00e9123", "\u200b0e5a9ad5", "0e5a 9ad5", "0e5a\t9ad5", "0e5a\x7f"],
    ids=["accented", "zero-width-space", "inner-space", "tab", "delete"],
)
def test_an_account_id_http_cannot_carry_is_refused_naming_scp_account_id(
    monkeypatch: pytest.MonkeyPatch, account_id: str
) -> None:
    """It goes into a header: a non-ASCII or control character would fail every call."""
    monkeypatch.setenv("SCP_ACCOUNT_ID", account_id)
    with pytest.raises(settings.SettingsError) as info:
        settings.load()
    assert str(info.value).startswith("SCP_ACCOUNT_ID: ")
    assert account_id not in str(info.value)


@pytest.mark.parametrize("account_id", ["acc\x00id", "acc\nid", "\u00fc"])
def test_an_account_id_with_control_characters_is_refused_by_the_model_too(
    account_id: str,
) -> None:
    """Characters no environment variable can hold still fail validation (e.g. from a file)."""
    with pytest.raises(settings.ValidationError) as info:
        settings.ScpSettings(account_id=account_id)
    assert settings._explain(info.value, "SCP_").startswith("SCP_ACCOUNT_ID: ")


def test_an_account_id_is_stripped_and_an_empty_one_is_allowed(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("SCP_ACCOUNT_ID", " 0e5a9ad5c1a14c2f8f4a6a7d3b2c1e00\n")
    assert settings.load().scp.account_id == "0e5a9ad5c1a14c2f8f4a6a7d3b2c1e00"
    monkeypatch.setenv("SCP_ACCOUNT_ID", "")
    assert settings.load().scp.account_id == ""


def test_resync_interval_defaults_to_ten_minutes(monkeypatch: pytest.MonkeyPatch) -> None:
    assert settings.load().operator.resync_interval == 600
    monkeypatch.setenv("SCP_OPERATOR_RESYNC_INTERVAL", "0")
    assert settings.load().operator.resync_interval == 0  # off


@pytest.mark.parametrize("value", ["30", "86400", "3600.5"])
def test_resync_interval_accepts_its_bounds(monkeypatch: pytest.MonkeyPatch, value: str) -> None:
    monkeypatch.setenv("SCP_OPERATOR_RESYNC_INTERVAL", value)
    assert settings.load().operator.resync_interval == float(value)


@pytest.mark.parametrize("value", ["29", "0.5", "86401", "-1", "often"])
def test_resync_interval_outside_off_or_30_to_86400_names_the_variable(
    monkeypatch: pytest.MonkeyPatch, value: str
) -> None:
    monkeypatch.setenv("SCP_OPERATOR_RESYNC_INTERVAL", value)
    with pytest.raises(settings.SettingsError, match=r"^SCP_OPERATOR_RESYNC_INTERVAL: "):
        settings.load()


# ---- sharding (docs/scaling.md) -----------------------------------------------------------------


def test_no_sharding_by_default() -> None:
    shard = settings.load().operator.shard
    assert (shard.index, shard.count, shard.sharded) == (0, 1, False)
    assert shard.selector() is None


def test_shards_and_index_give_equal_ranges(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SCP_OPERATOR_SHARDS", "2")
    monkeypatch.setenv("SCP_OPERATOR_SHARD_INDEX", "1")
    shard = settings.load().operator.shard
    assert str(shard.range) == "0x8000000000000000-0x10000000000000000"


@pytest.mark.parametrize(
    ("env", "named", "detail"),
    [
        ({"SCP_OPERATOR_SHARDS": "0"}, "SCP_OPERATOR_SHARDS", "greater than or equal to 1"),
        ({"SCP_OPERATOR_SHARDS": "65"}, "SCP_OPERATOR_SHARDS", "less than or equal to 64"),
        (
            {"SCP_OPERATOR_SHARDS": "3", "SCP_OPERATOR_SHARD_INDEX": "3"},
            "SCP_OPERATOR_SHARD_INDEX",
            "3 is not below SCP_OPERATOR_SHARDS (3)",
        ),
        (
            {
                "SCP_OPERATOR_SHARDS": "2",
                "SCP_OPERATOR_SHARD_RANGES": "0x0000000000000000-0x7000000000000000,"
                "0x8000000000000000-0x10000000000000000",
            },
            "SCP_OPERATOR_SHARD_RANGES",
            "gap 0x7000000000000000-0x8000000000000000",
        ),
        (
            {
                "SCP_OPERATOR_SHARDS": "2",
                "SCP_OPERATOR_SHARD_RANGES": "0x0000000000000000-0x9000000000000000,"
                "0x8000000000000000-0x10000000000000000",
            },
            "SCP_OPERATOR_SHARD_RANGES",
            "overlap 0x8000000000000000-0x9000000000000000",
        ),
        (
            {
                "SCP_OPERATOR_SHARDS": "2",
                "SCP_OPERATOR_SHARD_RANGES": "0x0000000000000000-0x10000000000000000",
            },
            "SCP_OPERATOR_SHARD_RANGES",
            "1 range(s) given for 2 shard(s)",
        ),
        (
            {"SCP_OPERATOR_SHARDS": "2", "SCP_OPERATOR_SHARD_RANGES": "0x0-0x8,0x8-0x10"},
            "SCP_OPERATOR_SHARD_RANGES",
            "exactly 16 lowercase hex digits",
        ),
        (
            {"SCP_OPERATOR_SHARDS": "64", "SCP_OPERATOR_LEASE_NAME": "a" * 239},
            "SCP_OPERATOR_LEASE_NAME",
            "at most 224 characters",
        ),
    ],
)
def test_a_bad_shard_plan_is_refused_naming_the_variable_and_the_problem(
    monkeypatch: pytest.MonkeyPatch, env: dict[str, str], named: str, detail: str
) -> None:
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    with pytest.raises(settings.SettingsError) as refused:
        settings.load()
    assert named in str(refused.value)
    assert detail in str(refused.value)


def test_an_uneven_plan_gives_each_shard_its_listed_range(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SCP_OPERATOR_SHARDS", "2")
    monkeypatch.setenv("SCP_OPERATOR_SHARD_INDEX", "0")
    monkeypatch.setenv(
        "SCP_OPERATOR_SHARD_RANGES",
        "0x0000000000000000-0x4000000000000000, 0x4000000000000000-0x10000000000000000",
    )
    shard = settings.load().operator.shard
    assert str(shard.range) == "0x0000000000000000-0x4000000000000000"


def test_kube_connections_default_and_bounds(monkeypatch: pytest.MonkeyPatch) -> None:
    assert settings.load().operator.kube_connections == 16
    monkeypatch.setenv("SCP_OPERATOR_KUBE_CONNECTIONS", "4")
    assert settings.load().operator.kube_connections == 4
    for bad in ("3", "257", "many"):
        monkeypatch.setenv("SCP_OPERATOR_KUBE_CONNECTIONS", bad)
        with pytest.raises(settings.SettingsError, match=r"^SCP_OPERATOR_KUBE_CONNECTIONS: "):
            settings.load()
