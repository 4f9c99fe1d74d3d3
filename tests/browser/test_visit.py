"""The video visit page in Chromium: waiting room and admit, video both ways, a network drop that
recovers, a denied parent, a camera the browser refuses, an H264 visit."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import aiohttp
from playwright.async_api import Browser, Page, expect

from careline.signaling.identity import Role
from tests.browser.harness import (
    BROWSER_SETTINGS,
    CHROMIUM,
    CHROMIUM_ARGS,
    BrowserEnv,
    TcpProxy,
    video_playing,
)
from tests.support import RunningServer, make_settings

SETTINGS: dict[str, Any] = {
    **BROWSER_SETTINGS,
    "media.keyframe_interval_seconds": 0.2,
    "visits.quality_interval_seconds": 1.0,
}


@dataclass
class Visit:
    """A visit created over HTTP: its id, and each invitee's link and participant id by kind."""

    visit_id: str
    links: dict[str, str]
    ids: dict[str, str]


async def create_visit(server: RunningServer, kinds: list[str], codec: str = "vp8") -> Visit:
    clinician = server.token(Role.CLINICIAN, "c-1")
    body = {"participants": [{"kind": kind} for kind in kinds], "codec": codec}
    async with (
        aiohttp.ClientSession() as http,
        http.post(
            server.url + "/api/visits", json=body, headers={"Authorization": f"Bearer {clinician}"}
        ) as response,
    ):
        assert response.status == 201, await response.text()
        created = await response.json()
    links = {p["kind"]: p["link"] for p in created["invited"]}
    ids = {p["kind"]: p["participant_id"] for p in created["invited"]}
    return Visit(created["visit"]["visit_id"], links, ids)


async def join(page: Page) -> None:
    """Pass the device check: wait until the Join button is ready, then press it."""
    button = page.get_by_role("button", name="Join the visit")
    await expect(button).to_be_enabled(timeout=15000)
    await button.click()


SHOWS_PICTURE = """(sel) => {
    const v = document.querySelector(sel);
    const canvas = document.createElement("canvas");
    canvas.width = 32;
    canvas.height = 24;
    const g = canvas.getContext("2d");
    g.drawImage(v, 0, 0, 32, 24);
    const d = g.getImageData(0, 0, 32, 24).data;
    let green = 0;
    for (let i = 1; i < d.length; i += 4) green += d[i];
    return green / (d.length / 4);
}"""


async def shows_camera(page: Page, selector: str) -> None:
    """The video at `selector` shows the fake camera's picture (mostly green), not black."""
    await video_playing(page, selector)
    green = await page.evaluate(SHOWS_PICTURE, selector)
    assert green > 80, f"{selector} looks black (mean green {green:.0f})"


def tile(pid: str) -> str:
    return f'.tile[data-participant="{pid}"] video'


async def admit_parent(clinician: Page, visit: Visit) -> None:
    await clinician.locator(f"#admit-{visit.ids['parent']}").click()


async def in_call(
    env: BrowserEnv, base: str, visit: Visit, parent_base: str | None = None
) -> tuple[Page, Page]:
    """A parent joins and waits, the clinician joins and admits, both see each other."""
    parent = await env.page(f"{parent_base or base}{visit.links['parent']}")
    await join(parent)
    await expect(parent.get_by_role("heading", name="You are in the waiting room")).to_be_visible()
    clinician = await env.page(base + visit.links["clinician"])
    await join(clinician)
    await expect(clinician.locator(f"#admit-{visit.ids['parent']}")).to_be_visible()
    await admit_parent(clinician, visit)
    await video_playing(parent, tile(visit.ids["clinician"]))
    await video_playing(clinician, tile(visit.ids["parent"]))
    return parent, clinician


def test_parent_waits_clinician_admits_both_see_video(
    browser_env: BrowserEnv, tmp_path: Path
) -> None:
    async def scenario() -> None:
        async with browser_env.server(make_settings(tmp_path, **SETTINGS)) as server:
            visit = await create_visit(server, ["parent"])
            parent = await browser_env.page(server.url + visit.links["parent"])
            # device check: camera preview, microphone level, connection
            await shows_camera(parent, "#preview")
            await expect(parent.locator("#check-camera")).to_have_attribute("data-state", "ok")
            await expect(parent.locator("#check-server")).to_have_attribute("data-state", "ok")
            await parent.wait_for_function(
                "() => document.querySelector('#mic-level').value > 0", timeout=10000
            )
            assert "token=" not in parent.url
            await browser_env.screenshot(parent, "1-parent-device-check")
            await join(parent)
            waiting = parent.get_by_role("heading", name="You are in the waiting room")
            await expect(waiting).to_be_visible()
            await expect(parent.locator(".waiting .lead")).to_contain_text(
                "The clinician will let you in shortly"
            )
            await browser_env.screenshot(parent, "2-parent-waiting")

            clinician = await browser_env.page(server.url + visit.links["clinician"])
            await join(clinician)
            admit = clinician.get_by_role("button", name="Let in Parent")
            await expect(admit).to_be_visible()
            await browser_env.screenshot(clinician, "3-clinician-sees-waiting")
            await admit.click()

            await shows_camera(parent, tile(visit.ids["clinician"]))
            await shows_camera(clinician, tile(visit.ids["parent"]))
            await shows_camera(parent, "#self-tile video")
            # network quality per participant, stats for the clinician
            quality = clinician.locator(f'.tile[data-participant="{visit.ids["parent"]}"] .quality')
            await expect(quality).to_have_attribute(
                "aria-label", "Network quality: excellent (5 of 5)"
            )
            await expect(clinician.locator("#participant-list .stats").first).to_contain_text(
                "kbps", timeout=10000
            )
            await expect(parent.locator("#grid")).to_have_attribute("data-count", "2")
            await browser_env.screenshot(clinician, "4-clinician-in-call")
            # mute and camera toggles
            mute = parent.get_by_role("button", name="Mute")
            await mute.click()
            await expect(parent.locator("#mute")).to_have_attribute("aria-pressed", "true")
            sending = "() => document.querySelector('#self-tile video').srcObject.getAudioTracks()"
            assert await parent.evaluate(sending + "[0].enabled") is False
            await parent.locator("#camera").click()
            await expect(parent.locator("#camera")).to_have_attribute("aria-pressed", "true")
            await browser_env.screenshot(parent, "5-parent-in-call-muted-camera-off")
            await parent.locator("#camera").click()
            await parent.locator("#mute").click()
            await expect(parent.locator("#mute")).to_have_attribute("aria-pressed", "false")

            # the clinician ends the visit (two clicks: it asks to confirm)
            await clinician.locator("#end").click()
            await expect(clinician.locator("#end")).to_have_text("Confirm: end for everyone")
            await clinician.locator("#end").click()
            for page in (parent, clinician):
                await expect(page.get_by_role("alert")).to_contain_text("The visit has ended")
            await browser_env.screenshot(parent, "6-parent-visit-ended")

    browser_env.run(scenario())


@contextlib.asynccontextmanager
async def proxy_to(server: RunningServer) -> AsyncIterator[TcpProxy]:
    port = int(server.url.rsplit(":", 1)[1])
    proxy = TcpProxy([port])
    await proxy.start()
    try:
        yield proxy
    finally:
        await proxy.close()


def test_a_network_drop_recovers_the_visit(browser_env: BrowserEnv, tmp_path: Path) -> None:
    async def scenario() -> None:
        async with (
            browser_env.server(make_settings(tmp_path, **SETTINGS)) as server,
            proxy_to(server) as proxy,
        ):
            visit = await create_visit(server, ["parent"])
            parent, clinician = await in_call(
                browser_env, server.url, visit, parent_base=f"http://127.0.0.1:{proxy.port}"
            )
            clinician_tile = tile(visit.ids["clinician"])
            tracks_before = await parent.locator(clinician_tile).get_attribute("data-tracks")

            proxy.drop()  # the parent's network goes away
            banner = parent.locator("#banner")
            await expect(banner).to_be_visible(timeout=10000)
            await expect(banner).to_contain_text("Reconnecting")
            parent_tile = clinician.locator(f'.tile[data-participant="{visit.ids["parent"]}"]')
            await expect(parent_tile).to_have_attribute("data-state", "reconnecting")
            await asyncio.sleep(2.5)  # a few refused reconnect attempts
            await expect(banner).to_be_visible()
            await browser_env.screenshot(parent, "1-parent-reconnecting")
            await browser_env.screenshot(clinician, "2-clinician-sees-reconnecting")

            proxy.restore()
            await expect(banner).to_be_hidden(timeout=20000)
            # rejoined with a new peer connection: new tracks, playing on both sides
            await parent.wait_for_function(
                "([sel, before]) => document.querySelector(sel).dataset.tracks !== before",
                arg=[clinician_tile, tracks_before],
                timeout=15000,
            )
            await video_playing(parent, clinician_tile)
            await video_playing(clinician, tile(visit.ids["parent"]))
            await expect(parent_tile).to_have_attribute("data-state", "connected")
            await browser_env.screenshot(parent, "3-parent-recovered")

    browser_env.run(scenario())


def test_a_denied_parent_sees_a_clear_page(browser_env: BrowserEnv, tmp_path: Path) -> None:
    async def scenario() -> None:
        async with browser_env.server(make_settings(tmp_path, **SETTINGS)) as server:
            visit = await create_visit(server, ["parent"])
            parent = await browser_env.page(server.url + visit.links["parent"])
            await join(parent)
            await expect(
                parent.get_by_role("heading", name="You are in the waiting room")
            ).to_be_visible()
            clinician = await browser_env.page(server.url + visit.links["clinician"])
            await join(clinician)
            await clinician.get_by_role("button", name="Turn away Parent").click()
            alert = parent.get_by_role("alert")
            await expect(alert).to_contain_text("The clinician could not let you in")
            await expect(
                parent.get_by_role("heading", name="The clinician could not let you in.")
            ).to_be_focused()
            await expect(clinician.get_by_text("Nobody is waiting.")).to_be_visible()
            await browser_env.screenshot(parent, "parent-denied")
            # the link stays refused: reloading shows the same page
            await parent.reload()
            await join(parent)
            await expect(parent.get_by_role("alert")).to_contain_text("could not let you in")

    browser_env.run(scenario())


@dataclass
class RefusingBrowser:
    """A second Chromium without --use-fake-ui-for-media-stream: it really refuses camera or
    microphone to a context that was not granted them (the fake UI would accept any prompt)."""

    env: BrowserEnv
    browser: Browser | None = None

    async def page(self, url: str, granted: list[str]) -> Page:
        if self.browser is None:
            # Without camera and microphone permission Chromium hides its host addresses behind
            # mDNS names, which cannot be registered in the test's loopback-only namespace (no
            # multicast): gathering would never finish. Real networks resolve them.
            args = [a for a in CHROMIUM_ARGS if a != "--use-fake-ui-for-media-stream"]
            args.append("--disable-features=WebRtcHideLocalIpsWithMdns")
            self.browser = await self.env.playwright.chromium.launch(
                executable_path=CHROMIUM, headless=True, args=args
            )
        context = await self.browser.new_context(
            viewport={"width": 1024, "height": 720}, permissions=granted
        )
        page = await context.new_page()
        await page.goto(url)
        return page

    async def close(self) -> None:
        if self.browser is not None:
            await self.browser.close()


CAMERA_REFUSED = """async () => {
    try { await navigator.mediaDevices.getUserMedia({video: true}); return "granted"; }
    catch (err) { return err.name; }
}"""


def test_a_refused_camera_falls_back_to_sound_only(browser_env: BrowserEnv, tmp_path: Path) -> None:
    async def scenario() -> None:
        refusing = RefusingBrowser(browser_env)
        async with browser_env.server(make_settings(tmp_path, **SETTINGS)) as server:
            try:
                visit = await create_visit(server, ["parent", "second_parent"])
                # parent: camera refused, microphone allowed -> sound only
                parent = await refusing.page(server.url + visit.links["parent"], ["microphone"])
                assert await parent.evaluate(CAMERA_REFUSED) == "NotAllowedError"
                await expect(parent.locator("#check-camera")).to_have_attribute("data-state", "bad")
                await expect(parent.locator("#check-camera")).to_contain_text(
                    "permission was refused"
                )
                await expect(parent.locator("#check-microphone")).to_have_attribute(
                    "data-state", "ok"
                )
                note = parent.locator("#media-note")
                await expect(note).to_contain_text("you will join with sound only")
                await browser_env.screenshot(parent, "1-parent-camera-refused")
                # second parent: both refused -> watch and listen only
                second = await refusing.page(server.url + visit.links["second_parent"], [])
                await expect(second.locator("#media-note")).to_contain_text("watch and listen only")
                await browser_env.screenshot(second, "2-second-parent-all-refused")

                await join(parent)
                await join(second)
                clinician = await browser_env.page(server.url + visit.links["clinician"])
                await join(clinician)
                await clinician.locator(f"#admit-{visit.ids['parent']}").click()
                await clinician.locator(f"#admit-{visit.ids['second_parent']}").click()
                # both still see the clinician
                # (three browsers and the server share the CPU here: allow more time)
                for page in (parent, second):
                    await page.bring_to_front()
                    await video_playing(page, tile(visit.ids["clinician"]), within_ms=40000)
                await expect(parent.locator("#camera")).to_be_disabled()
                await expect(parent.locator("#camera")).to_have_text("No camera")
                await expect(second.locator("#mute")).to_have_text("No microphone")
                await expect(parent.locator("#media-note")).to_contain_text("sound only")
                # the clinician gets the parent's sound, no video
                parent_tile = clinician.locator(f'.tile[data-participant="{visit.ids["parent"]}"]')
                await expect(parent_tile).to_have_attribute("data-video", "off", timeout=15000)
                await expect(parent_tile.locator(".tile-status")).to_have_text("No video")
                await browser_env.screenshot(parent, "3-parent-sound-only-in-call")
                await browser_env.screenshot(clinician, "4-clinician-with-sound-only-parent")
            finally:
                await refusing.close()  # before the server stops: its pages' sockets go now

    browser_env.run(scenario())


def test_an_h264_visit_plays(browser_env: BrowserEnv, tmp_path: Path) -> None:
    async def scenario() -> None:
        async with browser_env.server(make_settings(tmp_path, **SETTINGS)) as server:
            visit = await create_visit(server, ["parent"], codec="h264")
            _, clinician = await in_call(browser_env, server.url, visit)
            # the server takes only answers with the visit's codec on every video m-line, so
            # video playing both ways means H264 both ways
            token = server.token(Role.CLINICIAN, "c-1")
            async with (
                aiohttp.ClientSession() as http,
                http.get(
                    f"{server.url}/api/visits/{visit.visit_id}",
                    headers={"Authorization": f"Bearer {token}"},
                ) as response,
            ):
                assert (await response.json())["codec"] == "h264"
            await browser_env.screenshot(clinician, "clinician-h264")

    browser_env.run(scenario())
