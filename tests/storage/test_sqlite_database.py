"""The SQLite writer thread: group commit, per-job rollback, durability, schema versions."""

from __future__ import annotations

import asyncio
import sqlite3
from collections.abc import Callable
from pathlib import Path

import pytest

from careline.server.storage.sqlite_database import SqliteDatabase
from careline.server.storage.sqlite_schema import MIGRATIONS
from careline.server.storage.sqlite_storage import SqliteStorage
from careline.signaling.errors import StoreUnavailable

SCHEMA = ("CREATE TABLE t (k INTEGER PRIMARY KEY, v TEXT NOT NULL)",)


async def test_concurrent_writes_share_commits(tmp_path: Path) -> None:
    db = SqliteDatabase(tmp_path / "db.sqlite3", SCHEMA)
    await db.open()
    try:

        def insert(k: int) -> Callable[[sqlite3.Connection], int]:
            return lambda conn: conn.execute("INSERT INTO t VALUES (?, ?)", (k, "x")).rowcount

        results = await asyncio.gather(*(db.write(insert(k)) for k in range(500)))
        assert results == [1] * 500
        # Group commit: far fewer fsynced transactions than writes.
        assert db.commits < 250
        count = await db.read(lambda conn: conn.execute("SELECT COUNT(*) FROM t").fetchone()[0])
        assert count == 500
    finally:
        await db.close()


async def test_a_failing_write_rolls_back_only_itself(tmp_path: Path) -> None:
    db = SqliteDatabase(tmp_path / "db.sqlite3", SCHEMA)
    await db.open()
    try:

        def good(conn: sqlite3.Connection) -> None:
            conn.execute("INSERT INTO t VALUES (1, 'a')")

        def bad(conn: sqlite3.Connection) -> None:
            conn.execute("INSERT INTO t VALUES (2, 'b')")
            conn.execute("INSERT INTO t VALUES (1, 'duplicate')")

        outcomes = await asyncio.gather(db.write(good), db.write(bad), return_exceptions=True)
        assert outcomes[0] is None
        assert isinstance(outcomes[1], sqlite3.IntegrityError)
        rows = await db.read(lambda conn: conn.execute("SELECT k, v FROM t").fetchall())
        assert rows == [(1, "a")]
    finally:
        await db.close()


async def test_acknowledged_writes_survive_reopen(tmp_path: Path) -> None:
    path = tmp_path / "db.sqlite3"
    db = SqliteDatabase(path, SCHEMA)
    await db.open()
    await db.write(lambda conn: conn.execute("INSERT INTO t VALUES (7, 'kept')"))
    await db.close()
    await db.close()
    with pytest.raises(StoreUnavailable):
        await db.write(lambda conn: None)
    again = SqliteDatabase(path, SCHEMA)
    await again.open()
    try:
        rows = await again.read(lambda conn: conn.execute("SELECT k, v FROM t").fetchall())
        assert rows == [(7, "kept")]
        mode = await again.read(lambda conn: conn.execute("PRAGMA journal_mode").fetchone()[0])
        assert mode == "wal"
    finally:
        await again.close()


async def test_a_newer_schema_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "db.sqlite3"
    newer = tuple(f"CREATE TABLE t{i} (k INTEGER)" for i in range(len(MIGRATIONS) + 1))
    db = SqliteDatabase(path, newer)
    await db.open()
    await db.close()
    older = SqliteStorage(path)
    with pytest.raises(StoreUnavailable, match="newer"):
        await older.open()
    await older.close()


async def test_an_unopenable_file_is_reported(tmp_path: Path) -> None:
    blocker = tmp_path / "file"
    blocker.write_text("not a dir")
    storage = SqliteStorage(blocker / "db.sqlite3")
    with pytest.raises(StoreUnavailable):
        await storage.open()
    await storage.close()
