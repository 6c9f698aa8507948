"""Fixtures for the emulator's tests: a running emulator and a tiny signing client.

The signing here is written out again on purpose (not imported from ``scp_operator`` nor from the
emulator): the tests check the emulator against the documented formula itself.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import time
from collections.abc import AsyncIterator, Callable
from typing import Any

import httpx
import pytest
from scp_emulator import EmulatorConfig, EmulatorServer
from scp_emulator.config import DEFAULT_ACCESS_KEY, DEFAULT_SECRET_KEY


def sign_headers(
    method: str,
    url: str,
    *,
    access_key: str = DEFAULT_ACCESS_KEY,
    secret_key: str = DEFAULT_SECRET_KEY,
    timestamp: str | None = None,
    account_id: str = "",
    api_version: str | None = "virtualserver 1.3",
) -> dict[str, str]:
    """SCP request headers for one call, signed as ``scp-api.md`` describes."""
    timestamp = timestamp or str(int(time.time() * 1000))
    message = f"{method}{url}{timestamp}{access_key}{account_id}Openapi"
    digest = hmac.new(secret_key.encode(), message.encode(), hashlib.sha256).digest()
    headers = {
        "Scp-Accesskey": access_key,
        "Scp-Signature": base64.b64encode(digest).decode(),
        "Scp-Timestamp": timestamp,
        "Scp-ClientType": "Openapi",
        "Accept-Language": "en-US",
    }
    if api_version is not None:
        headers["Scp-Api-Version"] = api_version
    if account_id:
        headers["Scp-AccountId"] = account_id
    return headers


SignHeaders = Callable[..., dict[str, str]]


class ScpTestClient:
    """Sends signed requests to an emulator; keyword arguments go to :func:`sign_headers`."""

    def __init__(self, base_url: str, http: httpx.AsyncClient) -> None:
        self.base_url = base_url
        self.http = http

    async def send(
        self,
        method: str,
        path: str,
        *,
        extra_headers: dict[str, str] | None = None,
        timeout: float | None = None,
        **signing: Any,
    ) -> httpx.Response:
        url = f"{self.base_url}{path}"
        headers = sign_headers(method, url, **signing)
        headers.update(extra_headers or {})
        return await self.http.request(
            method, url, headers=headers, timeout=timeout if timeout is not None else 10.0
        )

    async def get(self, path: str, **kwargs: Any) -> httpx.Response:
        return await self.send("GET", path, **kwargs)

    async def delete(self, path: str, **kwargs: Any) -> httpx.Response:
        return await self.send("DELETE", path, **kwargs)

    async def post(self, path: str, **kwargs: Any) -> httpx.Response:
        return await self.send("POST", path, **kwargs)


@pytest.fixture
def sign() -> SignHeaders:
    """The test-side signing function, for tests that build requests by hand."""
    return sign_headers


@pytest.fixture
def emulator_config() -> EmulatorConfig:
    """Override in a module to start the emulator differently."""
    return EmulatorConfig(delete_delay=0.3)


@pytest.fixture
async def emulator(emulator_config: EmulatorConfig) -> AsyncIterator[EmulatorServer]:
    async with EmulatorServer(emulator_config) as server:
        yield server


@pytest.fixture
async def scp(emulator: EmulatorServer) -> AsyncIterator[ScpTestClient]:
    async with httpx.AsyncClient(trust_env=False) as http:
        yield ScpTestClient(emulator.url, http)
