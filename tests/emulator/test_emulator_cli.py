"""``scp-emulator`` as a real subprocess: announces its URL, serves, stops on SIGTERM."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import uuid
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

import scp_emulator

from .emulator_helpers import sign_headers

SOURCE_ROOT = Path(scp_emulator.__file__).resolve().parent.parent


def _environment(**extra: str) -> dict[str, str]:
    env = {key: value for key, value in os.environ.items() if not key.startswith("SCP_EMULATOR_")}
    env["PYTHONPATH"] = os.pathsep.join(
        filter(None, [str(SOURCE_ROOT), os.environ.get("PYTHONPATH")])
    )
    env.update(extra)
    return env


def _start(*args: str, **env: str) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [sys.executable, "-m", "scp_emulator", "--port", "0", *args],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=_environment(**env),
    )


def _url_of(process: subprocess.Popen[str]) -> str:
    assert process.stdout is not None
    line = process.stdout.readline()
    prefix = "scp-emulator listening on "
    assert line.startswith(prefix), f"unexpected first line {line!r}"
    return line.removeprefix(prefix).strip()


@pytest.fixture
def stop_later() -> Iterator[list[subprocess.Popen[str]]]:
    processes: list[subprocess.Popen[str]] = []
    yield processes
    for process in processes:
        if process.poll() is None:
            process.kill()
        process.communicate(timeout=10)


def test_cli_announces_its_url_serves_and_stops_on_sigterm(
    stop_later: list[subprocess.Popen[str]],
) -> None:
    process = _start("--seed", "3")
    stop_later.append(process)
    url = _url_of(process)
    assert url.startswith("http://127.0.0.1:")

    with httpx.Client(trust_env=False, timeout=10) as http:
        assert http.get(f"{url}/").status_code == 200
        listing = http.get(f"{url}/v1/servers", headers=sign_headers("GET", f"{url}/v1/servers"))
    assert listing.status_code == 200, "the fake default credentials are accepted"
    assert listing.json()["count"] == 3

    process.send_signal(signal.SIGTERM)
    stdout, stderr = process.communicate(timeout=10)
    assert process.returncode == 0
    assert stdout == "", "stdout carries only the one 'listening' line"
    assert "EMULATORACCESSKEY" in stderr, "the fake default credentials are announced"


def test_cli_takes_keys_from_the_environment_and_a_seed_file(
    tmp_path: Path, stop_later: list[subprocess.Popen[str]]
) -> None:
    server_id = str(uuid.uuid4())
    seed_file = tmp_path / "servers.json"
    seed_file.write_text(json.dumps([{"id": server_id, "name": "from-file", "backup": True}]))
    process = _start(
        "--seed-file",
        str(seed_file),
        "--delete-delay",
        "0",
        SCP_EMULATOR_ACCESS_KEY="ENVKEY",
        SCP_EMULATOR_SECRET_KEY="ENVSECRET",
    )
    stop_later.append(process)
    url = _url_of(process)
    target = f"{url}/v1/servers/{server_id}"
    keys = {"access_key": "ENVKEY", "secret_key": "ENVSECRET"}
    with httpx.Client(trust_env=False, timeout=10) as http:
        response = http.get(target, headers=sign_headers("GET", target, **keys))
        assert response.status_code == 200
        assert response.json()["name"] == "from-file"
        response = http.delete(target, headers=sign_headers("DELETE", target, **keys))
        assert response.status_code == 409
        defaults = sign_headers("GET", target)
        assert http.get(target, headers=defaults).status_code == 401
    process.send_signal(signal.SIGINT)
    process.communicate(timeout=10)
    assert process.returncode == 0


@pytest.mark.parametrize(
    "args",
    [["--access-key", "ONLYONE"], ["--seed-file", "missing.json"], ["--seed", "-1"]],
)
def test_cli_reports_bad_options_in_one_line(args: list[str], tmp_path: Path) -> None:
    result = subprocess.run(
        [sys.executable, "-m", "scp_emulator", "--port", "0", *args],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        env=_environment(),
        timeout=30,
        check=False,
    )
    assert result.returncode == 2
    assert result.stdout == ""
    assert result.stderr.startswith("scp-emulator: ")
    assert "Traceback" not in result.stderr
