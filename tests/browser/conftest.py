"""Fixtures of the browser tests: one namespaced loop and one Chromium per session."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from tests.browser.harness import BrowserEnv, artifacts_dir, launch
from tests.browser.netns import NetnsLoop


@pytest.fixture(scope="session")
def _browser_session() -> Iterator[BrowserEnv]:
    loop = NetnsLoop()
    loop.start()
    playwright, browser = loop.run(launch(), 60)
    env = BrowserEnv(loop=loop, playwright=playwright, browser=browser, artifacts=artifacts_dir())
    try:
        yield env
    finally:
        loop.run(browser.close(), 60)
        loop.run(playwright.stop(), 60)
        loop.stop()


@pytest.fixture
def browser_env(_browser_session: BrowserEnv, request: pytest.FixtureRequest) -> BrowserEnv:
    """The session's browser, with screenshots named after the current test."""
    _browser_session.test_name = request.node.name
    _browser_session.console.clear()
    return _browser_session
