"""Browser tests' parts: Debian's Chromium driven by Playwright, a real Careline server, both in
a loopback-only network namespace (see netns.py), and screenshots saved for people to look at.

Tests are plain functions that hand a coroutine to `BrowserEnv.run`; everything in it (server,
HTTP calls, pages) runs on the namespaced loop.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import re
import tempfile
from collections.abc import AsyncIterator, Coroutine, Sequence
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

from playwright.async_api import Browser, BrowserContext, Page, Playwright, async_playwright

from careline.server.settings import Settings
from tests.browser.netns import NetnsLoop
from tests.support import RunningServer, running_server

T = TypeVar("T")

CHROMIUM = os.environ.get("CARELINE_CHROMIUM", "/usr/bin/chromium")
CHROMIUM_ARGS = [
    "--use-fake-device-for-media-stream",
    "--use-fake-ui-for-media-stream",
    "--allow-loopback-in-peer-connection",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
    "--disable-quic",
    "--autoplay-policy=no-user-gesture-required",
]
#: Server settings every browser test needs: media gathered on loopback only.
BROWSER_SETTINGS: dict[str, Any] = {"media.host_addresses": ["127.0.0.1"]}


def artifacts_dir() -> Path:
    """Where screenshots go: $CARELINE_ARTIFACTS, else a temp dir (created once per run)."""
    named = os.environ.get("CARELINE_ARTIFACTS")
    path = Path(named) if named else Path(tempfile.gettempdir()) / "careline-artifacts"
    path.mkdir(parents=True, exist_ok=True)
    return path


@dataclass
class BrowserEnv:
    """The namespaced loop, a launched Chromium, and where this test's screenshots go."""

    loop: NetnsLoop
    playwright: Playwright
    browser: Browser
    artifacts: Path
    test_name: str = "test"
    contexts: list[BrowserContext] = field(default_factory=list)
    console: list[str] = field(default_factory=list)

    def run(self, coro: Coroutine[Any, Any, T], timeout: float = 240) -> T:
        """Run a scenario on the namespaced loop; pages still open are closed afterwards (use
        `server()` or `closing_pages()` to close them while the server still runs)."""
        try:
            return self.loop.run(coro, timeout)
        finally:
            self.loop.run(self._close_contexts(), 60)

    @asynccontextmanager
    async def server(self, settings: Settings) -> AsyncIterator[RunningServer]:
        """A Careline server for the block; the pages opened in it are closed before the server
        stops (an open socket would make its shutdown wait for it)."""
        async with running_server(settings) as server, self.closing_pages():
            yield server

    @asynccontextmanager
    async def closing_pages(self) -> AsyncIterator[None]:
        """Close the pages opened so far when the block ends: enter it after what the pages talk
        to (servers, proxies), so they are closed first."""
        try:
            yield
        finally:
            await self._close_contexts()

    async def page(self, url: str | None = None, *, fake_media: bool = True) -> Page:
        """A page in a fresh browser context (its own storage, as another device would be).

        With fake_media=False the context is refused camera and microphone.
        """
        context = await self.browser.new_context(
            viewport={"width": 1024, "height": 720},
            permissions=["camera", "microphone"] if fake_media else [],
        )
        self.contexts.append(context)
        page = await context.new_page()
        page.on("console", lambda msg: self.console.append(f"{msg.type}: {msg.text}"))
        page.on("pageerror", lambda exc: self.console.append(f"pageerror: {exc}"))
        if url is not None:
            await page.goto(url)
        return page

    async def screenshot(self, page: Page, step: str) -> Path:
        """Save a PNG of the page as <test>-<step>.png in the artifacts folder."""
        safe = re.sub(r"[^A-Za-z0-9_.-]+", "-", f"{self.test_name}-{step}")
        path = self.artifacts / f"{safe}.png"
        await page.screenshot(path=str(path), full_page=True)
        return path

    async def _close_contexts(self) -> None:
        contexts, self.contexts = self.contexts, []
        for context in contexts:
            await context.close()


async def launch() -> tuple[Playwright, Browser]:
    """Start Playwright's driver and Debian's Chromium (headless, fresh profile)."""
    playwright = await async_playwright().start()
    browser = await playwright.chromium.launch(
        executable_path=CHROMIUM, headless=True, args=CHROMIUM_ARGS
    )
    return playwright, browser


async def video_playing(page: Page, selector: str, within_ms: int = 20000) -> None:
    """Wait until the video element at `selector` shows frames: videoWidth > 0 and its
    currentTime advancing."""
    # The predicate must be synchronous: wait_for_function does not await a returned Promise
    # (a Promise is truthy, so an async predicate passes at once). It remembers the element's
    # last currentTime on the element and passes when it moved on at a later poll.
    await page.wait_for_function(
        """(sel) => {
            const v = document.querySelector(sel);
            if (!v || v.videoWidth === 0 || v.readyState < 2) return false;
            const now = performance.now();
            const last = v.__playingProbe;
            if (!last || now - last.at > 2000) {
                v.__playingProbe = { t: v.currentTime, at: now };
                return false;
            }
            if (now - last.at < 300) return false;
            v.__playingProbe = { t: v.currentTime, at: now };
            return v.currentTime > last.t;
        }""",
        arg=selector,
        timeout=within_ms,
        polling=250,
    )


async def body_data(page: Page, name: str) -> str:
    """`document.body.dataset[name]` ("" when unset): where pages say which node they talk to."""
    value: str = await page.evaluate("(name) => document.body.dataset[name] || ''", name)
    return value


class TcpProxy:
    """A TCP proxy on loopback: each connection goes to the first of `targets` (ports) that
    accepts it, as a load balancer that skips dead nodes would. `drop()` cuts every connection
    and refuses new ones until `restore()`, as a lost network would."""

    def __init__(self, targets: Sequence[int] = ()) -> None:
        self.targets = list(targets)
        self.down = False
        self.writers: set[asyncio.StreamWriter] = set()
        self.server: asyncio.Server | None = None
        self.port = 0

    @property
    def origin(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    async def start(self) -> None:
        self.server = await asyncio.start_server(self._client, "127.0.0.1", 0)
        self.port = self.server.sockets[0].getsockname()[1]

    async def _client(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        if not self.down:
            for port in self.targets:
                try:
                    up_reader, up_writer = await asyncio.open_connection("127.0.0.1", port)
                except OSError:
                    continue
                self.writers.update((writer, up_writer))
                await asyncio.gather(self._pipe(reader, up_writer), self._pipe(up_reader, writer))
                return
        writer.close()

    async def _pipe(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            while data := await reader.read(65536):
                writer.write(data)
                await writer.drain()
        except (ConnectionError, OSError):
            pass
        finally:
            self.writers.discard(writer)
            writer.close()

    def drop(self) -> None:
        self.down = True
        for writer in list(self.writers):
            with contextlib.suppress(Exception):
                writer.transport.abort()
        self.writers.clear()

    def restore(self) -> None:
        self.down = False

    async def close(self) -> None:
        self.drop()
        if self.server is not None:
            self.server.close()
