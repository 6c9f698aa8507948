"""Kopf options and logging set by the startup hook (handlers/startup.py)."""

from __future__ import annotations

import logging
from collections.abc import Iterator

import kopf
import pytest

from scp_operator.handlers import startup


def test_events_are_reported_by_scp_operator() -> None:
    options = kopf.OperatorSettings()
    assert options.posting.reporting_component == "kopf"  # Kopf's default, which we replace
    startup.set_kopf_options(options)
    assert options.posting.reporting_component == "scp-operator"


@pytest.fixture
def levels() -> Iterator[None]:
    root, httpx_logger = logging.getLogger(), logging.getLogger("httpx")
    saved = root.level, httpx_logger.level
    yield
    root.setLevel(saved[0])
    httpx_logger.setLevel(saved[1])


@pytest.mark.usefixtures("levels")
def test_httpx_request_lines_are_off_at_the_default_level() -> None:
    logging.getLogger().setLevel(logging.INFO)  # Kopf's level without --verbose/--debug
    logging.getLogger("httpx").setLevel(logging.NOTSET)
    startup.quiet_http_logs()
    assert not logging.getLogger("httpx").isEnabledFor(logging.INFO)
    assert logging.getLogger("httpx").isEnabledFor(logging.WARNING)


@pytest.mark.usefixtures("levels")
def test_httpx_request_lines_stay_with_verbose_or_debug() -> None:
    logging.getLogger().setLevel(logging.DEBUG)  # what Kopf sets for --verbose and --debug
    logging.getLogger("httpx").setLevel(logging.NOTSET)
    startup.quiet_http_logs()
    assert logging.getLogger("httpx").isEnabledFor(logging.INFO)
