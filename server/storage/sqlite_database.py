"""SQLite on its own threads: one writer with batched group commits, one reader, WAL.

Writes are functions run on the writer thread. The writer takes every job queued at that moment
(up to `max_batch`), runs each inside its own SAVEPOINT in one transaction and commits once with
`synchronous=FULL`, so a job's future resolves only after its change is on disk, while throughput
does not collapse to one fsync per write. A job that raises rolls back only itself.

Reads run on a separate reader thread with its own connection (WAL lets it read while the writer
writes). Nothing here blocks the event loop.
"""

from __future__ import annotations

import asyncio
import logging
import queue
import sqlite3
import threading
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

from careline.signaling.errors import StoreUnavailable

log = logging.getLogger(__name__)

T = TypeVar("T")
WriteFn = Callable[[sqlite3.Connection], T]


@dataclass(slots=True)
class _Job:
    fn: Callable[[sqlite3.Connection], Any]
    future: asyncio.Future[Any]
    loop: asyncio.AbstractEventLoop


_STOP = object()


class SqliteDatabase:
    """A SQLite file shared by the stores of one process.

    `write()` and `read()` may be called from any task of the loop that opened the database.
    Pending writes are bounded by `max_pending`; callers beyond it wait for room. A caller
    cancelled while its write is queued does not undo the write; the room is freed when the writer
    has run it.
    """

    def __init__(
        self,
        path: Path,
        migrations: Sequence[str],
        *,
        max_batch: int = 256,
        max_pending: int = 4096,
    ) -> None:
        self._path = path
        self._migrations = tuple(migrations)
        self._max_batch = max_batch
        self._room = asyncio.Semaphore(max_pending)
        self._jobs: queue.SimpleQueue[_Job | object] = queue.SimpleQueue()
        self._writer: threading.Thread | None = None
        self._reader = ThreadPoolExecutor(max_workers=1, thread_name_prefix="careline-sqlite-read")
        self._reader_conn: sqlite3.Connection | None = None
        self._closed = False
        self.commits = 0

    @property
    def path(self) -> Path:
        """The database file."""
        return self._path

    async def open(self) -> None:
        """Create the file if needed, apply migrations and start the writer thread."""
        loop = asyncio.get_running_loop()
        ready: asyncio.Future[None] = loop.create_future()
        self._writer = threading.Thread(
            target=self._write_loop, args=(loop, ready), name="careline-sqlite-write", daemon=True
        )
        self._writer.start()
        await ready

    async def write(self, fn: Callable[[sqlite3.Connection], T]) -> T:
        """Run `fn` in the next batched transaction; return its result once committed."""
        if self._closed or self._writer is None:
            raise StoreUnavailable("the database is closed")
        loop = asyncio.get_running_loop()
        await self._room.acquire()
        future: asyncio.Future[T] = loop.create_future()
        self._jobs.put(_Job(fn, future, loop))
        return await future

    async def read(self, fn: Callable[[sqlite3.Connection], T]) -> T:
        """Run `fn` on the reader thread's connection and return its result."""
        if self._closed:
            raise StoreUnavailable("the database is closed")
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(self._reader, self._run_read, fn)

    async def close(self) -> None:
        """Finish queued writes, stop both threads and close the connections; safe twice."""
        if self._closed:
            return
        self._closed = True
        writer = self._writer
        if writer is not None:
            self._jobs.put(_STOP)
            await asyncio.to_thread(writer.join)
        loop = asyncio.get_running_loop()
        await loop.run_in_executor(self._reader, self._close_reader)
        self._reader.shutdown(wait=True)

    # -- threads ---------------------------------------------------------------------------

    def _connect(self) -> sqlite3.Connection:
        conn = sqlite3.connect(self._path, isolation_level=None, check_same_thread=False)
        conn.execute("PRAGMA busy_timeout = 5000")
        conn.execute("PRAGMA foreign_keys = ON")
        return conn

    def _run_read(self, fn: Callable[[sqlite3.Connection], T]) -> T:
        if self._reader_conn is None:
            self._reader_conn = self._connect()
            self._reader_conn.execute("PRAGMA query_only = ON")
        return fn(self._reader_conn)

    def _close_reader(self) -> None:
        if self._reader_conn is not None:
            self._reader_conn.close()
            self._reader_conn = None

    def _write_loop(self, loop: asyncio.AbstractEventLoop, ready: asyncio.Future[None]) -> None:
        try:
            conn = self._connect()
        except (sqlite3.Error, OSError) as exc:
            loop.call_soon_threadsafe(_settle, ready, None, exc)
            return
        try:
            conn.execute("PRAGMA journal_mode = WAL")
            conn.execute("PRAGMA synchronous = FULL")
            self._migrate(conn)
        except (sqlite3.Error, OSError) as exc:
            conn.close()
            loop.call_soon_threadsafe(_settle, ready, None, exc)
            return
        loop.call_soon_threadsafe(_settle, ready, None, None)
        try:
            stopping = False
            while not stopping:
                batch: list[_Job] = []
                item = self._jobs.get()
                while True:
                    if item is _STOP:
                        stopping = True
                        break
                    assert isinstance(item, _Job)
                    batch.append(item)
                    if len(batch) >= self._max_batch:
                        break
                    try:
                        item = self._jobs.get_nowait()
                    except queue.Empty:
                        break
                if batch:
                    self._run_batch(conn, batch)
        finally:
            conn.close()

    def _run_batch(self, conn: sqlite3.Connection, batch: list[_Job]) -> None:
        outcomes: list[tuple[Any, BaseException | None]] = []
        try:
            conn.execute("BEGIN IMMEDIATE")
            for job in batch:
                conn.execute("SAVEPOINT job")
                try:
                    result = job.fn(conn)
                except Exception as exc:  # noqa: BLE001 - the job's own failure: undo only this job
                    conn.execute("ROLLBACK TO job")
                    conn.execute("RELEASE job")
                    outcomes.append((None, exc))
                else:
                    conn.execute("RELEASE job")
                    outcomes.append((result, None))
            conn.execute("COMMIT")
            self.commits += 1
        except sqlite3.Error as exc:
            log.exception("sqlite commit of %d writes failed", len(batch))
            if conn.in_transaction:
                conn.execute("ROLLBACK")
            failure = StoreUnavailable(f"the database write failed: {exc.__class__.__name__}")
            outcomes = [(None, failure)] * len(batch)
        for job, (result, error) in zip(batch, outcomes, strict=True):
            job.loop.call_soon_threadsafe(self._finish, job.future, result, error)

    def _finish(
        self, future: asyncio.Future[Any], result: Any, error: BaseException | None
    ) -> None:
        self._room.release()
        _settle(future, result, error)

    def _migrate(self, conn: sqlite3.Connection) -> None:
        version = int(conn.execute("PRAGMA user_version").fetchone()[0])
        if version > len(self._migrations):
            raise sqlite3.DatabaseError(
                f"database schema version {version} is newer than this Careline "
                f"({len(self._migrations)})"
            )
        for number, script in enumerate(self._migrations[version:], start=version + 1):
            conn.execute("BEGIN IMMEDIATE")
            try:
                for statement in _statements(script):
                    conn.execute(statement)
                conn.execute(f"PRAGMA user_version = {number}")
                conn.execute("COMMIT")
            except BaseException:
                conn.execute("ROLLBACK")
                raise


def _statements(script: str) -> list[str]:
    return [part.strip() for part in script.split(";") if part.strip()]


def _settle(future: asyncio.Future[Any], result: Any, error: BaseException | None) -> None:
    if future.done():  # the caller was cancelled; the write happened regardless
        return
    if error is not None:
        future.set_exception(error)
    else:
        future.set_result(result)
