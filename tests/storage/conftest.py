"""The storage contract: every test here runs on every backend (SQLite, Redis)."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from careline.server.storage.redis_storage import RedisStorage
from careline.server.storage.sqlite_storage import SqliteStorage
from careline.signaling.stores import Storage
from tests.support import RedisServer


@pytest.fixture(params=["sqlite", "redis"])
async def storage(
    request: pytest.FixtureRequest, tmp_path: Path, redis: RedisServer
) -> AsyncIterator[Storage]:
    """A freshly opened backend; Redis tests get a key prefix of their own."""
    backend: Storage
    if request.param == "sqlite":
        backend = SqliteStorage(tmp_path / "store.sqlite3")
    else:
        backend = RedisStorage(redis.url, f"test-{uuid.uuid4().hex}")
    await backend.open()
    try:
        yield backend
    finally:
        await backend.close()
