"""VisitStore on SQLite: a visits table and a participants table, versioned updates."""

from __future__ import annotations

import sqlite3
from collections.abc import Sequence
from typing import Any

from careline.server.storage.sqlite_database import SqliteDatabase
from careline.signaling.errors import Conflict, NotFound
from careline.signaling.visit import (
    Participant,
    ParticipantKind,
    ParticipantState,
    Visit,
    VisitState,
)

_INSERT_VISIT = (
    "INSERT INTO visits (visit_id, state, codec, created_by, created_at, ended_at, version) "
    "VALUES (?, ?, ?, ?, ?, ?, ?)"
)
_SELECT_VISIT = (
    "SELECT visit_id, state, codec, created_by, created_at, ended_at, version "
    "FROM visits WHERE visit_id = ?"
)
_SELECT_PARTICIPANTS = (
    "SELECT visit_id, participant_id, sub, kind, state, updated_at, grace_until "
    "FROM visit_participants WHERE visit_id = ? ORDER BY position"
)


class SqliteVisitStore:
    """Visits on the shared SQLite database (writes through its batched writer)."""

    def __init__(self, db: SqliteDatabase) -> None:
        self._db = db

    async def create(self, visit: Visit, participants: Sequence[Participant]) -> None:
        """Insert the visit and its participants in one transaction."""
        if len({p.sub for p in participants}) != len(participants):
            raise Conflict("each participant of a visit needs a distinct sub")

        def insert(conn: sqlite3.Connection) -> None:
            try:
                conn.execute(
                    _INSERT_VISIT,
                    _visit_row(visit),
                )
            except sqlite3.IntegrityError:
                raise Conflict("a visit with this id exists") from None
            conn.executemany(
                "INSERT INTO visit_participants (visit_id, participant_id, position, sub, kind, "
                "state, updated_at, grace_until) VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
                [
                    (
                        p.visit_id,
                        p.participant_id,
                        i,
                        p.sub,
                        p.kind.value,
                        p.state.value,
                        p.updated_at,
                        p.grace_until,
                    )
                    for i, p in enumerate(participants)
                ],
            )

        await self._db.write(insert)

    async def get(self, visit_id: str) -> Visit | None:
        """The visit, or None."""

        def select(conn: sqlite3.Connection) -> Visit | None:
            row = conn.execute(_SELECT_VISIT, (visit_id,)).fetchone()
            return None if row is None else _visit(row)

        return await self._db.read(select)

    async def participants(self, visit_id: str) -> Sequence[Participant]:
        """Participants in invitation order."""

        def select(conn: sqlite3.Connection) -> list[Participant]:
            rows = conn.execute(_SELECT_PARTICIPANTS, (visit_id,)).fetchall()
            return [_participant(row) for row in rows]

        return await self._db.read(select)

    async def update_visit(self, visit: Visit, expected_version: int) -> Visit:
        """Compare-and-set on version."""

        def update(conn: sqlite3.Connection) -> None:
            changed = conn.execute(
                "UPDATE visits SET state = ?, codec = ?, ended_at = ?, version = ? "
                "WHERE visit_id = ? AND version = ?",
                (
                    visit.state.value,
                    visit.codec,
                    visit.ended_at,
                    visit.version,
                    visit.visit_id,
                    expected_version,
                ),
            ).rowcount
            if changed != 1:
                exists = conn.execute(
                    "SELECT 1 FROM visits WHERE visit_id = ?", (visit.visit_id,)
                ).fetchone()
                if exists is None:
                    raise NotFound("no such visit")
                raise Conflict("the visit changed meanwhile", code="visit.stale")

        await self._db.write(update)
        return visit

    async def upsert_participant(self, participant: Participant) -> None:
        """Store a participant's state (new participants go last)."""
        p = participant

        def upsert(conn: sqlite3.Connection) -> None:
            try:
                conn.execute(
                    "INSERT INTO visit_participants (visit_id, participant_id, position, sub, "
                    "kind, state, updated_at, grace_until) VALUES (?, ?, (SELECT COUNT(*) FROM "
                    "visit_participants WHERE visit_id = ?), ?, ?, ?, ?, ?) "
                    "ON CONFLICT (visit_id, participant_id) DO UPDATE SET state = excluded.state, "
                    "updated_at = excluded.updated_at, grace_until = excluded.grace_until",
                    (
                        p.visit_id,
                        p.participant_id,
                        p.visit_id,
                        p.sub,
                        p.kind.value,
                        p.state.value,
                        p.updated_at,
                        p.grace_until,
                    ),
                )
            except sqlite3.IntegrityError:
                raise NotFound("no such visit, or the sub is taken in it") from None

        await self._db.write(upsert)


def _visit_row(visit: Visit) -> tuple[Any, ...]:
    return (
        visit.visit_id,
        visit.state.value,
        visit.codec,
        visit.created_by,
        visit.created_at,
        visit.ended_at,
        visit.version,
    )


def _visit(row: Sequence[Any]) -> Visit:
    visit_id, state, codec, created_by, created_at, ended_at, version = row
    return Visit(
        visit_id=str(visit_id),
        state=VisitState(state),
        codec=str(codec),
        created_by=str(created_by),
        created_at=float(created_at),
        ended_at=None if ended_at is None else float(ended_at),
        version=int(version),
    )


def _participant(row: Sequence[Any]) -> Participant:
    visit_id, participant_id, sub, kind, state, updated_at, grace_until = row
    return Participant(
        visit_id=str(visit_id),
        participant_id=str(participant_id),
        sub=str(sub),
        kind=ParticipantKind(kind),
        state=ParticipantState(state),
        updated_at=float(updated_at),
        grace_until=None if grace_until is None else float(grace_until),
    )
