"""Shared fixtures: settings in a temp data dir, a real server, a real redis-server."""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest

from careline.server.settings import Settings
from tests.support import RedisServer, RunningServer, make_settings, redis_server, running_server


@pytest.fixture
def settings(tmp_path: Path) -> Settings:
    """Loopback settings with a fresh SQLite data dir."""
    return make_settings(tmp_path / "data")


@pytest.fixture
async def server(settings: Settings) -> AsyncIterator[RunningServer]:
    """A real Careline server on an ephemeral loopback port (SQLite backend)."""
    async with running_server(settings) as running:
        yield running


@pytest.fixture(scope="session")
def redis() -> Iterator[RedisServer]:
    """One private redis-server for the session (tests use distinct key prefixes)."""
    with redis_server() as instance:
        yield instance
