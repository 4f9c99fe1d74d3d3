"""Appends audit events in the background through a bounded queue, so callers do not wait.

Used where the audit trail is a record kept beside state that is already durable (the hotline's
call records): the caller's latency does not include the audit write. The queue is bounded: when
it is full, `record` waits for room (back-pressure, never an unbounded backlog). `close` writes
what is queued (within a deadline) and stops the writer; it is safe to call twice.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Mapping
from dataclasses import dataclass

from careline.signaling.errors import SignalingError
from careline.signaling.stores import AuditStore, AuditValue

log = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class _Entry:
    scope: str
    actor: str
    action: str
    detail: Mapping[str, AuditValue]
    at: float


class AuditWriter:
    """A bounded queue of audit events and the one task that writes them (in small batches)."""

    def __init__(self, audit: AuditStore, *, max_queued: int = 4096, batch: int = 64) -> None:
        self._audit = audit
        self._queue: asyncio.Queue[_Entry] = asyncio.Queue(maxsize=max_queued)
        self._batch = batch
        self._task: asyncio.Task[None] | None = None
        self._closed = False

    def start(self) -> None:
        """Start the writer task (on the running loop)."""
        if self._task is None and not self._closed:
            self._task = asyncio.get_running_loop().create_task(self._run())

    async def record(
        self, scope: str, actor: str, action: str, detail: Mapping[str, AuditValue], at: float
    ) -> None:
        """Queue one event (waits while the queue is full); dropped after close."""
        if self._closed:
            return
        await self._queue.put(_Entry(scope, actor, action, dict(detail), at))

    async def close(self, deadline: float = 5.0) -> None:
        """Write what is queued (up to `deadline` seconds), then stop."""
        if self._closed:
            return
        self._closed = True
        task, self._task = self._task, None
        if task is None:
            return
        try:
            async with asyncio.timeout(deadline):
                await self._queue.join()
        except TimeoutError:
            log.warning("audit writer: %d events not written at shutdown", self._queue.qsize())
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task

    async def _run(self) -> None:
        while True:
            entries = [await self._queue.get()]
            while len(entries) < self._batch and not self._queue.empty():
                entries.append(self._queue.get_nowait())
            try:
                results = await asyncio.gather(
                    *(
                        self._audit.append(e.scope, e.actor, e.action, e.detail, e.at)
                        for e in entries
                    ),
                    return_exceptions=True,
                )
                for result in results:
                    if isinstance(result, SignalingError):
                        log.warning("audit event not written: %s", result.code)
                    elif isinstance(result, BaseException):
                        log.error("audit event not written", exc_info=result)
            finally:
                for _ in entries:
                    self._queue.task_done()
