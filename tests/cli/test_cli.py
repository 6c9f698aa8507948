"""The command line: one-line errors, exit codes, never a traceback or a secret."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from scp_emulator.testing import ThreadedEmulator

SECRET = "CLI-S3CRET-do-not-print"
EXE = Path(sys.executable).parent / "scp-operator"


@pytest.fixture(scope="module")
def emulator() -> Iterator[ThreadedEmulator]:
    with ThreadedEmulator() as emu:
        emu.set_credentials("CLIKEY", SECRET)
        yield emu


def run(*args: str, **env: str) -> subprocess.CompletedProcess[str]:
    base = {k: v for k, v in os.environ.items() if not k.startswith("SCP_")}
    return subprocess.run(
        [str(EXE), *args],
        capture_output=True,
        text=True,
        timeout=60,
        env={**base, **env},
        check=False,
    )


def scp_env(emu: ThreadedEmulator, secret: str = SECRET) -> dict[str, str]:
    return {"SCP_ENDPOINT": emu.url, "SCP_ACCESS_KEY": "CLIKEY", "SCP_SECRET_KEY": secret}


def test_help_and_version() -> None:
    assert "run" in run("--help").stdout
    out = run("version")
    assert out.returncode == 0
    assert "scp-operator" in out.stdout
    assert "1.3" in out.stdout


def test_server_get_prints_the_server_as_json(emulator: ThreadedEmulator) -> None:
    sid = emulator.seed(name="cli-web")["id"]
    out = run("server", "get", sid, **scp_env(emulator))
    assert out.returncode == 0, out.stderr
    assert json.loads(out.stdout)["name"] == "cli-web"


@pytest.mark.parametrize(
    ("secret", "sid", "words"),
    [
        (SECRET, "00000000-0000-4000-8000-000000000000", "404 Gone"),
        ("WRONG", None, "401 Unauthorized"),
    ],
)
def test_server_get_failures_are_one_line(
    emulator: ThreadedEmulator, secret: str, sid: str | None, words: str
) -> None:
    sid = sid or emulator.seed(name="x")["id"]
    out = run("server", "get", sid, **scp_env(emulator, secret))
    assert out.returncode == 1
    assert words in out.stderr
    assert len(out.stderr.strip().splitlines()) == 1
    assert "Traceback" not in out.stderr
    assert SECRET not in out.stderr + out.stdout


def test_server_get_refuses_a_non_uuid() -> None:
    out = run("server", "get", "../etc/passwd")
    assert out.returncode == 1
    assert "not a UUID" in out.stderr


def test_check_passes_against_a_healthy_endpoint(emulator: ThreadedEmulator) -> None:
    out = run("check", **scp_env(emulator))
    assert out.returncode == 0, out.stdout + out.stderr
    assert "ok    signed read" in out.stdout
    assert "all checks passed" in out.stdout


def test_check_fails_with_a_verdict_per_item_on_bad_keys(emulator: ThreadedEmulator) -> None:
    out = run("check", **scp_env(emulator, "WRONG-SECRET"))
    assert out.returncode == 1
    assert "FAIL  signed read: 401" in out.stdout
    assert "ok    endpoint" in out.stdout


def test_check_warns_about_a_deprecated_api_version(emulator: ThreadedEmulator) -> None:
    out = run("check", SCP_API_VERSION="1.1", **scp_env(emulator))
    assert "WARN  api version" in out.stdout
    assert "SCP_API_VERSION=1.3" in out.stdout


@pytest.mark.parametrize(
    "command", [("run",), ("check",), ("server", "get", "2a9be312-5d4b-4bc8-b2ae-35100fa9241f")]
)
def test_bad_settings_stop_with_the_variables_name(command: tuple[str, ...]) -> None:
    out = run(*command, SCP_REGION="mars-1", SCP_SECRET_KEY=SECRET, SCP_ACCESS_KEY="A")
    assert out.returncode == 2
    assert "SCP_REGION" in out.stderr
    assert "Traceback" not in out.stderr
    assert SECRET not in out.stderr


def test_uninstall_check_refuses_when_it_cannot_look(tmp_path: Path) -> None:
    kubeconfig = tmp_path / "kubeconfig"
    kubeconfig.write_text(
        json.dumps(
            {
                "apiVersion": "v1",
                "kind": "Config",
                "current-context": "dead",
                "clusters": [{"name": "dead", "cluster": {"server": "http://127.0.0.1:9"}}],
                "users": [{"name": "u", "user": {"token": "t"}}],
                "contexts": [{"name": "dead", "context": {"cluster": "dead", "user": "u"}}],
            }
        )
    )
    out = run("uninstall-check", KUBECONFIG=str(kubeconfig))
    assert out.returncode == 1
    assert "refusing to call the uninstall safe" in out.stderr
    assert len(out.stderr.strip().splitlines()) == 1
    assert "Traceback" not in out.stderr
