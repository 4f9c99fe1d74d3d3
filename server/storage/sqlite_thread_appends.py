"""Thread appends on SQLite, several at a time: the writer's WriteGroup for `ThreadStore.append`.

The appends queued together (one batch of the writer) are checked one after another with the
same domain functions as a single append (`check_access`, `apply_change`), against the thread as
the earlier appends of the batch left it, and then written by one multi-row INSERT into a
connection-local TEMP view, whose INSTEAD OF trigger does for each row what `append_one` does:
insert the entry, store the thread's new state, raise the sender's read horizon. Every SQLite call
on the writer thread gives the GIL back to the event loop and waits to take it again, so one
statement per batch instead of seven per message is what keeps the writer ahead of a busy loop.
(The TEMP view and trigger live only in the writer's connection; the schema is untouched.)

Plain messages and system entries take that path. Anything else (attachments, edits, deletions),
and any entry whose checks refuse it (it may be the retry of a stored message, which wins over
the refusal), goes through `append_one`, the one-entry append, in a savepoint of its own after the
pending rows are written. When the insert meets a stored client_msg_id (a retry) the writer undoes
the group and runs every item through `append_one` (RunAlone). The outcome of every item is
exactly what `append_one` alone would have given. When the batch holds only plain entries that
pass their checks, the INSERT runs outside a transaction and commits itself (`run_at_once`); if
it meets a stored client_msg_id it rolls back whole and the batch runs the usual way.

Thread rows the writer read or wrote are cached here: the writer thread is the only one that
writes the database, and the cache is dropped whenever the writer rolls anything back. Only the
writer thread uses an instance.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Iterable, Sequence
from typing import Any

from careline.server.storage.sqlite_database import RunAlone
from careline.server.storage.sqlite_thread_rows import (
    MESSAGE_COLUMNS,
    append_one,
    load_thread,
    message_values,
)
from careline.signaling.errors import SignalingError
from careline.signaling.thread import (
    Appended,
    Change,
    MessageDraft,
    MessageKind,
    Thread,
    apply_change,
    check_access,
    stored_message,
)

#: One append: the entry and the rules that must hold with it.
AppendItem = tuple[MessageDraft, Change]
AppendOutcome = tuple[Appended | None, Exception | None]

#: Most rows per INSERT: a batch of up to this many is one statement, larger ones are cut. The
#: writer's connection keeps each size's statement prepared.
_MAX_ROWS = 64
#: A row: the entry's columns (INSERT_MESSAGE order), then the thread's state after it.
_COLUMNS = ["thread_id", *MESSAGE_COLUMNS.split(", ")]
_THREAD_COLUMNS = ["t_state", "t_assigned_to", "t_updated_at", "t_closed_at", "t_version"]
_ROW = "(" + ", ".join("?" * (len(_COLUMNS) + len(_THREAD_COLUMNS))) + ")"
_VIEW = "careline_thread_append"

# The statements below are built from fixed names and placeholders only.
_PREPARE = (
    f"CREATE TEMP VIEW IF NOT EXISTS {_VIEW} AS SELECT "
    + ", ".join(f"NULL AS {name}" for name in _COLUMNS + _THREAD_COLUMNS),
    f"CREATE TEMP TRIGGER IF NOT EXISTS {_VIEW}_rows INSTEAD OF INSERT ON {_VIEW} BEGIN "  # noqa: S608
    f"INSERT INTO thread_messages ({', '.join(_COLUMNS)}) "
    f"VALUES ({', '.join('NEW.' + name for name in _COLUMNS)}); "
    "UPDATE threads SET updated_at = NEW.t_updated_at, last_seq = NEW.seq "
    "WHERE thread_id = NEW.thread_id; "
    # Indexed columns are set only when they change: setting one rewrites its index entries.
    "UPDATE threads SET state = NEW.t_state, assigned_to = NEW.t_assigned_to, "
    "closed_at = NEW.t_closed_at, version = NEW.t_version WHERE thread_id = NEW.thread_id "
    "AND (state IS NOT NEW.t_state OR assigned_to IS NOT NEW.t_assigned_to "
    "OR closed_at IS NOT NEW.t_closed_at OR version IS NOT NEW.t_version); "
    "INSERT INTO thread_reads (thread_id, sub, seq) VALUES (NEW.thread_id, NEW.sender, NEW.seq) "
    "ON CONFLICT (thread_id, sub) DO UPDATE SET seq = MAX(seq, excluded.seq); "
    "END",
)
_INSERTS = [
    f"INSERT INTO {_VIEW} ({', '.join(_COLUMNS + _THREAD_COLUMNS)}) "  # noqa: S608
    f"VALUES {', '.join([_ROW] * n)}"
    for n in range(_MAX_ROWS + 1)
]


class ThreadAppends:
    """The writer's group of `ThreadStore.append` calls (a WriteGroup of sqlite_database)."""

    def __init__(self, max_cached: int = 20_000) -> None:
        self._max_cached = max_cached
        self._threads: dict[str, Thread] = {}
        self._prepared: sqlite3.Connection | None = None  # has the TEMP view and trigger

    def run(self, conn: sqlite3.Connection, items: Sequence[AppendItem]) -> list[AppendOutcome]:
        """Append every item, in order; each outcome is what `append_one` would give alone.

        Raises RunAlone when an entry's client_msg_id is stored already (a retry).
        """
        pending = _Pending()
        outcomes: list[AppendOutcome] = []
        for draft, change in items:
            appended = self._check(conn, pending, draft, change) if _plain(draft) else None
            if appended is None:
                # Not for the multi-row path, or refused unless it is the retry of a stored
                # entry: the one-entry append decides, once the entries before it are written.
                self._flush(conn, pending)
                outcomes.append(self._one(conn, draft, change))
                continue
            outcomes.append((appended, None))
        self._flush(conn, pending)
        return outcomes

    def run_at_once(
        self, conn: sqlite3.Connection, items: Sequence[AppendItem]
    ) -> list[AppendOutcome] | None:
        """Every item by one INSERT outside a transaction (it commits itself), or None, having
        written nothing, when an item needs more than the multi-row path: not plain, refused,
        a retry, or more rows than one statement holds."""
        if len(items) > _MAX_ROWS:
            return None
        pending = _Pending()
        outcomes: list[AppendOutcome] = []
        for draft, change in items:
            appended = self._check(conn, pending, draft, change) if _plain(draft) else None
            if appended is None:
                return None
            outcomes.append((appended, None))
        try:
            self._flush(conn, pending)
        except RunAlone:
            return None  # the statement's own transaction rolled back
        return outcomes

    def run_one(self, conn: sqlite3.Connection, item: AppendItem) -> Appended:
        """One entry through `append_one` (the writer undoes it if it raises)."""
        appended = append_one(conn, *item)
        self._remember(appended.thread)
        return appended

    def discard(self) -> None:
        """The writer rolled back: what is cached (even the TEMP view) may not be there."""
        self._threads.clear()
        self._prepared = None

    def forget(self, thread_ids: Iterable[str]) -> None:
        """These threads were deleted (on the writer thread)."""
        for thread_id in thread_ids:
            self._threads.pop(thread_id, None)

    def _one(self, conn: sqlite3.Connection, draft: MessageDraft, change: Change) -> AppendOutcome:
        """One entry through `append_one`, undone alone if it fails."""
        conn.execute("SAVEPOINT append")
        try:
            appended = append_one(conn, draft, change)
        except Exception as exc:  # noqa: BLE001 - this entry's own failure, as a lone job's
            conn.execute("ROLLBACK TO append")
            conn.execute("RELEASE append")
            return None, exc
        conn.execute("RELEASE append")
        self._remember(appended.thread)
        return appended, None

    def _check(
        self, conn: sqlite3.Connection, pending: _Pending, draft: MessageDraft, change: Change
    ) -> Appended | None:
        """A plain entry checked against its thread and added to `pending`; None if refused."""
        thread = pending.threads.get(draft.thread_id) or self._thread(conn, draft.thread_id)
        try:
            current = check_access(thread, change)
            after = apply_change(current, change, current.last_seq + 1, draft.created_at)
        except SignalingError:
            return None
        message = stored_message(draft, after.last_seq, ())
        pending.add(message_values(message), after)
        return Appended(message, after, duplicate=False)

    def _thread(self, conn: sqlite3.Connection, thread_id: str) -> Thread | None:
        thread = self._threads.get(thread_id)
        if thread is None:
            thread = load_thread(conn, thread_id)
            if thread is not None:
                self._remember(thread)
        return thread

    def _remember(self, thread: Thread) -> None:
        if len(self._threads) >= self._max_cached and thread.thread_id not in self._threads:
            self._threads.clear()
        self._threads[thread.thread_id] = thread

    def _flush(self, conn: sqlite3.Connection, pending: _Pending) -> None:
        """Write the pending rows (entry, thread after it, horizon); then cache the threads."""
        if not pending.rows:
            return
        if self._prepared is not conn:
            for statement in _PREPARE:
                conn.execute(statement)
            self._prepared = conn
        rows = pending.rows
        try:
            for start in range(0, len(rows), _MAX_ROWS):
                chunk = rows[start : start + _MAX_ROWS]
                conn.execute(_INSERTS[len(chunk)], [value for row in chunk for value in row])
        except sqlite3.IntegrityError:
            raise RunAlone("an entry's client_msg_id is stored already") from None
        for thread in pending.threads.values():
            self._remember(thread)
        pending.clear()


class _Pending:
    """Rows checked and not yet written, in order, and each thread as the last one leaves it."""

    __slots__ = ("rows", "threads")

    def __init__(self) -> None:
        self.rows: list[tuple[Any, ...]] = []
        self.threads: dict[str, Thread] = {}

    def add(self, entry: tuple[Any, ...], after: Thread) -> None:
        self.rows.append(
            (
                *entry,
                after.state.value,
                after.assigned_to,
                after.updated_at,
                after.closed_at,
                after.version,
            )
        )
        self.threads[after.thread_id] = after

    def clear(self) -> None:
        self.rows.clear()
        self.threads.clear()


def _plain(draft: MessageDraft) -> bool:
    """An entry the multi-row path writes: a message or system entry with no attachment."""
    return (
        draft.kind in (MessageKind.MESSAGE, MessageKind.SYSTEM)
        and not draft.attachment_ids
        and draft.target_seq is None
    )
