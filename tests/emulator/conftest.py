"""Fixtures for the emulator's tests: a running emulator and a signing client for it."""

from __future__ import annotations

from collections.abc import AsyncIterator

import httpx
import pytest

from scp_emulator import EmulatorConfig, EmulatorServer

from .emulator_helpers import ScpTestClient, SignHeaders, sign_headers


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
