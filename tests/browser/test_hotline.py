"""The kiosk screen and the pharmacist console in Chromium, against a real server.

A kiosk is registered over HTTP and provisioned through its setup link; orders are order tokens
signed as the pharmacy system would. Every scenario saves screenshots.
"""

from __future__ import annotations

import asyncio
import re
import time
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any, Protocol
from urllib.parse import quote

import aiohttp
import segno
from playwright.async_api import Page, expect

from careline.server.datadir import order_secret
from careline.server.order_tokens import OrderTokens
from careline.server.settings import Settings
from careline.signaling.identity import Role
from tests.browser.harness import BROWSER_SETTINGS, BrowserEnv, video_playing
from tests.support import RunningServer, make_settings

#: Short hotline timers: queue pushes every 0.5 s, a quick sweep, short wrap-up.
HOTLINE: dict[str, Any] = {
    **BROWSER_SETTINGS,
    "media.keyframe_interval_seconds": 0.2,
    "hotline.order_secret": "order-secret-" + "z" * 40,
    "hotline.position_update_seconds": 0.5,
    "hotline.sweep_seconds": 0.05,
    "hotline.wrap_up_seconds": 3.0,
    "hotline.ring_timeout_seconds": 20.0,
    "hotline.reconnect_grace_seconds": 30.0,
}


class Served(Protocol):
    """Where pages are loaded from: a test server, or one node of several."""

    @property
    def url(self) -> str: ...

    @property
    def settings(self) -> Settings: ...

    def token(self, role: Role, sub: str, **claims: Any) -> str: ...


@asynccontextmanager
async def hotline_server(
    env: BrowserEnv, tmp_path: Path, **overrides: Any
) -> AsyncIterator[RunningServer]:
    """A server with the HOTLINE settings; the test's pages are closed before it stops (an open
    socket would hold up its shutdown)."""
    async with env.server(make_settings(tmp_path, **{**HOTLINE, **overrides})) as server:
        yield server


def order_token(
    settings: Settings, order_id: str, ttl: int = 600, clock: Callable[[], float] = time.time
) -> str:
    """An order token (the QR code) as the pharmacy system prints it."""
    signer = OrderTokens(
        order_secret(settings),
        issuer=settings.auth.issuer,
        audience=settings.auth.audience,
        leeway=settings.auth.leeway_seconds,
        clock=clock,
    )
    return signer.issue(order_id, ttl).token


async def register_kiosk(server: Served, kiosk_id: str) -> str:
    """Register a kiosk as an admin; its device secret."""
    admin = server.token(Role.ADMIN, "a-1")
    async with (
        aiohttp.ClientSession() as http,
        http.post(
            server.url + "/api/kiosks",
            json={"kiosk_id": kiosk_id},
            headers={"Authorization": f"Bearer {admin}"},
        ) as response,
    ):
        body = await response.json()
        assert response.status == 201, body
        return str(body["secret"])


async def open_kiosk(env: BrowserEnv, server: Served, kiosk_id: str) -> Page:
    """A kiosk provisioned through its setup link, on its idle screen."""
    secret = await register_kiosk(server, kiosk_id)
    page = await env.page(
        f"{server.url}/kiosk?kiosk_id={kiosk_id}&secret={quote(secret)}&idle_after=3"
    )
    await expect(page.get_by_role("heading", name="Talk to a pharmacist")).to_be_visible()
    assert "secret" not in page.url
    assert "kiosk_id" not in page.url
    return page


async def type_code(kiosk: Page, code: str) -> None:
    """Enter an order code by hand (instead of scanning) and call."""
    toggle = kiosk.locator("#manual-toggle")
    if await toggle.get_attribute("aria-expanded") != "true":
        await toggle.click()
    await kiosk.get_by_label("Order code").fill(code)
    await kiosk.get_by_role("button", name="Call a pharmacist").click()


async def open_console(env: BrowserEnv, server: Served, sub: str) -> Page:
    """A pharmacist console, connected (away)."""
    token = server.token(Role.PHARMACIST, sub)
    page = await env.page(f"{server.url}/pharmacist?token={token}")
    await expect(page.locator("#presence-state")).to_have_text("Away")
    assert "token=" not in page.url
    return page


async def go_available(console: Page) -> None:
    """Choose Available (a waiting call may ring at once)."""
    await console.get_by_role("button", name="Available", exact=True).click()
    await expect(console.locator("#presence-state")).to_have_text(
        re.compile("^(Available|Ringing)$")
    )


async def frames_advancing(page: Page, selector: str, within_ms: int = 20000) -> None:
    """Wait until the video at `selector` decodes new frames (not just a frozen picture)."""
    # Synchronous predicate (wait_for_function does not await a Promise): it keeps the last
    # frame count on the element and passes once a later poll sees more decoded frames.
    await page.wait_for_function(
        """(sel) => {
            const v = document.querySelector(sel);
            if (!v || v.videoWidth === 0) return false;
            const frames = v.getVideoPlaybackQuality().totalVideoFrames;
            const now = performance.now();
            const last = v.__framesProbe;
            if (!last || now - last.at > 2000) {
                v.__framesProbe = { frames, at: now };
                return false;
            }
            if (now - last.at < 300) return false;
            v.__framesProbe = { frames, at: now };
            return frames > last.frames;
        }""",
        arg=selector,
        timeout=within_ms,
        polling=250,
    )


async def pharmacist_figures(server: RunningServer, sub: str) -> dict[str, Any]:
    """`GET /api/hotline/stats` as pharmacist `sub` sees it."""
    headers = {"Authorization": f"Bearer {server.token(Role.PHARMACIST, sub)}"}
    async with (
        aiohttp.ClientSession() as http,
        http.get(server.url + "/api/hotline/stats", headers=headers) as response,
    ):
        assert response.status == 200
        return dict(await response.json())


async def connect_call(env: BrowserEnv, kiosk: Page, console: Page, order_id: str) -> None:
    """The console rings with the order id; the pharmacist accepts; video flows both ways."""
    ring = console.get_by_role("alertdialog")
    await expect(ring).to_contain_text(order_id)
    await expect(console.locator("#ring-countdown")).to_contain_text("Rings out in")
    await console.get_by_role("button", name="Accept").click()
    await expect(console.locator("#call-order")).to_have_text(order_id)
    await expect(kiosk.locator("#end-button")).to_be_visible()
    await video_playing(console, "#remote")
    await video_playing(kiosk, "#remote")


def test_kiosk_calls_and_a_pharmacist_answers_with_video(
    browser_env: BrowserEnv, tmp_path: Path
) -> None:
    async def scenario() -> None:
        async with hotline_server(browser_env, tmp_path) as server:
            kiosk = await open_kiosk(browser_env, server, "k-1")
            await browser_env.screenshot(kiosk, "kiosk-idle")
            console = await open_console(browser_env, server, "ph-1")
            await go_available(console)
            await browser_env.screenshot(console, "console-available")

            await type_code(kiosk, order_token(server.settings, "ord-100"))
            await expect(console.get_by_role("alertdialog")).to_contain_text("ord-100")
            await expect(kiosk.locator("#waiting")).to_have_attribute("data-state", "ringing")
            await expect(kiosk.locator("#order-id")).to_have_text("ord-100")
            await expect(console.locator("#presence-state")).to_have_text("Ringing")
            await browser_env.screenshot(kiosk, "kiosk-ringing")
            await browser_env.screenshot(console, "console-ringing")

            await connect_call(browser_env, kiosk, console, "ord-100")
            await expect(console.locator("#presence-state")).to_have_text("On a call")
            await expect(kiosk.locator(".call-bar")).to_contain_text("ord-100")
            await browser_env.screenshot(kiosk, "kiosk-call")
            await browser_env.screenshot(console, "console-call")

            await console.get_by_role("button", name="End call").click()
            await expect(
                kiosk.get_by_role("heading", name="Thank you for calling.")
            ).to_be_visible()
            await expect(console.locator("#presence-state")).to_have_text("Wrap-up")
            await expect(console.locator("#presence-detail")).to_contain_text("left before")
            await expect(console.locator("#end-note")).to_contain_text("ord-100")
            # The console's own figures come from the server (`mine` of the stats).
            await expect(console.locator("#own-answered")).to_have_text("1")
            await expect(console.locator("#own-offered")).to_have_text("1")
            await expect(console.locator("#own-missed")).to_have_text("0")
            await expect(console.locator("#own-talk")).to_have_text(re.compile(r"^\d+:\d\d$"))
            await expect(console.locator("#stat-answered")).to_have_text("1")
            mine = (await pharmacist_figures(server, "ph-1"))["mine"]
            assert (mine["offered"], mine["answered"], mine["missed"]) == (1, 1, 0)
            await browser_env.screenshot(kiosk, "kiosk-thanks")
            await browser_env.screenshot(console, "console-wrap-up")

            # Wrap-up ends by itself; the kiosk goes back to its idle screen by itself.
            await expect(console.locator("#presence-state")).to_have_text("Available")
            await expect(kiosk.get_by_role("heading", name="Talk to a pharmacist")).to_be_visible(
                timeout=10000
            )
            await browser_env.screenshot(kiosk, "kiosk-idle-again")

    browser_env.run(scenario())


def test_a_declined_or_missed_ring_puts_the_call_back(
    browser_env: BrowserEnv, tmp_path: Path
) -> None:
    async def scenario() -> None:
        ring = {"hotline.ring_timeout_seconds": 2.0}
        async with hotline_server(browser_env, tmp_path, **ring) as server:
            kiosk = await open_kiosk(browser_env, server, "k-2")
            console = await open_console(browser_env, server, "ph-2")

            # Nobody is available: the kiosk waits first in line, the console sees the queue.
            await type_code(kiosk, order_token(server.settings, "ord-200"))
            await expect(kiosk.locator("#wait-title")).to_have_text("You are next in line.")
            await expect(kiosk.locator("#wait-estimate")).to_contain_text("become free")
            await expect(console.locator("#queue-length")).to_have_text("1")
            await browser_env.screenshot(kiosk, "kiosk-queued")
            await browser_env.screenshot(console, "console-queue")

            # Declined: back in the queue at the head; the kiosk says it still waits.
            await go_available(console)
            await expect(console.get_by_role("alertdialog")).to_contain_text("ord-200")
            await console.get_by_role("button", name="Decline").click()
            await expect(kiosk.locator("#wait-note")).to_contain_text("still at the front")
            await browser_env.screenshot(kiosk, "kiosk-back-in-line")

            # Nobody else can take it, so it rings again; this time it rings out: the call
            # goes back again and the pharmacist is paused (away, ring_timeout).
            await expect(console.get_by_role("alertdialog")).to_contain_text("ord-200")
            await browser_env.screenshot(console, "console-ringing-again")
            await expect(console.locator("#presence-state")).to_have_text("Away", timeout=8000)
            await expect(console.locator("#presence-detail")).to_contain_text(
                "Paused automatically"
            )
            await expect(console.locator("#end-note")).to_contain_text("not answered in time")
            await expect(kiosk.locator("#waiting")).to_have_attribute("data-state", "queued")
            await expect(kiosk.locator("#wait-title")).to_have_text("You are next in line.")
            await expect(console.locator("#queue-length")).to_have_text("1")
            await browser_env.screenshot(console, "console-auto-paused")

            # The caller gives up.
            await kiosk.get_by_role("button", name="Cancel call").click()
            await expect(
                kiosk.get_by_role("heading", name="Your call was cancelled.")
            ).to_be_visible()
            await browser_env.screenshot(kiosk, "kiosk-cancelled")
            await kiosk.get_by_role("button", name="Done").click()
            await expect(kiosk.get_by_role("heading", name="Talk to a pharmacist")).to_be_visible()
            await expect(console.locator("#queue-length")).to_have_text("0")

    browser_env.run(scenario())


def test_the_kiosk_recovers_after_going_offline(browser_env: BrowserEnv, tmp_path: Path) -> None:
    async def scenario() -> None:
        async with hotline_server(browser_env, tmp_path) as server:
            kiosk = await open_kiosk(browser_env, server, "k-3")
            console = await open_console(browser_env, server, "ph-3")
            banner = kiosk.locator("#banner")

            # Offline while waiting in the queue: it keeps its place.
            await type_code(kiosk, order_token(server.settings, "ord-300"))
            await expect(kiosk.locator("#wait-title")).to_have_text("You are next in line.")
            await kiosk.context.set_offline(True)
            await expect(banner).to_contain_text("Connection lost", timeout=16000)
            await browser_env.screenshot(kiosk, "queued-offline")
            await asyncio.sleep(1.5)
            await kiosk.context.set_offline(False)
            await expect(banner).to_be_hidden(timeout=15000)
            await expect(kiosk.locator("#wait-title")).to_have_text("You are next in line.")
            await expect(kiosk.locator("#wait-note")).to_contain_text("kept your place")
            await browser_env.screenshot(kiosk, "queued-back-online")

            # Offline during the call: the kiosk comes back to the same call and restarts media.
            await go_available(console)
            await connect_call(browser_env, kiosk, console, "ord-300")
            await kiosk.context.set_offline(True)
            await expect(banner).to_contain_text("Connection lost", timeout=16000)
            await browser_env.screenshot(kiosk, "call-offline")
            await asyncio.sleep(1.5)
            await kiosk.context.set_offline(False)
            await expect(banner).to_be_hidden(timeout=15000)
            await expect(kiosk.locator("#end-button")).to_be_visible()
            await frames_advancing(kiosk, "#remote")
            await frames_advancing(console, "#remote")
            await expect(console.locator("#call-order")).to_have_text("ord-300")
            await browser_env.screenshot(kiosk, "call-back-online")
            await browser_env.screenshot(console, "call-back-online-console")

            await kiosk.get_by_role("button", name="End call").click()
            await expect(
                kiosk.get_by_role("heading", name="Thank you for calling.")
            ).to_be_visible()
            await expect(console.locator("#end-note")).to_contain_text("the caller hung up")

    browser_env.run(scenario())


async def admin_post(server: Served, path: str) -> dict[str, Any]:
    """An admin's POST without a body; the JSON reply."""
    headers = {"Authorization": f"Bearer {server.token(Role.ADMIN, 'a-1')}"}
    async with (
        aiohttp.ClientSession() as http,
        http.post(server.url + path, headers=headers) as response,
    ):
        body = await response.json()
        assert response.status == 200, body
        return dict(body)


def test_the_kiosk_renews_its_token_by_itself(browser_env: BrowserEnv, tmp_path: Path) -> None:
    async def scenario() -> None:
        # The shortest kiosk token (60 s): the page renews it at 60 % of its lifetime. The
        # page's clock is mocked (Playwright's clock), so the test jumps ahead instead of waiting.
        async with hotline_server(
            browser_env, tmp_path, **{"hotline.kiosk_token_ttl_seconds": 60}
        ) as server:
            secret = await register_kiosk(server, "k-6")
            kiosk = await browser_env.page()
            await kiosk.clock.install()
            fetched: list[str] = []
            kiosk.on(
                "requestfinished",
                lambda r: (
                    fetched.append(r.url) if r.url.endswith("/api/kiosks/k-6/token") else None
                ),
            )
            await kiosk.goto(f"{server.url}/kiosk?kiosk_id=k-6&secret={quote(secret)}")
            await expect(kiosk.get_by_role("heading", name="Talk to a pharmacist")).to_be_visible()
            assert len(fetched) == 1

            await kiosk.clock.fast_forward(37_000)
            await kiosk.wait_for_function(
                "() => document.querySelector('#banner').hidden", timeout=15000
            )
            for _ in range(150):
                if len(fetched) > 1:
                    break
                await asyncio.sleep(0.1)
            assert len(fetched) == 2, fetched
            # still in service with the renewed token: a call goes through
            await kiosk.clock.resume()
            await type_code(kiosk, order_token(server.settings, "ord-600"))
            await expect(kiosk.locator("#wait-title")).to_have_text("You are next in line.")
            await browser_env.screenshot(kiosk, "kiosk-after-renewal")

    browser_env.run(scenario())


def test_a_second_kiosk_screen_or_console_window_replaces_the_first(
    browser_env: BrowserEnv, tmp_path: Path
) -> None:
    async def scenario() -> None:
        async with hotline_server(browser_env, tmp_path) as server:
            secret = await register_kiosk(server, "k-7")
            url = f"{server.url}/kiosk?kiosk_id=k-7&secret={quote(secret)}"
            first = await browser_env.page(url)
            await expect(first.locator("body")).to_have_attribute("data-online", "true")
            second = await browser_env.page(url)
            await expect(second.get_by_role("heading", name="Talk to a pharmacist")).to_be_visible()
            await expect(
                first.get_by_role("heading", name="This kiosk is open on another screen.")
            ).to_be_visible()
            await expect(first.locator("#banner")).to_be_hidden()
            await browser_env.screenshot(first, "kiosk-replaced")
            # "Use this screen" takes it back
            await first.get_by_role("button", name="Use this screen").click()
            await expect(first.get_by_role("heading", name="Talk to a pharmacist")).to_be_visible()
            await expect(
                second.get_by_role("heading", name="This kiosk is open on another screen.")
            ).to_be_visible()

            console = await open_console(browser_env, server, "ph-7")
            again = await open_console(browser_env, server, "ph-7")
            await expect(
                console.get_by_text("The console is open in another window.")
            ).to_be_visible()
            await expect(again.locator("#presence-state")).to_have_text("Away")
            await browser_env.screenshot(console, "console-replaced")

    browser_env.run(scenario())


def test_a_kiosk_disabled_during_a_call_goes_out_of_service(
    browser_env: BrowserEnv, tmp_path: Path
) -> None:
    async def scenario() -> None:
        async with hotline_server(browser_env, tmp_path) as server:
            kiosk = await open_kiosk(browser_env, server, "k-5")
            console = await open_console(browser_env, server, "ph-5")
            await go_available(console)
            await type_code(kiosk, order_token(server.settings, "ord-500"))
            await connect_call(browser_env, kiosk, console, "ord-500")

            # An admin takes the kiosk out of service: its call ends on both screens.
            disabled = await admin_post(server, "/api/kiosks/k-5/disable")
            assert disabled["ended_call"]["end_reason"] == "kiosk_disabled"
            await expect(
                kiosk.get_by_role("heading", name="This kiosk is out of service.")
            ).to_be_visible()
            await expect(kiosk.locator("#remote")).to_have_count(0)
            await expect(kiosk.locator("#banner")).to_be_hidden()
            await expect(console.locator("#end-note")).to_contain_text(
                "the kiosk was taken out of service"
            )
            await expect(console.locator("#presence-state")).to_have_text("Wrap-up")
            await browser_env.screenshot(kiosk, "kiosk-out-of-service")
            await browser_env.screenshot(console, "console-kiosk-disabled")

            # Its secret is refused while disabled: a reload stays out of service...
            await kiosk.reload()
            await expect(
                kiosk.get_by_role("heading", name="This kiosk is out of service.")
            ).to_be_visible()
            # ...and once enabled again, the same screen (provisioning kept) is back in service.
            await admin_post(server, "/api/kiosks/k-5/enable")
            await kiosk.reload()
            await expect(kiosk.get_by_role("heading", name="Talk to a pharmacist")).to_be_visible()

    browser_env.run(scenario())


def test_bad_codes_and_bad_setup_say_so(browser_env: BrowserEnv, tmp_path: Path) -> None:
    async def scenario() -> None:
        async with hotline_server(browser_env, tmp_path) as server:
            kiosk = await open_kiosk(browser_env, server, "k-4")
            message = kiosk.locator("#idle-message")

            await type_code(kiosk, "this-is-not-an-order-code")
            await expect(message).to_contain_text("not a valid order code")
            await browser_env.screenshot(kiosk, "invalid-code")

            # An access token is no order code either.
            await type_code(kiosk, server.token(Role.PARENT, "p-1"))
            await expect(message).to_contain_text("not a valid order code")

            past = time.time() - 3600
            await type_code(kiosk, order_token(server.settings, "ord-400", 60, lambda: past))
            await expect(message).to_contain_text("This order code has expired.")
            await browser_env.screenshot(kiosk, "expired-code")
            await expect(kiosk.get_by_role("heading", name="Talk to a pharmacist")).to_be_visible()

            # A kiosk set up with a wrong secret asks staff to set it up again.
            await register_kiosk(server, "k-5")
            wrong = await browser_env.page(f"{server.url}/kiosk?kiosk_id=k-5&secret=wrong")
            await expect(wrong.get_by_role("heading", name="Set up this kiosk")).to_be_visible()
            await expect(wrong.get_by_role("alert")).to_contain_text("not set up correctly")
            await browser_env.screenshot(wrong, "wrong-secret")

            # A console link with a bad token.
            bad = await browser_env.page(f"{server.url}/pharmacist?token=not-a-token")
            await expect(bad.get_by_role("alert")).to_contain_text("not valid")
            await browser_env.screenshot(bad, "console-bad-link")

            # A kiosk token is no pharmacist's.
            other = await browser_env.page(
                f"{server.url}/pharmacist?token={server.token(Role.CLINICIAN, 'c-1')}"
            )
            await expect(other.get_by_role("alert")).to_contain_text("do not have access")

    browser_env.run(scenario())


def test_a_scanned_qr_code_places_the_call(browser_env: BrowserEnv, tmp_path: Path) -> None:
    """The camera path's decoder (jsQR on a canvas) reads a printed order QR code; the caller
    then takes the callback offer."""

    async def scenario() -> None:
        callback = {"hotline.callback_after_seconds": 1.0}
        async with hotline_server(browser_env, tmp_path, **callback) as server:
            kiosk = await open_kiosk(browser_env, server, "k-6")
            token = order_token(server.settings, "ord-600")
            picture = segno.make(token, error="m").png_data_uri(scale=4, border=4)
            decoded = await kiosk.evaluate("(url) => window.carelineKiosk.scanImage(url)", picture)
            assert decoded == token
            await expect(kiosk.locator("#order-id")).to_have_text("ord-600")
            await expect(kiosk.locator("#wait-title")).to_have_text("You are next in line.")
            await browser_env.screenshot(kiosk, "scanned")

            offer = kiosk.get_by_role("button", name="Call me back instead")
            await expect(offer).to_be_visible()
            await browser_env.screenshot(kiosk, "callback-offer")
            await offer.click()
            await expect(
                kiosk.get_by_role("heading", name="A pharmacist will call you back.")
            ).to_be_visible()
            await browser_env.screenshot(kiosk, "callback-taken")

    browser_env.run(scenario())
