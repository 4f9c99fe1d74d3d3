"""Runs the application until SIGTERM/SIGINT, then shuts down gracefully within a deadline."""

from __future__ import annotations

import asyncio
import logging
import signal
import sys
from collections.abc import Callable

from aiohttp import web

from careline.server.app import create_app
from careline.server.app_keys import CLUSTER
from careline.server.errors import StartupError
from careline.server.settings import Settings

log = logging.getLogger(__name__)


async def serve(settings: Settings, stop: asyncio.Event | None = None) -> None:
    """Serve until `stop` is set or a termination signal arrives; close everything on the way out.

    Raises StartupError (port in use, data dir not writable, store unreachable) before serving.
    """
    stop = stop or asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(signum, stop.set)
    try:
        await _serve_until(settings, stop)
    finally:
        for signum in (signal.SIGTERM, signal.SIGINT):
            loop.remove_signal_handler(signum)
    log.info("stopped")


async def _serve_until(settings: Settings, stop: asyncio.Event) -> None:
    app = create_app(settings)
    runner = web.AppRunner(
        app,
        handle_signals=False,
        access_log=None,
        shutdown_timeout=settings.server.shutdown_timeout_seconds,
    )
    await runner.setup()
    try:
        site = web.TCPSite(runner, settings.server.host, settings.server.port)
        try:
            await site.start()
        except OSError as exc:
            raise StartupError(
                f"cannot listen on {settings.server.host}:{settings.server.port}: "
                f"{exc.strerror or exc}"
            ) from None
        addresses = _addresses(runner.addresses)
        node = app.get(CLUSTER)
        if node is not None and addresses:
            node.advertise(f"http://{addresses[0]}")
        for address in addresses:
            # One line on stdout, for people and for tests that start on port 0.
            print(f"careline listening on http://{address}", flush=True)
        await stop.wait()
        log.info("shutting down")
    finally:
        await runner.cleanup()


def _addresses(socknames: list[object]) -> list[str]:
    found = []
    for name in socknames:
        if isinstance(name, tuple) and len(name) >= 2:
            host, port = str(name[0]), int(name[1])
            found.append(f"[{host}]:{port}" if ":" in host else f"{host}:{port}")
    return found


def run(settings: Settings) -> None:
    """Run `serve` on uvloop when it is installed, else on the default asyncio loop."""
    loop_factory: Callable[[], asyncio.AbstractEventLoop] | None = None
    try:
        import uvloop
    except ImportError:  # pragma: no cover - uvloop is a dependency on POSIX
        pass
    else:
        loop_factory = uvloop.new_event_loop
    with asyncio.Runner(loop_factory=loop_factory) as runner:
        runner.run(serve(settings))
    sys.stdout.flush()
