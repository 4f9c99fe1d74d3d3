"""An event loop on a thread of its own inside a new network namespace that has only loopback.

Chromium gathers WebRTC host candidates on every interface it sees, and aiortc answers checks
from any address; the network rules allow traffic only to loopback. A browser test therefore runs
its server, its Playwright driver and Chromium in a namespace where `lo` is the only interface:
network namespaces belong to a thread (a Linux task), and sockets, threads and processes created
from that thread stay in it. Needs CAP_SYS_ADMIN (root, as in CI).
"""

from __future__ import annotations

import asyncio
import ctypes
import os
import subprocess
import threading
from collections.abc import Coroutine
from concurrent.futures import Future
from typing import Any, TypeVar

T = TypeVar("T")
_CLONE_NEWNET = 0x40000000


class NetnsUnavailable(RuntimeError):
    """The process may not create a network namespace (not root)."""


def _enter_new_netns() -> None:
    libc = ctypes.CDLL(None, use_errno=True)
    if libc.unshare(_CLONE_NEWNET) != 0:
        errno = ctypes.get_errno()
        raise NetnsUnavailable(
            f"unshare(CLONE_NEWNET) failed ({os.strerror(errno)}): browser tests need root "
            "(CAP_SYS_ADMIN) to run Chromium in a loopback-only network namespace"
        )
    subprocess.run(["ip", "link", "set", "lo", "up"], check=True)


class NetnsLoop:
    """A running event loop in a loopback-only namespace; `run` executes coroutines on it."""

    def __init__(self) -> None:
        self._ready: Future[asyncio.AbstractEventLoop] = Future()
        self._thread = threading.Thread(target=self._main, name="netns-loop", daemon=True)
        self._loop: asyncio.AbstractEventLoop | None = None

    def start(self) -> None:
        """Start the thread; raise NetnsUnavailable if the namespace cannot be made."""
        self._thread.start()
        self._loop = self._ready.result(timeout=30)

    def run(self, coro: Coroutine[Any, Any, T], timeout: float = 300) -> T:
        """Run `coro` on the namespaced loop and return its result (blocking the caller)."""
        assert self._loop is not None
        return asyncio.run_coroutine_threadsafe(coro, self._loop).result(timeout)

    def stop(self) -> None:
        """Stop the loop and join the thread."""
        if self._loop is not None:
            self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(timeout=30)

    def _main(self) -> None:
        try:
            _enter_new_netns()
        except BaseException as exc:  # reported to start()
            self._ready.set_exception(exc)
            return
        loop = asyncio.new_event_loop()
        asyncio.set_event_loop(loop)
        self._ready.set_result(loop)
        try:
            loop.run_forever()
        finally:
            loop.run_until_complete(loop.shutdown_asyncgens())
            loop.close()
