"""Acknowledged thread writes survive a crash: Redis (AOF, appendfsync always) and SQLite."""

from __future__ import annotations

import asyncio
import shutil
import signal
import subprocess
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest

from careline.server.storage.redis_storage import RedisStorage
from careline.server.storage.sqlite_storage import SqliteStorage
from careline.signaling.stores import Storage
from careline.signaling.thread import Change, ThreadState
from tests.storage.test_thread_store_contract import PARENT_WRITES, draft, new_thread, opened
from tests.support import RedisServer, free_port

pytestmark = pytest.mark.redis


def _start(directory: Path, port: int) -> subprocess.Popen[bytes]:
    binary = shutil.which("redis-server")
    assert binary is not None
    args = [
        binary,
        "--port",
        str(port),
        "--bind",
        "127.0.0.1",
        "--dir",
        str(directory),
        "--save",
        "",
        "--appendonly",
        "yes",
        "--appendfsync",
        "always",
        "--logfile",
        str(directory / "redis.log"),
    ]
    return subprocess.Popen(args, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)


async def _listening(port: int, within: float = 10.0) -> None:
    async with asyncio.timeout(within):
        while True:
            try:
                _, writer = await asyncio.open_connection("127.0.0.1", port)
            except OSError:
                await asyncio.sleep(0.05)
                continue
            writer.close()
            await writer.wait_closed()
            return


@contextmanager
def aof_redis() -> Iterator[tuple[Path, int, list[subprocess.Popen[bytes]]]]:
    """A private redis-server with appendonly on; the caller may kill and restart it."""
    directory = Path(tempfile.mkdtemp(prefix="careline-aof-"))
    port = free_port()
    processes = [_start(directory, port)]
    try:
        yield directory, port, processes
    finally:
        for process in processes:
            if process.poll() is None:
                process.kill()
                process.wait()
        shutil.rmtree(directory, ignore_errors=True)


async def _write_then_crash(storage: Storage, count: int) -> list[int]:
    thread = new_thread("t-crash")
    await storage.threads.create(thread, opened(thread))
    results = await asyncio.gather(
        *(
            storage.threads.append(draft("t-crash", f"m{i}", cmid=f"k{i}"), PARENT_WRITES)
            for i in range(count)
        )
    )
    return sorted(r.message.seq for r in results)


async def test_redis_keeps_acknowledged_messages_across_kill_9() -> None:
    with aof_redis() as (directory, port, processes):
        await _listening(port)
        url = f"redis://127.0.0.1:{port}/0"
        storage = RedisStorage(url, "dur")
        await storage.open()
        assert storage.aof_always is True
        try:
            acknowledged = await _write_then_crash(storage, 60)
            assert acknowledged == list(range(2, 62))
            processes[0].send_signal(signal.SIGKILL)
            processes[0].wait()
        finally:
            await storage.close()
        processes.append(_start(directory, port))
        await _listening(port)
        again = RedisStorage(url, "dur")
        await again.open()
        try:
            listed = await again.threads.messages("t-crash", limit=1000)
            assert [m.seq for m in listed] == list(range(1, 62))
            assert sorted(m.client_msg_id for m in listed[1:]) == sorted(f"k{i}" for i in range(60))
            retry = await again.threads.append(draft("t-crash", "m7", cmid="k7"), PARENT_WRITES)
            assert retry.duplicate
            thread = await again.threads.get("t-crash")
            assert thread is not None
            assert (thread.last_seq, thread.state) == (61, ThreadState.OPEN)
        finally:
            await again.close()


async def test_redis_without_aof_is_reported(redis: RedisServer) -> None:
    storage = RedisStorage(redis.url, "noaof")
    await storage.open()
    try:
        assert storage.aof_always is False
    finally:
        await storage.close()


async def test_sqlite_keeps_acknowledged_messages_across_reopen(tmp_path: Path) -> None:
    storage = SqliteStorage(tmp_path / "db.sqlite3")
    await storage.open()
    acknowledged = await _write_then_crash(storage, 40)
    await storage.close()
    again = SqliteStorage(tmp_path / "db.sqlite3")
    await again.open()
    try:
        listed = await again.threads.messages("t-crash", limit=1000)
        assert [m.seq for m in listed] == [1, *acknowledged]
        stale = Change(allowed=frozenset(), family="fam-1")
        retry = await again.threads.append(draft("t-crash", "m3", cmid="k3"), stale)
        assert retry.duplicate
    finally:
        await again.close()
