"""The SQLite schema as ordered migrations; `PRAGMA user_version` counts those applied."""

from __future__ import annotations

MIGRATIONS: tuple[str, ...] = (
    # 1: audit trail and revocations (Step 1).
    """
    CREATE TABLE audit_events (
        scope TEXT NOT NULL,
        seq INTEGER NOT NULL,
        at REAL NOT NULL,
        actor TEXT NOT NULL,
        action TEXT NOT NULL,
        detail BLOB NOT NULL,
        PRIMARY KEY (scope, seq)
    ) WITHOUT ROWID;
    CREATE TABLE revocations (
        key TEXT PRIMARY KEY,
        until REAL NOT NULL
    ) WITHOUT ROWID;
    CREATE INDEX revocations_until ON revocations (until);
    """,
    # 2: video visits and their participants (Step 2).
    """
    CREATE TABLE visits (
        visit_id TEXT PRIMARY KEY,
        state TEXT NOT NULL,
        codec TEXT NOT NULL,
        created_by TEXT NOT NULL,
        created_at REAL NOT NULL,
        ended_at REAL,
        version INTEGER NOT NULL
    ) WITHOUT ROWID;
    CREATE TABLE visit_participants (
        visit_id TEXT NOT NULL REFERENCES visits (visit_id),
        participant_id TEXT NOT NULL,
        position INTEGER NOT NULL,
        sub TEXT NOT NULL,
        kind TEXT NOT NULL,
        state TEXT NOT NULL,
        updated_at REAL NOT NULL,
        grace_until REAL,
        PRIMARY KEY (visit_id, participant_id),
        UNIQUE (visit_id, sub)
    ) WITHOUT ROWID;
    """,
)
