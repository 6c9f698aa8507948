# scp-operator — the two commands a newcomer needs are `make sandbox` and `make test`.
SHELL := /bin/bash
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed-$(shell cat pyproject.toml | sha256sum | cut -c1-12)

.PHONY: venv test test-unit test-operator test-e2e lint controlplane tools sandbox bench bench-smoke clean

$(STAMP): pyproject.toml
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --disable-pip-version-check --upgrade pip==25.3
	$(PY) -m pip install -q --disable-pip-version-check -e '.[dev]'
	rm -f $(VENV)/.installed-* && touch $(STAMP)

venv: $(STAMP)

LINT_PATHS := operator tests tools

lint: venv
	$(VENV)/bin/ruff check $(LINT_PATHS)
	$(VENV)/bin/ruff format --check $(LINT_PATHS)
	$(VENV)/bin/mypy
	PYTHONPATH=operator $(VENV)/bin/lint-imports  # contracts: [tool.importlinter]

# The whole suite: lint, then every tier (unit, operator, e2e) in one pytest run.
test: venv controlplane tools lint
	$(VENV)/bin/pytest tests

test-unit: venv
	$(VENV)/bin/pytest -m "not operator and not e2e" tests

test-operator: venv
	$(VENV)/bin/pytest -m operator tests

# Build (first time only; cached per version set) kube-apiserver, etcd, kubectl and helm.
controlplane:
	bash tools/controlplane/build.sh

# Build (first time only; cached per version) the other test tools: promtool, for the chart's
# alert rules (tests/packaging/test_prometheus_rules.py), and the Lua test runner.
tools:
	bash tools/promtool/build.sh
	if [ -f tools/luatest/build.sh ]; then bash tools/luatest/build.sh; fi

test-e2e: venv controlplane
	$(VENV)/bin/pytest -m e2e tests

# The README's first command: control plane + SCP emulator + operator + a sample deletion.
sandbox: venv controlplane
	$(PY) tools/sandbox.py $(SANDBOX_ARGS)

# The benchmark (tools/bench, docs/benchmarks.md): tables and issue 10's summary on stdout, JSON
# and SVG pictures in ~/.cache/scp-operator/bench/results/ (outside the source tree). With no
# BENCH_ARGS: every section at issue 10's sizes (drain N=1000 x3 with the plain Kopf baseline and
# 1 and 2 shards, footprint/resume 5000 and 10000, backlog 5000, blocked, idle latency), about
# 30 minutes on 2 cores (estimate). BENCH_ARGS adds flags, e.g. BENCH_ARGS="--sizes 100 --repeat 1
# --sections drain". bench-smoke: every section at tiny sizes (about 2 minutes).
bench: venv controlplane
	$(PY) -m tools.bench.run $(BENCH_ARGS)

bench-smoke: venv controlplane
	$(PY) -m tools.bench.run --smoke $(BENCH_ARGS)

clean:
	rm -rf $(VENV) .sandbox .pytest_cache .mypy_cache .ruff_cache .import_linter_cache
