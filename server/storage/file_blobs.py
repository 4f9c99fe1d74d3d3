"""BlobStore on files under the data dir (the SQLite backend's attachment bytes).

A key becomes a file named by its SHA-256 (so no key can reach outside the directory), under a
two-character fan-out folder. `put` writes a temp file, fsyncs it, renames it into place and
fsyncs the folder, so a stored blob survives a crash whole or not at all. File I/O runs on a
small executor owned by the store, never on the event loop.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import hashlib
import os
import tempfile
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import ParamSpec, TypeVar

from careline.signaling.errors import StoreUnavailable

P = ParamSpec("P")
T = TypeVar("T")


class FileBlobStore:
    """Blobs as files under `root`. Methods may be called from any task of one loop."""

    def __init__(self, root: Path, *, workers: int = 2) -> None:
        self._root = root
        self._executor = ThreadPoolExecutor(
            max_workers=workers, thread_name_prefix="careline-blobs"
        )
        self._closed = False

    @property
    def root(self) -> Path:
        """The folder holding the blobs."""
        return self._root

    async def open(self) -> None:
        """Create the folder."""
        await self._run(self._root.mkdir, parents=True, exist_ok=True)

    async def put(self, key: str, data: bytes) -> None:
        """Write `data` durably under `key`."""
        await self._run(self._put, key, data)

    async def get(self, key: str) -> bytes | None:
        """The bytes under `key`, or None."""
        return await self._run(self._get, key)

    async def delete(self, keys: Sequence[str]) -> None:
        """Remove these keys (missing ones are ignored)."""
        if keys:
            await self._run(self._delete, list(keys))

    async def close(self) -> None:
        """Wait for running file operations and stop the executor; safe twice."""
        if self._closed:
            return
        self._closed = True
        await asyncio.to_thread(self._executor.shutdown, wait=True)

    async def _run(self, fn: Callable[P, T], *args: P.args, **kwargs: P.kwargs) -> T:
        if self._closed:
            raise StoreUnavailable("the blob store is closed")
        loop = asyncio.get_running_loop()
        try:
            return await loop.run_in_executor(
                self._executor, functools.partial(fn, *args, **kwargs)
            )
        except OSError as exc:
            reason = exc.strerror or exc.__class__.__name__
            raise StoreUnavailable(f"the blob store failed: {reason}") from None

    def _path(self, key: str) -> Path:
        name = hashlib.sha256(key.encode()).hexdigest()
        return self._root / name[:2] / name

    def _put(self, key: str, data: bytes) -> None:
        path = self._path(key)
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, temp = tempfile.mkstemp(dir=path.parent, prefix=".blob-")
        try:
            with os.fdopen(fd, "wb") as handle:
                handle.write(data)
                handle.flush()
                os.fsync(handle.fileno())
            os.replace(temp, path)
        except BaseException:
            with contextlib.suppress(FileNotFoundError):
                os.unlink(temp)
            raise
        _fsync_dir(path.parent)

    def _get(self, key: str) -> bytes | None:
        try:
            return self._path(key).read_bytes()
        except FileNotFoundError:
            return None

    def _delete(self, keys: list[str]) -> None:
        for key in keys:
            with contextlib.suppress(FileNotFoundError):
                self._path(key).unlink()


def _fsync_dir(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
