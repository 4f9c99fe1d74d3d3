"""Fire-and-forget work a service owns: each piece is a task, guarded, and cancelled on close."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Coroutine
from typing import Any

from careline.signaling.errors import SignalingError

log = logging.getLogger(__name__)


class BackgroundWork:
    """Tasks started by `spawn` (a push to a socket, a grace timer's follow-up).

    A domain error or a lost connection is logged by name (`label` says whose work it was);
    anything else is logged with its traceback by asyncio. `close` cancels and awaits every
    task, and afterwards `spawn` closes the coroutine without running it. Safe to close twice.
    """

    def __init__(self, label: str) -> None:
        self._label = label
        self._tasks: set[asyncio.Task[None]] = set()
        self._closed = False

    def spawn(self, work: Coroutine[Any, Any, None]) -> None:
        """Run `work` in a task owned by this object."""
        if self._closed:
            work.close()
            return
        task = asyncio.get_running_loop().create_task(self._guard(work))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def close(self) -> None:
        """Cancel every task and wait for them."""
        self._closed = True
        for task in list(self._tasks):
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)

    async def _guard(self, work: Coroutine[Any, Any, None]) -> None:
        try:
            await work
        except SignalingError as exc:
            log.warning("%s background work failed: %s", self._label, exc.code)
        except ConnectionError:
            log.info("%s background work lost its connection", self._label)
