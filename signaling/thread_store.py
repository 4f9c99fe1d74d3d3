"""The durable store of message-visit threads (implemented per backend).

Every write returns only once it is durable (SQLite: committed with fsync by the writer thread;
Redis: answered by a server whose AOF is fsynced on every write, see docs/configuration.md), and
either happens whole or not at all. Methods raise StoreUnavailable when the backend cannot be
reached, and the domain's errors (thread.* codes) when a rule refuses.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Protocol

from careline.signaling.thread import (
    Appended,
    Attachment,
    Change,
    Message,
    MessageDraft,
    PurgeResult,
    Thread,
    ThreadQuery,
    ThreadSummary,
)


class ThreadStore(Protocol):
    """Threads, their gap-free timelines, read horizons and attachment metadata."""

    async def create(self, thread: Thread, opened: MessageDraft) -> tuple[Thread, bool]:
        """Store a new thread with its first entry (seq 1), all or nothing.

        Idempotent on `thread_id`: if it exists for the same family and patient, return it and
        False; for another family or patient raise Conflict (thread.duplicate_mismatch).
        """
        ...

    async def get(self, thread_id: str) -> Thread | None:
        """The thread, or None."""
        ...

    async def list_threads(self, query: ThreadQuery) -> Sequence[ThreadSummary]:
        """Threads matching `query`, newest activity first, with the viewer's read horizon."""
        ...

    async def append(self, draft: MessageDraft, change: Change) -> Appended:
        """Give `draft` the thread's next seq and apply `change`, atomically.

        In order: the thread exists and `change`'s access rule holds (else thread.not_found or
        thread.not_assigned); a stored entry with the same client_msg_id is returned as a
        duplicate if its fingerprint matches (else thread.duplicate_mismatch); then the version
        and state rules hold; attachments are bound to the new seq (each uploaded by the sender
        and not yet used); an EDIT or DELETE revises its target (which must be the sender's
        live message). The sender's read horizon moves to the new seq.
        """
        ...

    async def messages(
        self, thread_id: str, *, after_seq: int = 0, before_seq: int | None = None, limit: int = 100
    ) -> Sequence[Message]:
        """Entries oldest first: after `after_seq`, or the last `limit` before `before_seq`."""
        ...

    async def get_messages(self, thread_id: str, seqs: Sequence[int]) -> Sequence[Message]:
        """The entries with these seqs that exist, in seq order."""
        ...

    async def mark_read(self, thread_id: str, sub: str, seq: int) -> int:
        """Move `sub`'s read horizon up to `seq` (never down) and return it.

        Raises thread.seq_out_of_range if `seq` is beyond the thread's last seq.
        """
        ...

    async def read_seq(self, thread_id: str, sub: str) -> int:
        """`sub`'s read horizon (0 when it has read nothing)."""
        ...

    async def add_attachment(self, attachment: Attachment) -> None:
        """Record an uploaded attachment (its bytes are already in the BlobStore)."""
        ...

    async def attachment(self, thread_id: str, attachment_id: str) -> Attachment | None:
        """An attachment's metadata, or None."""
        ...

    async def purge(self, closed_before: float, orphans_before: float) -> PurgeResult:
        """Remove threads closed before `closed_before` whole (entries, horizons, attachments),
        and attachments never sent that were uploaded before `orphans_before`."""
        ...


class BlobStore(Protocol):
    """Opaque bytes by key (attachment contents). `put` returns once the bytes are durable."""

    async def put(self, key: str, data: bytes) -> None:
        """Store `data` under `key` (replacing it)."""
        ...

    async def get(self, key: str) -> bytes | None:
        """The bytes under `key`, or None."""
        ...

    async def delete(self, keys: Sequence[str]) -> None:
        """Remove these keys; missing ones are ignored."""
        ...
