"""SQLite on its own threads: one writer with batched group commits, one reader, WAL.

Writes are functions run on the writer thread. The writer takes every job queued at that moment
(up to `max_batch`), runs them in one transaction and commits once with `synchronous=FULL`, so a
job's future resolves only after its change is on disk, while throughput does not collapse to one
fsync per write. A job that raises rolls back only itself: the batch first runs without
savepoints and, if any job raised, is rolled back and run again with a SAVEPOINT per job (jobs are
functions of the database alone, so running one again after a rollback is the same as running it
once).

Writes of one kind that are frequent (message appends) can be *grouped*: queued items of the same
WriteGroup that follow each other in a batch are handed to the group in one call, which may apply
them with a few set-based statements instead of several statements each. Every SQLite call on the
writer thread gives up the GIL and must take it back from the event loop, so statements per write,
more than their SQL work, decide the writer's throughput on a busy process. For the same reason a
batch that is nothing but one group's items is first offered to the group whole
(`WriteGroup.run_at_once`): one statement outside a transaction, which commits itself (with the
same fsync), instead of BEGIN, the write and COMMIT.

Reads run on a separate reader thread with its own connection (WAL lets it read while the writer
writes). A checkpointer thread with a connection of its own copies committed WAL frames into the
database file (PASSIVE checkpoints, at most one per `checkpoint_interval`, after commits), so that
the writer's commits seldom pay for a checkpoint themselves; SQLite's automatic checkpoint stays
on as a backstop. Durability does not depend on it: a commit is durable once the WAL is fsynced.
Nothing here blocks the event loop.
"""

from __future__ import annotations

import asyncio
import collections
import logging
import queue
import sqlite3
import threading
import time
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol, TypeVar

from careline.signaling.errors import StoreUnavailable

log = logging.getLogger(__name__)

T = TypeVar("T")
I_contra = TypeVar("I_contra", contravariant=True)
R_co = TypeVar("R_co", covariant=True)
WriteFn = Callable[[sqlite3.Connection], T]
#: What a grouped item came to: its result, or the error its caller gets (it wrote nothing).
Outcome = tuple[Any, Exception | None]


class RunAlone(Exception):
    """Raised by `WriteGroup.run`: undo what this call wrote and apply each item on its own."""


class WriteGroup(Protocol[I_contra, R_co]):
    """Writes of one kind that the writer thread may apply several at a time.

    Every method runs on the writer thread only, inside the writer's transaction.
    """

    def run(
        self, conn: sqlite3.Connection, items: Sequence[I_contra]
    ) -> Sequence[tuple[R_co | None, Exception | None]]:
        """Apply `items` in order; one (result, None) or (None, error) per item.

        An item with an error must have written nothing. Raise RunAlone to have the writer undo
        this call and call `run_one` for each item instead; any other exception fails every item.
        """
        ...

    def run_at_once(
        self, conn: sqlite3.Connection, items: Sequence[I_contra]
    ) -> Sequence[tuple[R_co | None, Exception | None]] | None:
        """Apply `items` by one statement outside a transaction (it commits itself), or return
        None having written nothing, so that the writer runs them as usual.

        Called when the items are a whole batch: one SQLite call instead of three (BEGIN, the
        write, COMMIT), each of which must take the GIL back from the event loop.
        """
        ...

    def run_one(self, conn: sqlite3.Connection, item: I_contra) -> R_co:
        """Apply one item; if it raises, the writer undoes what it wrote."""
        ...

    def discard(self) -> None:
        """The writer rolled back work of this group: forget anything derived from it."""
        ...


class _Room:
    """Room for `size` queued writes; callers beyond it wait, first come, first served.

    Loop thread only. A plain counter: taking room when there is some costs no await (an
    asyncio.Semaphore's acquire is a coroutine call on every write).
    """

    __slots__ = ("_free", "_waiters")

    def __init__(self, size: int) -> None:
        self._free = size
        self._waiters: collections.deque[asyncio.Future[None]] = collections.deque()

    def take_now(self) -> bool:
        """Take one place if one is free and nobody waits for it."""
        if self._free > 0 and not self._waiters:
            self._free -= 1
            return True
        return False

    async def take(self) -> None:
        """Wait for a place (handed over by `give`)."""
        waiter: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._waiters.append(waiter)
        try:
            await waiter
        except BaseException:
            if waiter.done() and not waiter.cancelled():
                self.give(1)  # handed a place, then cancelled: pass it on
            else:
                self._waiters.remove(waiter)
            raise

    def give(self, count: int) -> None:
        """Free `count` places, handing them to waiters first."""
        self._free += count
        while self._free > 0 and self._waiters:
            waiter = self._waiters.popleft()
            if not waiter.done():
                self._free -= 1
                waiter.set_result(None)


@dataclass(slots=True)
class _Job:
    fn: Callable[[sqlite3.Connection], Any] | None
    future: asyncio.Future[Any]
    loop: asyncio.AbstractEventLoop
    group: WriteGroup[Any, Any] | None = None
    item: Any = None


_STOP = object()
#: A job's future and its outcome (a result, or the error to raise).
_Settled = tuple[asyncio.Future[Any], Any, BaseException | None]


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
        checkpoint_interval: float = 0.02,
    ) -> None:
        self._path = path
        self._checkpoint_interval = checkpoint_interval
        self._checkpointer: threading.Thread | None = None
        self._committed = threading.Event()
        self._stop_checkpoints = False
        self._migrations = tuple(migrations)
        self._max_batch = max_batch
        self._room = _Room(max_pending)
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
        self._checkpointer = threading.Thread(
            target=self._checkpoint_loop, name="careline-sqlite-checkpoint", daemon=True
        )
        self._checkpointer.start()

    async def write(self, fn: Callable[[sqlite3.Connection], T]) -> T:
        """Run `fn` in the next batched transaction; return its result once committed."""
        if self._closed or self._writer is None:
            raise StoreUnavailable("the database is closed")
        if not self._room.take_now():
            await self._room.take()
        loop = asyncio.get_running_loop()
        future: asyncio.Future[T] = loop.create_future()
        self._jobs.put(_Job(fn, future, loop))
        return await future

    async def write_grouped(self, group: WriteGroup[I_contra, T], item: I_contra) -> T:
        """Have `group` apply `item` in the next batched transaction (with the other items of
        `group` queued next to it); return its result once committed."""
        if self._closed or self._writer is None:
            raise StoreUnavailable("the database is closed")
        if not self._room.take_now():
            await self._room.take()
        loop = asyncio.get_running_loop()
        future: asyncio.Future[T] = loop.create_future()
        self._jobs.put(_Job(None, future, loop, group, item))
        return await future

    async def read(self, fn: Callable[[sqlite3.Connection], T]) -> T:
        """Run `fn` on the reader thread's connection and return its result."""
        if self._closed:
            raise StoreUnavailable("the database is closed")
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(self._reader, self._run_read, fn)

    async def close(self) -> None:
        """Finish queued writes, stop the threads and close the connections; safe twice."""
        if self._closed:
            return
        self._closed = True
        writer = self._writer
        if writer is not None:
            self._jobs.put(_STOP)
            await asyncio.to_thread(writer.join)
        checkpointer = self._checkpointer
        if checkpointer is not None:
            self._stop_checkpoints = True
            self._committed.set()
            await asyncio.to_thread(checkpointer.join)
        loop = asyncio.get_running_loop()
        await loop.run_in_executor(self._reader, self._close_reader)
        self._reader.shutdown(wait=True)

    # -- threads ---------------------------------------------------------------------------

    def _connect(self) -> sqlite3.Connection:
        # Grouped writes use multi-row statements of many sizes: keep them all prepared.
        conn = sqlite3.connect(
            self._path, isolation_level=None, check_same_thread=False, cached_statements=512
        )
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

    def _checkpoint_loop(self) -> None:
        try:
            conn = self._connect()
            conn.execute("PRAGMA synchronous = FULL")
        except (sqlite3.Error, OSError) as exc:
            log.warning("sqlite checkpointer not started: %s", exc.__class__.__name__)
            return
        try:
            while True:
                self._committed.wait()
                if self._stop_checkpoints:
                    return
                self._committed.clear()
                try:
                    conn.execute("PRAGMA wal_checkpoint(PASSIVE)").fetchone()
                except sqlite3.Error as exc:
                    log.warning("sqlite checkpoint failed: %s", exc.__class__.__name__)
                time.sleep(self._checkpoint_interval)
        finally:
            conn.close()

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
        outcomes: list[Outcome] = []
        units = _units(batch)
        try:
            found = _run_at_once(conn, units)
            if found is not None:
                self._settle_batch(batch, found)
                return
            conn.execute("BEGIN IMMEDIATE")
            found = self._run_optimistic(conn, units)
            if found is None:
                # Something failed: start over with a savepoint per unit, so that only the
                # failing writes are undone (jobs are functions of the database alone).
                if conn.in_transaction:
                    conn.execute("ROLLBACK")
                _discard(batch)
                conn.execute("BEGIN IMMEDIATE")
                found = [outcome for unit in units for outcome in self._run_unit(conn, unit)]
            outcomes = found
            conn.execute("COMMIT")
        except sqlite3.Error as exc:
            log.exception("sqlite commit of %d writes failed", len(batch))
            if conn.in_transaction:
                conn.execute("ROLLBACK")
            _discard(batch)
            failure = StoreUnavailable(f"the database write failed: {exc.__class__.__name__}")
            outcomes = [(None, failure)] * len(batch)
            self._settle(batch, outcomes)
            return
        self._settle_batch(batch, outcomes)

    def _settle_batch(self, batch: list[_Job], outcomes: Sequence[Outcome]) -> None:
        """The batch is committed: count it, wake the checkpointer, hand out the outcomes."""
        self.commits += 1
        self._committed.set()
        self._settle(batch, outcomes)

    def _settle(self, batch: list[_Job], outcomes: Sequence[Outcome]) -> None:
        # One wakeup of the loop per batch, not one per job.
        settled: dict[asyncio.AbstractEventLoop, list[_Settled]] = {}
        for job, (result, error) in zip(batch, outcomes, strict=True):
            settled.setdefault(job.loop, []).append((job.future, result, error))
        for loop, results in settled.items():
            loop.call_soon_threadsafe(self._finish, results)

    @staticmethod
    def _run_optimistic(conn: sqlite3.Connection, units: list[list[_Job]]) -> list[Outcome] | None:
        """Every unit without savepoints (two statements less each); None if one raised."""
        outcomes: list[Outcome] = []
        for unit in units:
            try:
                outcomes += _apply(conn, unit)
            except Exception:  # noqa: BLE001 - rerun with savepoints, where it is reported
                return None
        return outcomes

    @staticmethod
    def _run_unit(conn: sqlite3.Connection, unit: list[_Job]) -> list[Outcome]:
        """One plain job, or consecutive items of one group, inside a savepoint of their own."""
        conn.execute("SAVEPOINT job")
        group = unit[0].group
        try:
            outcomes = _apply(conn, unit)
        except RunAlone:
            conn.execute("ROLLBACK TO job")
            assert group is not None
            group.discard()
            outcomes = [_run_alone(conn, group, job.item) for job in unit]
        except Exception as exc:  # noqa: BLE001 - the unit's own failure: undo only this unit
            conn.execute("ROLLBACK TO job")
            conn.execute("RELEASE job")
            if group is not None:
                group.discard()
            return [(None, exc)] * len(unit)
        conn.execute("RELEASE job")
        return outcomes

    def _finish(self, results: list[_Settled]) -> None:
        self._room.give(len(results))
        for future, result, error in results:
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


def _units(batch: list[_Job]) -> list[list[_Job]]:
    """A batch cut into plain jobs and runs of consecutive items of one group."""
    units: list[list[_Job]] = []
    for job in batch:
        if job.group is not None and units and units[-1][0].group is job.group:
            units[-1].append(job)
        else:
            units.append([job])
    return units


def _run_at_once(conn: sqlite3.Connection, units: list[list[_Job]]) -> list[Outcome] | None:
    """A batch that is one run of grouped items, applied and committed by one statement of the
    group; None if it is not, or if the group declines (then nothing was written)."""
    group = units[0][0].group if len(units) == 1 else None
    if group is None:
        return None
    unit = units[0]
    try:
        outcomes = group.run_at_once(conn, [job.item for job in unit])
    except sqlite3.Error:
        raise
    except Exception:  # noqa: BLE001 - nothing was written: the usual path runs and reports it
        group.discard()
        return None
    if outcomes is None:
        return None
    if len(outcomes) != len(unit):
        raise RuntimeError("a write group answered for the wrong number of items")
    return list(outcomes)


def _apply(conn: sqlite3.Connection, unit: list[_Job]) -> list[Outcome]:
    group = unit[0].group
    if group is None:
        fn = unit[0].fn
        assert fn is not None
        return [(fn(conn), None)]
    outcomes = list(group.run(conn, [job.item for job in unit]))
    if len(outcomes) != len(unit):
        raise RuntimeError("a write group answered for the wrong number of items")
    return outcomes


def _run_alone(conn: sqlite3.Connection, group: WriteGroup[Any, Any], item: Any) -> Outcome:
    conn.execute("SAVEPOINT item")
    try:
        result = group.run_one(conn, item)
    except Exception as exc:  # noqa: BLE001 - this item's own failure: undo only this item
        conn.execute("ROLLBACK TO item")
        conn.execute("RELEASE item")
        group.discard()
        return None, exc
    conn.execute("RELEASE item")
    return result, None


def _discard(batch: list[_Job]) -> None:
    for group in {id(job.group): job.group for job in batch if job.group is not None}.values():
        group.discard()


def _statements(script: str) -> list[str]:
    return [part.strip() for part in script.split(";") if part.strip()]


def _settle(future: asyncio.Future[Any], result: Any, error: BaseException | None) -> None:
    if future.done():  # the caller was cancelled; the write happened regardless
        return
    if error is not None:
        future.set_exception(error)
    else:
        future.set_result(result)
