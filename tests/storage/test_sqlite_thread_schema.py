"""The SQLite thread schema: a database of the previous version migrates, and every query the
thread API serves is answered through an index."""

from __future__ import annotations

import asyncio
import sqlite3
from pathlib import Path

from careline.server.storage.sqlite_schema import MIGRATIONS
from careline.server.storage.sqlite_storage import SqliteStorage
from careline.server.storage.sqlite_thread_rows import SELECT_MESSAGES
from careline.signaling.identity import Role
from careline.signaling.thread import Attachment, MessageKind, ThreadQuery, ThreadState
from tests.storage.test_thread_store_contract import (
    CLINICIAN,
    CLINICIAN_WRITES,
    FAMILY,
    PARENT_WRITES,
    assign,
    draft,
    make,
)

#: Schema version 4: entries in a WITHOUT ROWID table, thread indexes keyed on `updated_at`.
BEFORE_ROWID_ENTRIES = 4


async def fill(storage: SqliteStorage) -> None:
    """Two threads with messages, a reply, an attachment and an edit."""
    threads = storage.threads
    for thread_id in ("t-1", "t-2"):
        await make(storage, thread_id)
        await assign(storage, thread_id)
    await asyncio.gather(
        *(threads.append(draft("t-1", f"m{n}", cmid=f"m{n}"), PARENT_WRITES) for n in range(5))
    )
    await threads.append(
        draft("t-1", "reply", sender=CLINICIAN, role=Role.CLINICIAN, cmid="r"), CLINICIAN_WRITES
    )
    await threads.add_attachment(Attachment("t-2", "a-1", "image/png", 10, FAMILY, 1.0, None))
    await threads.append(draft("t-2", None, cmid="photo", attachments=("a-1",)), PARENT_WRITES)
    await threads.append(
        draft("t-1", "m0 fixed", cmid="edit", kind=MessageKind.EDIT, target=3), PARENT_WRITES
    )


async def test_a_database_of_the_previous_schema_migrates(tmp_path: Path) -> None:
    path = tmp_path / "store.sqlite3"
    old = SqliteStorage(path, migrations=MIGRATIONS[:BEFORE_ROWID_ENTRIES])
    await old.open()
    try:
        await fill(old)
        before = {t: list(await old.threads.messages(t)) for t in ("t-1", "t-2")}
        family_view = await old.threads.list_threads(ThreadQuery(viewer=FAMILY, family=FAMILY))
        old_version = await old.database.read(
            lambda conn: conn.execute("PRAGMA user_version").fetchone()[0]
        )
    finally:
        await old.close()
    assert old_version == BEFORE_ROWID_ENTRIES

    storage = SqliteStorage(path)
    await storage.open()
    try:
        version = await storage.database.read(
            lambda conn: conn.execute("PRAGMA user_version").fetchone()[0]
        )
        assert version == len(MIGRATIONS)
        after = {t: list(await storage.threads.messages(t)) for t in ("t-1", "t-2")}
        assert after == before
        assert (
            await storage.threads.list_threads(ThreadQuery(viewer=FAMILY, family=FAMILY))
            == family_view
        )
        # Idempotency, seqs and horizons carry over.
        stored = {m.client_msg_id: m for m in before["t-1"]}
        retry = await storage.threads.append(draft("t-1", "m2", cmid="m2"), PARENT_WRITES)
        assert retry.duplicate
        assert retry.message == stored["m2"]
        following = await storage.threads.append(draft("t-1", "next"), PARENT_WRITES)
        assert following.message.seq == before["t-1"][-1].seq + 1
        assert await storage.threads.read_seq("t-1", CLINICIAN) == stored["r"].seq
        assert [m.seq for m in await storage.threads.messages("t-1", before_seq=4, limit=2)] == [
            2,
            3,
        ]
    finally:
        await storage.close()


async def test_the_thread_api_queries_use_indexes(tmp_path: Path) -> None:
    storage = SqliteStorage(tmp_path / "store.sqlite3")
    await storage.open()
    try:
        await fill(storage)
        statements: list[str] = []
        await storage.database.read(lambda conn: conn.set_trace_callback(statements.append))
        threads = storage.threads
        for query in (
            ThreadQuery(viewer=FAMILY, family=FAMILY),
            ThreadQuery(viewer=FAMILY, family=FAMILY, before=2000.0),
            ThreadQuery(viewer=CLINICIAN, clinician=CLINICIAN),
            ThreadQuery(
                viewer=CLINICIAN, clinician=CLINICIAN, states=frozenset({ThreadState.OPEN})
            ),
            ThreadQuery(viewer="admin", states=frozenset({ThreadState.ANSWERED})),
            ThreadQuery(viewer="admin", states=frozenset({ThreadState.CLOSED}), before=5.0),
        ):
            await threads.list_threads(query)
        await threads.messages("t-1", after_seq=2)
        await threads.messages("t-1", before_seq=5, limit=2)
        await threads.get_messages("t-1", [2, 3])
        await storage.database.read(lambda conn: conn.set_trace_callback(None))
        statements.append(SELECT_MESSAGES.replace("?", "'t-1'") + "AND client_msg_id = 'm1'")

        def plans(conn: sqlite3.Connection) -> list[str]:
            return [
                " / ".join(row[3] for row in conn.execute("EXPLAIN QUERY PLAN " + sql))
                for sql in statements
            ]

        found = await storage.database.read(plans)
        assert len(found) == 10
        for sql, plan in zip(statements, found, strict=True):
            assert "SCAN" not in plan, (sql, plan)
    finally:
        await storage.close()
