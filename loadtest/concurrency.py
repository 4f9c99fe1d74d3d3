"""Run many awaitables at once, with a limit, where the first failure cancels the rest."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Iterable
from typing import TypeVar

_T = TypeVar("_T")
_R = TypeVar("_R")


async def gather_or_cancel(
    items: Iterable[_T], work: Callable[[_T], Awaitable[_R]], limit: int | None = None
) -> list[_R]:
    """`work(item)` for every item, at most `limit` at a time (None: all); results in order.

    The first failure cancels the others, waits for them to end, and is raised as it is (not
    wrapped in an ExceptionGroup, unlike asyncio.TaskGroup). Cancelling the caller cancels
    every task and waits for them.
    """
    gate = asyncio.Semaphore(limit) if limit is not None and limit > 0 else None

    async def run(item: _T) -> _R:
        if gate is None:
            return await work(item)
        async with gate:
            return await work(item)

    tasks = [asyncio.ensure_future(run(item)) for item in items]
    if not tasks:
        return []
    try:
        await asyncio.wait(tasks, return_when=asyncio.FIRST_EXCEPTION)
    finally:
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
    for task in tasks:
        if not task.cancelled() and task.exception() is not None:
            raise task.exception()  # type: ignore[misc]
    return [task.result() for task in tasks]
