"""AuditStore on SQLite: one row per event, seq assigned inside the writer's transaction."""

from __future__ import annotations

import sqlite3
from collections.abc import Mapping, Sequence

import msgpack

from careline.server.storage.sqlite_database import SqliteDatabase
from careline.signaling.stores import AuditEvent, AuditValue


class SqliteAuditStore:
    """Append-only audit trail per scope; seq is gap-free because only the writer assigns it."""

    def __init__(self, db: SqliteDatabase) -> None:
        self._db = db

    async def append(
        self, scope: str, actor: str, action: str, detail: Mapping[str, AuditValue], at: float
    ) -> AuditEvent:
        """Store an event durably and return it with its seq."""
        blob = msgpack.packb(dict(detail))

        def insert(conn: sqlite3.Connection) -> int:
            row = conn.execute(
                "SELECT COALESCE(MAX(seq), 0) + 1 FROM audit_events WHERE scope = ?", (scope,)
            ).fetchone()
            seq = int(row[0])
            conn.execute(
                "INSERT INTO audit_events (scope, seq, at, actor, action, detail) "
                "VALUES (?, ?, ?, ?, ?, ?)",
                (scope, seq, at, actor, action, blob),
            )
            return seq

        seq = await self._db.write(insert)
        return AuditEvent(scope=scope, seq=seq, at=at, actor=actor, action=action, detail=detail)

    async def list(self, scope: str, after_seq: int = 0, limit: int = 100) -> Sequence[AuditEvent]:
        """Events with seq > after_seq, oldest first."""

        def select(conn: sqlite3.Connection) -> list[AuditEvent]:
            rows = conn.execute(
                "SELECT seq, at, actor, action, detail FROM audit_events "
                "WHERE scope = ? AND seq > ? ORDER BY seq LIMIT ?",
                (scope, after_seq, limit),
            ).fetchall()
            return [
                AuditEvent(
                    scope=scope,
                    seq=int(seq),
                    at=float(at),
                    actor=str(actor),
                    action=str(action),
                    detail=msgpack.unpackb(detail),
                )
                for seq, at, actor, action, detail in rows
            ]

        return await self._db.read(select)
