"""Credential sources in order, rotation without restart, and no secret in any message."""

import json
import os
from pathlib import Path

import pytest
from pydantic import SecretStr

from scp_operator.credentials import CredentialsProvider, CredentialsUnavailable

SECRET = "TOPSECRET-9f8e7d"


def provider(tmp_path: Path, **kw: object) -> CredentialsProvider:
    args: dict[str, object] = {
        "access_key": None,
        "secret_key": None,
        "directory": None,
        "home": tmp_path,
    }
    args.update(kw)
    return CredentialsProvider(**args)  # type: ignore[arg-type]


def test_environment_wins(tmp_path: Path) -> None:
    creds = provider(
        tmp_path, access_key=SecretStr("AK"), secret_key=SecretStr(f" {SECRET}\n")
    ).get()
    assert (creds.access_key, creds.secret_key.get_secret_value(), creds.source) == (
        "AK",
        SECRET,
        "environment",
    )
    assert SECRET not in repr(creds)
    assert SECRET not in str(creds)


def test_directory_is_reread_when_the_secret_rotates(tmp_path: Path) -> None:
    d = tmp_path / "mount"
    d.mkdir()
    (d / "access-key").write_text("AK1\n")
    (d / "secret-key").write_text("S1\n")
    p = provider(tmp_path, directory=d)
    assert p.get().access_key == "AK1"
    (d / "access-key").write_text("AK2")
    (d / "secret-key").write_text("S2")
    st = (d / "secret-key").stat()
    os.utime(d / "secret-key", ns=(st.st_atime_ns, st.st_mtime_ns + 10_000_000))
    creds = p.get()
    assert (creds.access_key, creds.secret_key.get_secret_value()) == ("AK2", "S2")


@pytest.mark.parametrize(
    ("files", "words"),
    [
        ({}, "cannot read"),
        ({"access-key": "AK", "secret-key": ""}, "secret-key is empty"),
        ({"access-key": "", "secret-key": SECRET}, "access-key is empty"),
    ],
)
def test_broken_directory_says_what_is_wrong(
    tmp_path: Path, files: dict[str, str], words: str
) -> None:
    d = tmp_path / "mount"
    d.mkdir()
    for name, text in files.items():
        (d / name).write_text(text)
    with pytest.raises(CredentialsUnavailable, match=words) as info:
        provider(tmp_path, directory=d).get()
    assert SECRET not in str(info.value)
    assert "SCP_CREDENTIALS_DIR" in str(info.value)


def test_scpconf_credentials_json(tmp_path: Path) -> None:
    conf = tmp_path / ".scpconf"
    conf.mkdir()
    (conf / "credentials.json").write_text(json.dumps({"access-key": "AK", "secret-key": SECRET}))
    creds = provider(tmp_path).get()
    assert creds.access_key == "AK"
    assert creds.source == "~/.scpconf/credentials.json" or creds.source.endswith(
        "credentials.json"
    )


@pytest.mark.parametrize(
    "text",
    ["{not json", "[]", json.dumps({"access-key": "AK"}), json.dumps({"secret-key": SECRET})],
)
def test_malformed_credentials_json(tmp_path: Path, text: str) -> None:
    conf = tmp_path / ".scpconf"
    conf.mkdir()
    (conf / "credentials.json").write_text(text)
    with pytest.raises(CredentialsUnavailable) as info:
        provider(tmp_path).get()
    assert SECRET not in str(info.value)


def test_nothing_configured_names_the_variables(tmp_path: Path) -> None:
    with pytest.raises(CredentialsUnavailable, match=r"SCP_ACCESS_KEY.*SCP_CREDENTIALS_DIR"):
        provider(tmp_path).get()


def test_empty_environment_key_is_reported(tmp_path: Path) -> None:
    with pytest.raises(CredentialsUnavailable, match="SCP_SECRET_KEY"):
        provider(tmp_path, access_key=SecretStr("AK"), secret_key=SecretStr("")).get()
