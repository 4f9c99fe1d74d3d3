"""HotlineStore on SQLite: kiosks, skills, calls, presence and node leases in the shared file.

`apply` runs in one writer job (its own SAVEPOINT), so its version checks and writes are atomic
and durable together. The partial unique index on open calls per kiosk refuses a second open
call of one kiosk.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Sequence

from careline.server.storage.hotline_codec import (
    pack,
    unpack_call,
    unpack_kiosk,
    unpack_presence,
    unpack_skills,
)
from careline.server.storage.sqlite_database import SqliteDatabase
from careline.signaling.errors import Conflict
from careline.signaling.hotline_call import Call
from careline.signaling.hotline_store import HotlineChange
from careline.signaling.kiosk import Kiosk
from careline.signaling.presence import Presence

_OPEN = "('queued', 'ringing', 'connected')"


class SqliteHotlineStore:
    """The hotline on the shared SQLite database (writes through its batched writer)."""

    def __init__(self, db: SqliteDatabase) -> None:
        self._db = db

    # -- kiosks and skills -------------------------------------------------------------------

    async def add_kiosk(self, kiosk: Kiosk) -> None:
        """Register a kiosk (Conflict if the id is taken)."""

        def insert(conn: sqlite3.Connection) -> None:
            try:
                conn.execute(
                    "INSERT INTO hotline_kiosks (kiosk_id, version, data) VALUES (?, ?, ?)",
                    (kiosk.kiosk_id, kiosk.version, pack(kiosk)),
                )
            except sqlite3.IntegrityError:
                raise Conflict("a kiosk with this id exists", code="hotline.kiosk_exists") from None

        await self._db.write(insert)

    async def get_kiosk(self, kiosk_id: str) -> Kiosk | None:
        """The kiosk, or None."""

        def select(conn: sqlite3.Connection) -> Kiosk | None:
            row = conn.execute(
                "SELECT data FROM hotline_kiosks WHERE kiosk_id = ?", (kiosk_id,)
            ).fetchone()
            return None if row is None else unpack_kiosk(row[0])

        return await self._db.read(select)

    async def update_kiosk(self, kiosk: Kiosk) -> None:
        """Compare-and-set on the kiosk's version."""

        def update(conn: sqlite3.Connection) -> None:
            changed = conn.execute(
                "UPDATE hotline_kiosks SET version = ?, data = ? "
                "WHERE kiosk_id = ? AND version = ?",
                (kiosk.version, pack(kiosk), kiosk.kiosk_id, kiosk.version - 1),
            ).rowcount
            if changed != 1:
                raise Conflict("the kiosk changed meanwhile", code="hotline.stale")

        await self._db.write(update)

    async def set_skills(self, sub: str, skills: Sequence[str]) -> None:
        """Replace a pharmacist's skills."""
        data = pack(tuple(skills))

        def upsert(conn: sqlite3.Connection) -> None:
            conn.execute(
                "INSERT INTO hotline_skills (sub, skills) VALUES (?, ?) "
                "ON CONFLICT (sub) DO UPDATE SET skills = excluded.skills",
                (sub, data),
            )

        await self._db.write(upsert)

    async def get_skills(self, sub: str) -> tuple[str, ...]:
        """A pharmacist's skills (empty if none were set)."""

        def select(conn: sqlite3.Connection) -> tuple[str, ...]:
            row = conn.execute("SELECT skills FROM hotline_skills WHERE sub = ?", (sub,)).fetchone()
            return () if row is None else unpack_skills(row[0])

        return await self._db.read(select)

    # -- calls and presence --------------------------------------------------------------------

    async def apply(self, change: HotlineChange) -> None:
        """Check every record's version, then write them all (or nothing)."""
        calls = [(c, pack(c)) for c in change.calls]
        presences = [(p, pack(p)) for p in change.presences]

        def write(conn: sqlite3.Connection) -> None:
            for call, data in calls:
                _check(conn, "hotline_calls", "call_id", call.call_id, call.version)
                try:
                    conn.execute(
                        "INSERT INTO hotline_calls (call_id, kiosk_id, state, version, "
                        "enqueued_at, data) VALUES (?, ?, ?, ?, ?, ?) ON CONFLICT (call_id) DO "
                        "UPDATE SET state = excluded.state, version = excluded.version, "
                        "data = excluded.data",
                        (
                            call.call_id,
                            call.kiosk_id,
                            call.state.value,
                            call.version,
                            call.enqueued_at,
                            data,
                        ),
                    )
                except sqlite3.IntegrityError:
                    raise Conflict(
                        "this kiosk already has a call", code="hotline.already_calling"
                    ) from None
            for presence, data in presences:
                _check(conn, "hotline_presence", "sub", presence.sub, presence.version)
                conn.execute(
                    "INSERT INTO hotline_presence (sub, version, data) VALUES (?, ?, ?) "
                    "ON CONFLICT (sub) DO UPDATE SET version = excluded.version, "
                    "data = excluded.data",
                    (presence.sub, presence.version, data),
                )

        await self._db.write(write)

    async def get_call(self, call_id: str) -> Call | None:
        """The call, or None."""

        def select(conn: sqlite3.Connection) -> Call | None:
            row = conn.execute(
                "SELECT data FROM hotline_calls WHERE call_id = ?", (call_id,)
            ).fetchone()
            return None if row is None else unpack_call(row[0])

        return await self._db.read(select)

    async def open_calls(self) -> Sequence[Call]:
        """Every queued, ringing or connected call."""

        def select(conn: sqlite3.Connection) -> list[Call]:
            rows = conn.execute(
                f"SELECT data FROM hotline_calls WHERE state IN {_OPEN}"  # noqa: S608 - constant
            ).fetchall()
            return [unpack_call(row[0]) for row in rows]

        return await self._db.read(select)

    async def open_call_of(self, kiosk_id: str) -> Call | None:
        """The kiosk's open call, if any."""

        def select(conn: sqlite3.Connection) -> Call | None:
            row = conn.execute(
                f"SELECT data FROM hotline_calls WHERE kiosk_id = ? AND state IN {_OPEN}",  # noqa: S608
                (kiosk_id,),
            ).fetchone()
            return None if row is None else unpack_call(row[0])

        return await self._db.read(select)

    async def recent_calls(self, since: float, limit: int = 10_000) -> Sequence[Call]:
        """Calls placed at or after `since`, oldest first."""

        def select(conn: sqlite3.Connection) -> list[Call]:
            rows = conn.execute(
                "SELECT data FROM hotline_calls WHERE enqueued_at >= ? "
                "ORDER BY enqueued_at, call_id LIMIT ?",
                (since, limit),
            ).fetchall()
            return [unpack_call(row[0]) for row in rows]

        return await self._db.read(select)

    async def get_presence(self, sub: str) -> Presence | None:
        """The pharmacist's presence, or None."""

        def select(conn: sqlite3.Connection) -> Presence | None:
            row = conn.execute("SELECT data FROM hotline_presence WHERE sub = ?", (sub,)).fetchone()
            return None if row is None else unpack_presence(row[0])

        return await self._db.read(select)

    async def presences(self) -> Sequence[Presence]:
        """Every pharmacist's presence."""

        def select(conn: sqlite3.Connection) -> list[Presence]:
            rows = conn.execute("SELECT data FROM hotline_presence").fetchall()
            return [unpack_presence(row[0]) for row in rows]

        return await self._db.read(select)

    # -- nodes -----------------------------------------------------------------------------------

    async def heartbeat(self, node: str, until: float) -> None:
        """Extend a node's lease (and drop leases that ran out long ago)."""

        def upsert(conn: sqlite3.Connection) -> None:
            conn.execute(
                "INSERT INTO hotline_nodes (node, until) VALUES (?, ?) "
                "ON CONFLICT (node) DO UPDATE SET until = excluded.until",
                (node, until),
            )
            conn.execute("DELETE FROM hotline_nodes WHERE until < ?", (until - 86_400,))

        await self._db.write(upsert)

    async def live_nodes(self, now: float) -> frozenset[str]:
        """Nodes whose lease runs past `now`."""

        def select(conn: sqlite3.Connection) -> frozenset[str]:
            rows = conn.execute("SELECT node FROM hotline_nodes WHERE until > ?", (now,)).fetchall()
            return frozenset(str(row[0]) for row in rows)

        return await self._db.read(select)


def _check(conn: sqlite3.Connection, table: str, key: str, value: str, version: int) -> None:
    """Conflict `hotline.stale` unless the stored record is one version older (absent for 1)."""
    row = conn.execute(
        f"SELECT version FROM {table} WHERE {key} = ?",  # noqa: S608 - table and key are constants
        (value,),
    ).fetchone()
    current = None if row is None else int(row[0])
    expected = None if version == 1 else version - 1
    if current != expected:
        raise Conflict("the hotline changed meanwhile", code="hotline.stale")
