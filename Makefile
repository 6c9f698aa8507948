# scp-operator — the two commands a newcomer needs are `make sandbox` and `make test`.
SHELL := /bin/bash
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed-$(shell cat pyproject.toml | sha256sum | cut -c1-12)

.PHONY: venv test test-unit test-operator test-e2e lint controlplane sandbox clean

$(STAMP): pyproject.toml
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --disable-pip-version-check --upgrade pip==25.3
	$(PY) -m pip install -q --disable-pip-version-check -e '.[dev]'
	rm -f $(VENV)/.installed-* && touch $(STAMP)

venv: $(STAMP)

lint: venv
	$(VENV)/bin/ruff check operator tests tools bench
	$(VENV)/bin/ruff format --check operator tests tools bench
	$(VENV)/bin/mypy

test-unit: venv
	$(VENV)/bin/pytest -m "not operator and not e2e" tests

test-operator: venv
	$(VENV)/bin/pytest -m operator tests
