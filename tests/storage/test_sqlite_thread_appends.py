"""SQLite appends queued together: one group, the same outcomes as one append at a time."""

from __future__ import annotations

import asyncio
import dataclasses
import sqlite3
import time
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from careline.server.storage.sqlite_storage import SqliteStorage
from careline.signaling.errors import Conflict, NotFound
from careline.signaling.thread import Appended
from tests.storage.test_thread_store_contract import (
    CLINICIAN,
    CLINICIAN_WRITES,
    PARENT_WRITES,
    assign,
    close,
    draft,
    make,
)

STRANGER_WRITES = dataclasses.replace(PARENT_WRITES, family="stranger")


@pytest.fixture
async def storage(tmp_path: Path) -> AsyncIterator[SqliteStorage]:
    backend = SqliteStorage(tmp_path / "store.sqlite3")
    await backend.open()
    try:
        yield backend
    finally:
        await backend.close()


async def hold_writer(storage: SqliteStorage, seconds: float = 0.1) -> asyncio.Task[None]:
    """Keep the writer busy, so that what is queued next lands in one batch."""

    def slow(conn: sqlite3.Connection) -> None:
        time.sleep(seconds)  # on the writer thread

    task = asyncio.get_running_loop().create_task(storage.database.write(slow))
    await asyncio.sleep(0.02)
    return task


async def test_a_batch_of_appends_gets_gap_free_seqs_and_per_entry_outcomes(
    storage: SqliteStorage,
) -> None:
    for thread_id in ("t-1", "t-2"):
        await make(storage, thread_id)
        await assign(storage, thread_id)
    stored = await storage.threads.append(draft("t-1", "first", cmid="kept"), PARENT_WRITES)
    await close(storage, "t-2")
    held = await hold_writer(storage)
    outcomes = await asyncio.gather(
        storage.threads.append(draft("t-1", "a", cmid="a"), PARENT_WRITES),
        storage.threads.append(draft("t-1", "b", cmid="b"), PARENT_WRITES),
        storage.threads.append(draft("t-1", "first", cmid="kept"), PARENT_WRITES),  # a retry
        storage.threads.append(draft("t-2", "late", cmid="c"), PARENT_WRITES),  # closed
        storage.threads.append(draft("t-1", "x", sender="stranger", cmid="d"), STRANGER_WRITES),
        storage.threads.append(draft("t-1", "reply", sender=CLINICIAN, cmid="e"), CLINICIAN_WRITES),
        storage.threads.append(draft("t-1", "a", cmid="a"), PARENT_WRITES),  # same batch retry
        return_exceptions=True,
    )
    await held
    a, b, retry, closed, stranger, reply, again = outcomes
    assert isinstance(a, Appended)
    assert isinstance(b, Appended)
    assert isinstance(reply, Appended)
    assert [a.message.seq, b.message.seq, reply.message.seq] == [4, 5, 6]
    assert not a.duplicate
    assert not b.duplicate
    assert isinstance(retry, Appended)
    assert retry.duplicate
    assert retry.message.seq == stored.message.seq
    assert isinstance(closed, Conflict)
    assert closed.code == "thread.closed"
    assert isinstance(stranger, NotFound)
    assert isinstance(again, Appended)
    assert again.duplicate
    assert again.message.seq == 4
    assert reply.thread.state.value == "answered"
    assert reply.thread.last_seq == 6
    thread = await storage.threads.get("t-1")
    assert thread == reply.thread
    messages = await storage.threads.messages("t-1")
    assert [m.seq for m in messages] == [1, 2, 3, 4, 5, 6]
    assert await storage.threads.read_seq("t-1", CLINICIAN) == 6


async def test_a_rolled_back_batch_leaves_no_cached_state_behind(storage: SqliteStorage) -> None:
    await make(storage, "t-1")
    await assign(storage, "t-1")

    def failing(conn: sqlite3.Connection) -> None:
        conn.execute("INSERT INTO revocations (key, until) VALUES ('k', 1)")
        raise Conflict("no", code="test.refused")

    held = await hold_writer(storage)
    appended, refused = await asyncio.gather(
        storage.threads.append(draft("t-1", "a"), PARENT_WRITES),
        storage.database.write(failing),
        return_exceptions=True,
    )
    await held
    assert isinstance(appended, Appended)
    assert appended.message.seq == 3
    assert isinstance(refused, Conflict)
    following = await storage.threads.append(draft("t-1", "b"), PARENT_WRITES)
    assert following.message.seq == 4
    messages = await storage.threads.messages("t-1")
    assert [m.seq for m in messages] == [1, 2, 3, 4]
    revoked = await storage.database.read(
        lambda conn: conn.execute("SELECT COUNT(*) FROM revocations").fetchone()[0]
    )
    assert revoked == 0


async def test_appends_after_a_reopen_see_the_stored_threads(tmp_path: Path) -> None:
    path = tmp_path / "store.sqlite3"
    first = SqliteStorage(path)
    await first.open()
    await make(first, "t-1")
    await assign(first, "t-1")
    await asyncio.gather(*(first.threads.append(draft("t-1"), PARENT_WRITES) for _ in range(10)))
    await first.close()
    again = SqliteStorage(path)
    await again.open()
    try:
        appended = await again.threads.append(draft("t-1"), PARENT_WRITES)
        assert appended.message.seq == 13
    finally:
        await again.close()


async def test_a_retry_among_plain_appends_is_told_apart_from_new_entries(
    storage: SqliteStorage,
) -> None:
    """The whole batch is plain entries, so the writer tries one self-committing INSERT; the
    retry makes it fail, and it must leave nothing behind before the usual path runs."""
    for thread_id in ("t-1", "t-2"):
        await make(storage, thread_id)
        await assign(storage, thread_id)
    stored = await storage.threads.append(draft("t-1", "first", cmid="kept"), PARENT_WRITES)
    commits = storage.database.commits
    held = await hold_writer(storage)
    outcomes = await asyncio.gather(
        storage.threads.append(draft("t-2", "a", cmid="a"), PARENT_WRITES),
        storage.threads.append(draft("t-1", "first", cmid="kept"), PARENT_WRITES),
        storage.threads.append(draft("t-1", "b", cmid="b"), PARENT_WRITES),
    )
    await held
    a, retry, b = outcomes
    assert (a.message.seq, a.duplicate) == (3, False)
    assert retry.duplicate
    assert retry.message == stored.message
    assert (b.message.seq, b.duplicate) == (4, False)
    assert [m.client_msg_id for m in await storage.threads.messages("t-1", after_seq=2)] == [
        "kept",
        "b",
    ]
    assert [m.seq for m in await storage.threads.messages("t-2")] == [1, 2, 3]
    assert storage.database.commits == commits + 2  # the held write, then the batch


async def test_plain_appends_queued_together_commit_once(storage: SqliteStorage) -> None:
    await make(storage, "t-1")
    await assign(storage, "t-1")
    commits = storage.database.commits
    held = await hold_writer(storage)
    appended = await asyncio.gather(
        *(storage.threads.append(draft("t-1", cmid=f"m{n}"), PARENT_WRITES) for n in range(20))
    )
    await held
    assert [a.message.seq for a in appended] == list(range(3, 23))
    assert storage.database.commits == commits + 2
    thread = await storage.threads.get("t-1")
    assert thread == appended[-1].thread
    assert await storage.threads.read_seq("t-1", appended[-1].message.sender) == 22
