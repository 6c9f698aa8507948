"""Kopf's login hands Kopf a session with a bounded connection pool (handlers/login.py)."""

from __future__ import annotations

import logging
from pathlib import Path

import aiohttp
import kopf
import pytest

from scp_operator import scope
from scp_operator.handlers import login

KUBECONFIG = """\
apiVersion: v1
kind: Config
clusters:
- name: c
  cluster: {server: "https://127.0.0.1:6443", insecure-skip-tls-verify: true}
users:
- name: u
  user: {token: not-a-real-token}
contexts:
- name: x
  context: {cluster: c, user: u}
current-context: x
"""


@pytest.fixture
def kubeconfig(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    path = tmp_path / "kubeconfig"
    path.write_text(KUBECONFIG)
    monkeypatch.setenv("KUBECONFIG", str(path))
    monkeypatch.delenv("KUBERNETES_SERVICE_HOST", raising=False)
    return path


@pytest.mark.parametrize(
    ("namespaces", "watches"),
    [
        ((), 1 + login.OTHER_WATCHES),
        (("a", "b", "c"), 3 + login.OTHER_WATCHES),
        (("team-*",), None),
    ],
)
def test_watch_streams_are_counted_from_the_watched_namespaces(
    namespaces: tuple[str, ...], watches: int | None
) -> None:
    assert login.watch_streams(namespaces) == watches


def test_the_limit_is_the_requests_plus_one_per_watch_and_unbounded_for_patterns() -> None:
    assert login.connection_limit(16, ()) == 16 + 1 + login.OTHER_WATCHES
    assert login.connection_limit(4, ("a", "b")) == 4 + 2 + login.OTHER_WATCHES
    # a pattern matches namespaces not known yet: Kopf opens a watch per match
    assert login.connection_limit(16, ("team-*",)) == 0


async def test_login_returns_a_bounded_session_with_the_kubeconfigs_credentials(
    kubeconfig: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("SCP_OPERATOR_KUBE_CONNECTIONS", "6")
    scope.set_watched(("ns-a", "ns-b"))
    try:
        result = await login.bounded_session(
            logger=logging.getLogger("test"), settings=kopf.OperatorSettings()
        )
    finally:
        scope.set_watched(())
    assert isinstance(result, kopf.AiohttpSession)
    try:
        assert result.server == "https://127.0.0.1:6443"
        connector = result.aiohttp_session.connector
        assert isinstance(connector, aiohttp.TCPConnector)
        assert connector.limit == 6 + 2 + login.OTHER_WATCHES  # Kopf's own would be 0: unbounded
        assert result.aiohttp_session.headers["Authorization"] == "Bearer not-a-real-token"
        # preferred over Kopf's own login of the same credentials
        assert result.priority > 0
    finally:
        await result.aiohttp_session.close()


async def test_a_bad_setting_falls_back_to_the_default_until_startup_refuses_it(
    kubeconfig: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("SCP_OPERATOR_KUBE_CONNECTIONS", "2")  # below 4: refused at startup
    result = await login.bounded_session(
        logger=logging.getLogger("test"), settings=kopf.OperatorSettings()
    )
    assert isinstance(result, kopf.AiohttpSession)
    try:
        connector = result.aiohttp_session.connector
        assert isinstance(connector, aiohttp.TCPConnector)
        assert connector.limit == 16 + 1 + login.OTHER_WATCHES
    finally:
        await result.aiohttp_session.close()
