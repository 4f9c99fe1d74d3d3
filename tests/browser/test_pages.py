"""Every page loads in Chromium and says what is wrong when its link carries no valid token."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.browser.harness import BROWSER_SETTINGS, BrowserEnv
from tests.support import make_settings


@pytest.mark.parametrize("path", ["/visit/v-1?token=not-a-token", "/threads?token=bad"])
def test_a_bad_link_says_so(browser_env: BrowserEnv, tmp_path: Path, path: str) -> None:
    async def scenario() -> None:
        async with browser_env.server(make_settings(tmp_path, **BROWSER_SETTINGS)) as server:
            page = await browser_env.page(server.url + path)
            alert = page.get_by_role("alert")
            await alert.wait_for()
            assert "not valid" in (await alert.inner_text())
            assert "token=" not in page.url  # the token left the address bar
            await browser_env.screenshot(page, "bad-link")

    browser_env.run(scenario())
