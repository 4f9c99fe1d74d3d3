"""Builds the configured storage backend."""

from __future__ import annotations

from careline.server.settings import Settings
from careline.server.storage.redis_storage import RedisStorage
from careline.server.storage.sqlite_storage import SqliteStorage


def make_storage(settings: Settings) -> SqliteStorage | RedisStorage:
    """The backend named by `store.backend`, not yet opened (no I/O happens here)."""
    if settings.store.backend == "redis":
        return RedisStorage(settings.store.redis_url, settings.store.redis_prefix)
    return SqliteStorage(settings.sqlite_path, blob_dir=settings.data_path / "attachments")
