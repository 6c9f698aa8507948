"""Test-side helpers for the emulator tests: a signer and a tiny signing client.

The signing here is written out again on purpose (not imported from ``scp_operator`` nor from the
emulator): the tests check the emulator against the documented formula itself. The module name
is unique so it cannot collide with helpers of other test folders.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import time
from collections.abc import Callable
from typing import Any

import httpx

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
        client_timeout: float = 10.0,
        **signing: Any,
    ) -> httpx.Response:
        url = f"{self.base_url}{path}"
        headers = sign_headers(method, url, **signing)
        headers.update(extra_headers or {})
        return await self.http.request(method, url, headers=headers, timeout=client_timeout)

    async def get(self, path: str, **kwargs: Any) -> httpx.Response:
        return await self.send("GET", path, **kwargs)

    async def delete(self, path: str, **kwargs: Any) -> httpx.Response:
        return await self.send("DELETE", path, **kwargs)

    async def post(self, path: str, **kwargs: Any) -> httpx.Response:
        return await self.send("POST", path, **kwargs)


def detail(response: httpx.Response) -> str:
    """The ``detail`` of an SCP error body."""
    value: str = response.json()["errors"][0]["detail"]
    return value
