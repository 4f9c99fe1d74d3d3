"""The SQLite backend: one database file holding every store (the embedded default)."""

from __future__ import annotations

import sqlite3
from collections.abc import Sequence
from pathlib import Path

from careline.server.storage.file_blobs import FileBlobStore
from careline.server.storage.sqlite_audit import SqliteAuditStore
from careline.server.storage.sqlite_database import SqliteDatabase
from careline.server.storage.sqlite_hotline import SqliteHotlineStore
from careline.server.storage.sqlite_revocations import SqliteRevocationStore
from careline.server.storage.sqlite_schema import MIGRATIONS
from careline.server.storage.sqlite_threads import SqliteThreadStore
from careline.server.storage.sqlite_visits import SqliteVisitStore
from careline.signaling.errors import StoreUnavailable


class SqliteStorage:
    """Storage on one SQLite file (WAL, one writer thread, group commit)."""

    backend = "sqlite"

    def __init__(
        self,
        path: Path,
        blob_dir: Path | None = None,
        migrations: Sequence[str] = MIGRATIONS,
    ) -> None:
        """`migrations` other than all of them only to build databases of older versions."""
        self._db = SqliteDatabase(path, migrations)
        self._threads = SqliteThreadStore(self._db)
        self._blobs = FileBlobStore(blob_dir if blob_dir is not None else path.parent / "blobs")
        self._audit = SqliteAuditStore(self._db)
        self._revocations = SqliteRevocationStore(self._db)
        self._visits = SqliteVisitStore(self._db)
        self._hotline = SqliteHotlineStore(self._db)

    @property
    def database(self) -> SqliteDatabase:
        """The shared database (for stores added by later steps)."""
        return self._db

    @property
    def audit(self) -> SqliteAuditStore:
        return self._audit

    @property
    def revocations(self) -> SqliteRevocationStore:
        return self._revocations

    @property
    def visits(self) -> SqliteVisitStore:
        return self._visits

    @property
    def threads(self) -> SqliteThreadStore:
        return self._threads

    @property
    def hotline(self) -> SqliteHotlineStore:
        return self._hotline

    @property
    def blobs(self) -> FileBlobStore:
        """Attachment bytes as files (default: a `blobs` folder beside the database)."""
        return self._blobs

    async def open(self) -> None:
        """Open the file and apply migrations; raises StoreUnavailable on failure."""
        try:
            await self._db.open()
            await self._blobs.open()
        except (sqlite3.Error, OSError) as exc:
            raise StoreUnavailable(f"cannot open SQLite database: {exc}") from None

    async def ping(self) -> None:
        """A trivial read through the reader thread."""

        def probe(conn: sqlite3.Connection) -> None:
            conn.execute("SELECT 1").fetchone()

        try:
            await self._db.read(probe)
        except sqlite3.Error as exc:
            raise StoreUnavailable(f"SQLite is not answering: {exc.__class__.__name__}") from None

    async def close(self) -> None:
        await self._blobs.close()
        await self._db.close()
