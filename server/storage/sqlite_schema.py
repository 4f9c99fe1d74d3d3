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
    # 3: message-visit threads, their timelines, read horizons and attachments (Step 3).
    """
    CREATE TABLE threads (
        thread_id TEXT PRIMARY KEY,
        family_sub TEXT NOT NULL,
        patient_ref TEXT NOT NULL,
        state TEXT NOT NULL,
        assigned_to TEXT,
        created_by TEXT NOT NULL,
        created_at REAL NOT NULL,
        updated_at REAL NOT NULL,
        closed_at REAL,
        last_seq INTEGER NOT NULL,
        version INTEGER NOT NULL
    ) WITHOUT ROWID;
    CREATE INDEX threads_by_family ON threads (family_sub, updated_at);
    CREATE INDEX threads_by_assignee ON threads (assigned_to, updated_at);
    CREATE INDEX threads_by_state ON threads (state, updated_at);
    CREATE INDEX threads_closed ON threads (closed_at) WHERE state = 'closed';
    CREATE TABLE thread_messages (
        thread_id TEXT NOT NULL,
        seq INTEGER NOT NULL,
        client_msg_id TEXT NOT NULL,
        fingerprint TEXT NOT NULL,
        kind TEXT NOT NULL,
        sender TEXT NOT NULL,
        sender_role TEXT NOT NULL,
        created_at REAL NOT NULL,
        text TEXT,
        attachments BLOB NOT NULL,
        event TEXT,
        subject TEXT,
        target_seq INTEGER,
        version INTEGER NOT NULL,
        edited_at REAL,
        deleted INTEGER NOT NULL,
        PRIMARY KEY (thread_id, seq),
        UNIQUE (thread_id, client_msg_id)
    ) WITHOUT ROWID;
    CREATE TABLE thread_reads (
        thread_id TEXT NOT NULL,
        sub TEXT NOT NULL,
        seq INTEGER NOT NULL,
        PRIMARY KEY (thread_id, sub)
    ) WITHOUT ROWID;
    CREATE TABLE thread_attachments (
        thread_id TEXT NOT NULL,
        attachment_id TEXT NOT NULL,
        content_type TEXT NOT NULL,
        size INTEGER NOT NULL,
        uploader TEXT NOT NULL,
        created_at REAL NOT NULL,
        seq INTEGER,
        PRIMARY KEY (thread_id, attachment_id)
    ) WITHOUT ROWID;
    CREATE INDEX thread_attachments_unsent ON thread_attachments (created_at) WHERE seq IS NULL;
    """,
    # 4: the pharmacist hotline: kiosks, pharmacist skills, calls, presence, node leases (Step 4).
    """
    CREATE TABLE hotline_kiosks (
        kiosk_id TEXT PRIMARY KEY,
        version INTEGER NOT NULL,
        data BLOB NOT NULL
    ) WITHOUT ROWID;
    CREATE TABLE hotline_skills (
        sub TEXT PRIMARY KEY,
        skills BLOB NOT NULL
    ) WITHOUT ROWID;
    CREATE TABLE hotline_calls (
        call_id TEXT PRIMARY KEY,
        kiosk_id TEXT NOT NULL,
        state TEXT NOT NULL,
        version INTEGER NOT NULL,
        enqueued_at REAL NOT NULL,
        data BLOB NOT NULL
    ) WITHOUT ROWID;
    CREATE UNIQUE INDEX hotline_calls_open_per_kiosk ON hotline_calls (kiosk_id)
        WHERE state IN ('queued', 'ringing', 'connected');
    CREATE INDEX hotline_calls_open ON hotline_calls (state)
        WHERE state IN ('queued', 'ringing', 'connected');
    CREATE INDEX hotline_calls_by_time ON hotline_calls (enqueued_at);
    CREATE TABLE hotline_presence (
        sub TEXT PRIMARY KEY,
        version INTEGER NOT NULL,
        data BLOB NOT NULL
    ) WITHOUT ROWID;
    CREATE TABLE hotline_nodes (
        node TEXT PRIMARY KEY,
        until REAL NOT NULL
    ) WITHOUT ROWID;
    """,
    # 5: appends dirty fewer pages. Entries move to a rowid table, so a commit's new rows share
    # the last leaves instead of landing on one leaf per thread; only the two unique indexes
    # are keyed by thread. A family's and an assignee's threads are found without `updated_at`,
    # so their index entries stay put when a message only moves the thread's activity time
    # (there are few of them per key: a listing sorts them). `threads_by_state` keeps it: the
    # queue and single-state listings walk it newest first.
    """
    CREATE TABLE thread_messages_v5 (
        entry_id INTEGER PRIMARY KEY,
        thread_id TEXT NOT NULL,
        seq INTEGER NOT NULL,
        client_msg_id TEXT NOT NULL,
        fingerprint TEXT NOT NULL,
        kind TEXT NOT NULL,
        sender TEXT NOT NULL,
        sender_role TEXT NOT NULL,
        created_at REAL NOT NULL,
        text TEXT,
        attachments BLOB NOT NULL,
        event TEXT,
        subject TEXT,
        target_seq INTEGER,
        version INTEGER NOT NULL,
        edited_at REAL,
        deleted INTEGER NOT NULL
    );
    INSERT INTO thread_messages_v5 (thread_id, seq, client_msg_id, fingerprint, kind, sender,
        sender_role, created_at, text, attachments, event, subject, target_seq, version,
        edited_at, deleted)
    SELECT thread_id, seq, client_msg_id, fingerprint, kind, sender, sender_role, created_at,
        text, attachments, event, subject, target_seq, version, edited_at, deleted
    FROM thread_messages ORDER BY thread_id, seq;
    DROP TABLE thread_messages;
    ALTER TABLE thread_messages_v5 RENAME TO thread_messages;
    CREATE UNIQUE INDEX thread_messages_by_seq ON thread_messages (thread_id, seq);
    CREATE UNIQUE INDEX thread_messages_by_client_id ON thread_messages (thread_id, client_msg_id);
    DROP INDEX threads_by_family;
    CREATE INDEX threads_by_family ON threads (family_sub);
    DROP INDEX threads_by_assignee;
    CREATE INDEX threads_by_assignee ON threads (assigned_to);
    """,
)
