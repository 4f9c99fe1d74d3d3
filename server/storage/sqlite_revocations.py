"""RevocationStore on SQLite: a key table with expiry, pruned as it is written."""

from __future__ import annotations

import sqlite3
import time
from collections.abc import Sequence

from careline.server.storage.sqlite_database import SqliteDatabase


class SqliteRevocationStore:
    """Revoked keys kept until their `until`; expired rows are deleted by each revoke."""

    def __init__(self, db: SqliteDatabase) -> None:
        self._db = db

    async def revoke(self, key: str, until: float) -> None:
        """Revoke `key` until `until` (a later `until` wins); prune revocations already over."""
        horizon = time.time()

        def upsert(conn: sqlite3.Connection) -> None:
            conn.execute("DELETE FROM revocations WHERE until <= ?", (horizon,))
            conn.execute(
                "INSERT INTO revocations (key, until) VALUES (?, ?) "
                "ON CONFLICT (key) DO UPDATE SET until = MAX(until, excluded.until)",
                (key, until),
            )

        await self._db.write(upsert)

    async def is_revoked(self, keys: Sequence[str], now: float) -> bool:
        """True if any key is revoked at `now`."""
        if not keys:
            return False
        marks = ",".join("?" * len(keys))

        def select(conn: sqlite3.Connection) -> bool:
            row = conn.execute(
                f"SELECT 1 FROM revocations WHERE key IN ({marks}) AND until > ? LIMIT 1",  # noqa: S608 - only placeholders are interpolated
                (*keys, now),
            ).fetchone()
            return row is not None

        return await self._db.read(select)
