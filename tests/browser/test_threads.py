"""The message-visits page in Chromium: a parent and a clinician in two browser contexts.

Photos are small real PNGs written here with zlib and struct. HTTP checks of what the server
stored use the public API with the test's own tokens.
"""

from __future__ import annotations

import asyncio
import re
import struct
import zlib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import aiohttp
from playwright.async_api import Page, WebSocketRoute, expect

from careline.signaling.identity import Role
from tests.browser.harness import BROWSER_SETTINGS, BrowserEnv
from tests.support import RunningServer, make_settings, running_server

#: The page's outbox (unacknowledged messages) as kept in localStorage.
OUTBOX = """() => Object.keys(localStorage)
    .filter((key) => key.startsWith("careline.threads.outbox."))
    .flatMap((key) => JSON.parse(localStorage.getItem(key)))"""
#: Server-side photo limit of these tests, so an oversized upload stays small.
MAX_PHOTO = 20_000


def png(width: int, height: int, noise: bool = False) -> bytes:
    """A valid RGB PNG: a colour gradient, or incompressible noise (to make it large)."""
    rows = bytearray()
    seed = 12345
    for y in range(height):
        rows.append(0)  # filter: none
        for x in range(width):
            if noise:
                seed = (seed * 1103515245 + 12345) & 0x7FFFFFFF
                rows += seed.to_bytes(4, "little")[:3]
            else:
                rows += bytes((x // 8 * 2040 // width, y // 8 * 2040 // height, 160))

    def chunk(kind: bytes, data: bytes) -> bytes:
        body = kind + data
        return struct.pack(">I", len(data)) + body + struct.pack(">I", zlib.crc32(body))

    header = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    return (
        b"\x89PNG\r\n\x1a\n"
        + chunk(b"IHDR", header)
        + chunk(b"IDAT", zlib.compress(bytes(rows), 9))
        + chunk(b"IEND", b"")
    )


def settings(tmp_path: Path) -> Any:
    return make_settings(
        tmp_path, **BROWSER_SETTINGS, **{"threads.max_attachment_bytes": MAX_PHOTO}
    )


async def api(server: RunningServer, token: str, method: str, path: str, **kw: Any) -> Any:
    """Call the HTTP API as `token`; return the JSON body (raise on an error status)."""
    headers = {"Authorization": f"Bearer {token}"}
    async with (
        aiohttp.ClientSession() as http,
        http.request(method, server.url + path, headers=headers, **kw) as response,
    ):
        body = await response.json()
        assert response.status < 400, body
        return body


async def open_thread(server: RunningServer, parent: str, ref: str, text: str | None) -> str:
    """A thread opened by the parent over HTTP (with a first message); its id."""
    created = await api(server, parent, "POST", "/api/threads", json={"patient_ref": ref})
    thread_id: str = created["thread"]["thread_id"]
    if text is not None:
        await api(
            server,
            parent,
            "POST",
            f"/api/threads/{thread_id}/messages",
            json={"client_msg_id": f"first-{ref}", "text": text},
        )
    return thread_id


async def messages(server: RunningServer, token: str, thread_id: str) -> list[dict[str, Any]]:
    """Every `message` entry of the thread, as stored."""
    page = await api(server, token, "GET", f"/api/threads/{thread_id}/messages?limit=500")
    return [m for m in page["messages"] if m["kind"] == "message"]


async def image_shown(page: Page, selector: str) -> None:
    """Wait until the <img> at `selector` has decoded (naturalWidth > 0)."""
    await page.wait_for_function(
        """(sel) => {
            const img = document.querySelector(sel);
            return !!img && img.complete && img.naturalWidth > 0;
        }""",
        arg=selector,
        timeout=10000,
    )


async def close_pages(*pages: Page) -> None:
    """Close the browsers' contexts while the server still runs (it then stops at once instead
    of waiting for their sockets)."""
    for page in pages:
        await page.context.close()


@dataclass
class Cuttable:
    """The routes of a page's socket.io WebSockets (the page's side and the server's side of
    each) and whether the page has finished engine.io's upgrade onto one of them."""

    sockets: list[WebSocketRoute] = field(default_factory=list)
    upgraded: asyncio.Event = field(default_factory=asyncio.Event)


async def cuttable_page(browser_env: BrowserEnv, url: str) -> tuple[Page, Cuttable]:
    """A page whose socket.io WebSockets pass through Playwright, so a test can cut them."""
    page = await browser_env.page()
    cut = Cuttable()

    def route(ws: WebSocketRoute) -> None:
        server = ws.connect_to_server()
        cut.sockets.extend([ws, server])

        def from_page(message: str | bytes) -> None:
            server.send(message)
            if message == "5":  # engine.io's upgrade packet: the page now uses this WebSocket
                cut.upgraded.set()

        ws.on_message(from_page)

    await page.context.route_web_socket(re.compile(r"/socket\.io/"), route)
    await page.goto(url)
    return page, cut


async def drop_network(page: Page, cut: Cuttable) -> None:
    """The network goes away: the browser goes offline (no new connections) and its open
    WebSockets are cut (Chromium's offline mode alone leaves an open WebSocket working).

    socket.io connects over HTTP long-polling first and then upgrades: the cut waits for the
    upgrade, since going offline does not end a long-poll already in flight (the page would stay
    connected over it)."""
    await asyncio.wait_for(cut.upgraded.wait(), 10)
    await page.context.set_offline(True)
    for ws in cut.sockets:
        await ws.close()
    cut.sockets.clear()
    cut.upgraded.clear()
    await expect(page.locator("#banner")).to_be_visible()


async def wait_connected(page: Page) -> None:
    await page.wait_for_function(
        "() => document.body.dataset.connection === 'connected'", timeout=10000
    )


def test_parent_sends_a_photo_and_the_clinician_sees_it(
    browser_env: BrowserEnv, tmp_path: Path
) -> None:
    photo = png(160, 120)

    async def scenario() -> None:
        async with running_server(settings(tmp_path)) as server:
            parent_token = server.token(Role.PARENT, "f-1")
            parent = await browser_env.page(f"{server.url}/threads?token={parent_token}")
            await expect(
                parent.get_by_role("heading", name="Message visits", exact=True)
            ).to_be_visible()
            await parent.get_by_label("Patient reference").fill("PR-1001")
            await browser_env.screenshot(parent, "parent-new-thread")
            await parent.get_by_role("button", name="Start message visit").click()
            await expect(parent.locator("#thread-heading")).to_have_text(
                "Patient reference PR-1001"
            )
            assert "/threads/" in parent.url
            assert "token=" not in parent.url
            await wait_connected(parent)

            await parent.get_by_role("textbox", name="Your message").fill(
                "Rash on the arm since Monday."
            )
            await parent.locator("#composer-photo").set_input_files(
                {"name": "arm.png", "mimeType": "image/png", "buffer": photo}
            )
            await expect(parent.locator(".photo-preview .photo-state")).to_have_text(
                "Ready to send"
            )
            await browser_env.screenshot(parent, "parent-photo-preview")
            await parent.get_by_role("button", name="Send").click()
            sent = parent.locator(".log .entry.mine", has_text="Rash on the arm")
            await expect(sent.locator(".receipt")).to_have_text("Sent")
            await image_shown(parent, ".log .entry.mine img.photo")
            await expect(parent.locator(".pending-list .entry")).to_have_count(0)
            await browser_env.screenshot(parent, "parent-sent")

            clinician = await browser_env.page(
                f"{server.url}/threads?token={server.token(Role.CLINICIAN, 'c-1')}"
            )
            queue = clinician.locator("[data-list=queue] .thread-item")
            await expect(queue).to_have_count(1)
            await expect(queue.first).to_contain_text("PR-1001")
            await browser_env.screenshot(clinician, "clinician-queue")
            await queue.first.click()
            received = clinician.locator(".log .entry.theirs", has_text="Rash on the arm")
            await expect(received).to_be_visible()
            await image_shown(clinician, ".log .entry.theirs img.photo")
            size = await clinician.eval_on_selector(
                ".log .entry.theirs img.photo", "(i) => [i.naturalWidth, i.naturalHeight]"
            )
            assert size == [160, 120]
            await expect(clinician.get_by_role("button", name="Pick up")).to_be_visible()
            # Seen on screen, so read: the queue no longer counts it as unread.
            await expect(queue.first.locator("[data-testid=unread]")).to_have_count(0)
            await browser_env.screenshot(clinician, "clinician-sees-photo")

            # Still in the queue (not picked up): a further message shows up live all the same.
            await parent.get_by_role("textbox", name="Your message").fill("It itches.")
            await parent.get_by_role("button", name="Send").click()
            await expect(
                clinician.locator(".log .entry.theirs", has_text="It itches.")
            ).to_be_visible()
            await close_pages(parent, clinician)

    browser_env.run(scenario())
    assert not [line for line in browser_env.console if line.startswith("pageerror")]


def test_a_message_written_offline_is_pending_then_stored_once(
    browser_env: BrowserEnv, tmp_path: Path
) -> None:
    async def scenario() -> None:
        async with running_server(settings(tmp_path)) as server:
            parent_token = server.token(Role.PARENT, "f-2")
            thread_id = await open_thread(server, parent_token, "PR-2002", "Fever 39.2 C.")
            url = f"{server.url}/threads/{thread_id}?token={parent_token}"
            parent, cut = await cuttable_page(browser_env, url)
            await expect(parent.locator(".log .entry.mine")).to_have_count(1)
            await wait_connected(parent)

            await drop_network(parent, cut)
            box = parent.get_by_role("textbox", name="Your message")
            await box.fill("Now 39.8 C, she is sleepy.")
            await box.press("Enter")
            pending = parent.locator(".pending-list .entry", has_text="Now 39.8 C")
            await expect(pending).to_be_visible()
            await expect(parent.locator(".log .entry.mine")).to_have_count(1)
            await expect(pending).to_have_attribute("data-status", "waiting")
            await expect(pending).to_contain_text("it will be sent automatically")
            stored = await parent.evaluate(OUTBOX)
            assert [e["text"] for e in stored] == ["Now 39.8 C, she is sleepy."]
            await browser_env.screenshot(parent, "offline-pending")

            await parent.context.set_offline(False)
            sent = parent.locator(".log .entry.mine", has_text="Now 39.8 C")
            await expect(sent.locator(".receipt")).to_have_text("Sent", timeout=20000)
            await expect(parent.locator(".pending-list .entry")).to_have_count(0)
            await expect(parent.locator("#banner")).to_be_hidden()
            await browser_env.screenshot(parent, "back-online-sent")
            assert await parent.evaluate(OUTBOX) == []

            found = await messages(server, parent_token, thread_id)
            texts = [m["text"] for m in found]
            assert texts == ["Fever 39.2 C.", "Now 39.8 C, she is sleepy."]
            assert found[1]["client_msg_id"] == stored[0]["client_msg_id"]
            await close_pages(parent)

    browser_env.run(scenario())


def test_the_clinician_picks_up_and_answers_and_the_parent_sees_it_live(
    browser_env: BrowserEnv, tmp_path: Path
) -> None:
    async def scenario() -> None:
        async with running_server(settings(tmp_path)) as server:
            parent_token = server.token(Role.PARENT, "f-3")
            thread_id = await open_thread(server, parent_token, "PR-3003", "Cough at night.")
            parent = await browser_env.page(
                f"{server.url}/threads/{thread_id}?token={parent_token}"
            )
            await expect(parent.locator("[data-testid=thread-state]")).to_have_text(
                "Waiting for a clinician"
            )
            await wait_connected(parent)

            clinician = await browser_env.page(
                f"{server.url}/threads/{thread_id}?token={server.token(Role.CLINICIAN, 'c-3')}"
            )
            await expect(clinician.locator(".read-only")).to_contain_text("Pick this thread up")
            await wait_connected(clinician)
            await clinician.get_by_role("button", name="Pick up").click()
            await expect(clinician.locator("[data-list=mine] .thread-item")).to_have_count(1)
            await expect(clinician.get_by_role("button", name="Close")).to_be_visible()
            await expect(parent.locator("[data-testid=thread-state]")).to_have_text(
                "A clinician is on it"
            )
            await expect(parent.locator(".log .entry.system").last).to_contain_text(
                "A clinician picked up your question."
            )

            box = clinician.get_by_role("textbox", name="Your message")
            await box.press_sequentially("Is there a fever?", delay=20)
            await expect(parent.locator(".typing")).to_have_text("The clinician is typing…")
            await browser_env.screenshot(parent, "parent-sees-typing")
            await box.press("Enter")

            answer = parent.locator(".log .entry.theirs", has_text="Is there a fever?")
            await expect(answer).to_be_visible()
            await expect(answer.locator(".who")).to_have_text("Clinician")
            await expect(parent.locator(".typing")).to_be_hidden()
            await expect(parent.locator("[data-testid=thread-state]")).to_have_text("Answered")
            # The parent's page shows the answer, so it reads it: the clinician sees "Read".
            mine = clinician.locator(".log .entry.mine", has_text="Is there a fever?")
            await expect(mine.locator(".receipt")).to_have_text("Read")
            await browser_env.screenshot(parent, "parent-sees-answer")
            await browser_env.screenshot(clinician, "clinician-answered")

            await clinician.get_by_role("button", name="Close").click()
            await expect(parent.locator("[data-testid=thread-state]")).to_have_text("Closed")
            await expect(parent.locator(".read-only")).to_contain_text("closed")
            await expect(clinician.get_by_role("button", name="Reopen")).to_be_visible()
            await expect(parent.locator("[data-testid=unread]")).to_have_count(0)
            await browser_env.screenshot(parent, "parent-sees-closed")
            await parent.set_viewport_size({"width": 390, "height": 780})
            await expect(parent.get_by_role("link", name="All message visits")).to_be_visible()
            await expect(parent.locator(".list-pane")).to_be_hidden()
            await browser_env.screenshot(parent, "parent-phone")

            stored = await messages(server, parent_token, thread_id)
            assert [m["text"] for m in stored] == ["Cough at night.", "Is there a fever?"]
            await close_pages(parent, clinician)

    browser_env.run(scenario())


def test_attachments_the_server_refuses_get_a_clear_error(
    browser_env: BrowserEnv, tmp_path: Path
) -> None:
    async def scenario() -> None:
        async with running_server(settings(tmp_path)) as server:
            parent_token = server.token(Role.PARENT, "f-4")
            thread_id = await open_thread(server, parent_token, "PR-4004", None)
            parent = await browser_env.page(
                f"{server.url}/threads/{thread_id}?token={parent_token}"
            )
            await wait_connected(parent)
            error = parent.locator("#composer-error")
            file_input = parent.locator("#composer-photo")

            # Not a photo by its type: refused before any upload.
            await file_input.set_input_files(
                {"name": "notes.txt", "mimeType": "text/plain", "buffer": b"hello"}
            )
            await expect(error).to_contain_text("not a photo we can send")
            await expect(parent.locator(".photo-preview")).to_be_hidden()

            # Named and typed as a PNG, but the bytes are a PDF: the server says 415.
            await file_input.set_input_files(
                {"name": "scan.png", "mimeType": "image/png", "buffer": b"%PDF-1.7\n" * 50}
            )
            await expect(error).to_contain_text("not a JPEG, PNG or HEIC photo")
            await expect(parent.locator(".photo-preview")).to_be_hidden()
            await browser_env.screenshot(parent, "unsupported")

            # A real PNG above the server's configured limit: 413.
            big = png(120, 120, noise=True)
            assert len(big) > MAX_PHOTO
            await file_input.set_input_files(
                {"name": "big.png", "mimeType": "image/png", "buffer": big}
            )
            await expect(error).to_contain_text("too large")
            await expect(parent.locator(".photo-preview")).to_be_hidden()
            await browser_env.screenshot(parent, "too-large")

            # Nothing was sent.
            assert await messages(server, parent_token, thread_id) == []
            await close_pages(parent)

    browser_env.run(scenario())


def test_history_loads_the_latest_page_and_scrolls_back(
    browser_env: BrowserEnv, tmp_path: Path
) -> None:
    async def scenario() -> None:
        overrides = {"threads.send_burst": 1000, "threads.send_rate_per_second": 1000.0}
        async with running_server(
            make_settings(tmp_path, **BROWSER_SETTINGS, **overrides)
        ) as server:
            parent_token = server.token(Role.PARENT, "f-5")
            thread_id = await open_thread(server, parent_token, "PR-5005", None)
            for n in range(1, 71):
                await api(
                    server,
                    parent_token,
                    "POST",
                    f"/api/threads/{thread_id}/messages",
                    json={"client_msg_id": f"m-{n}", "text": f"Note {n}"},
                )
            clinician = await browser_env.page(
                f"{server.url}/threads/{thread_id}?token={server.token(Role.CLINICIAN, 'c-5')}"
            )
            log = clinician.locator(".log .entry.msg")
            await expect(log).to_have_count(50)
            await expect(log.last).to_contain_text("Note 70")
            await expect(log.first).to_contain_text("Note 21")
            await clinician.locator(".scroller").evaluate("(s) => { s.scrollTop = 0; }")
            await expect(log).to_have_count(70)
            await expect(log.first).to_contain_text("Note 1")
            await expect(
                clinician.get_by_role("button", name="Load earlier messages")
            ).to_be_hidden()
            await browser_env.screenshot(clinician, "scrolled-back")
            await close_pages(clinician)

    browser_env.run(scenario())


def test_an_unsent_message_is_sent_after_a_reload(browser_env: BrowserEnv, tmp_path: Path) -> None:
    async def scenario() -> None:
        async with running_server(settings(tmp_path)) as server:
            parent_token = server.token(Role.PARENT, "f-6")
            thread_id = await open_thread(server, parent_token, "PR-6006", "Earache.")
            url = f"{server.url}/threads/{thread_id}?token={parent_token}"
            first, cut = await cuttable_page(browser_env, url)
            await wait_connected(first)
            await drop_network(first, cut)
            box = first.get_by_role("textbox", name="Your message")
            await box.fill("Left ear, since yesterday.")
            await box.press("Enter")
            await expect(first.locator(".pending-list .entry")).to_have_count(1)
            kept = await first.evaluate(OUTBOX)
            assert [e["text"] for e in kept] == ["Left ear, since yesterday."]
            context = first.context
            await first.close()  # the tab is closed before the message could go out
            assert len(await messages(server, parent_token, thread_id)) == 1

            await context.set_offline(False)
            again = await context.new_page()
            await again.goto(url)
            sent = again.locator(".log .entry.mine", has_text="Left ear")
            await expect(sent.locator(".receipt")).to_have_text("Sent", timeout=15000)
            await expect(again.locator(".pending-list .entry")).to_have_count(0)
            await browser_env.screenshot(again, "sent-after-reload")
            found = await messages(server, parent_token, thread_id)
            assert [m["text"] for m in found] == ["Earache.", "Left ear, since yesterday."]
            assert found[1]["client_msg_id"] == kept[0]["client_msg_id"]
            assert await again.evaluate(OUTBOX) == []
            await close_pages(again)

    browser_env.run(scenario())


def test_edits_and_deletions_show_on_the_other_side(
    browser_env: BrowserEnv, tmp_path: Path
) -> None:
    async def scenario() -> None:
        async with running_server(settings(tmp_path)) as server:
            parent_token = server.token(Role.PARENT, "f-7")
            thread_id = await open_thread(server, parent_token, "PR-7007", "Temp 38.")
            await api(
                server,
                parent_token,
                "POST",
                f"/api/threads/{thread_id}/messages",
                json={"client_msg_id": "second", "text": "Sent by mistake."},
            )
            parent = await browser_env.page(
                f"{server.url}/threads/{thread_id}?token={parent_token}"
            )
            clinician = await browser_env.page(
                f"{server.url}/threads/{thread_id}?token={server.token(Role.CLINICIAN, 'c-7')}"
            )
            await wait_connected(clinician)
            await clinician.get_by_role("button", name="Pick up").click()
            await expect(parent.locator("[data-testid=thread-state]")).to_have_text(
                "A clinician is on it"
            )

            seq = await parent.locator(".log .entry.mine", has_text="Temp 38.").get_attribute(
                "data-seq"
            )
            first = parent.locator(f".log .entry[data-seq='{seq}']")
            await first.get_by_role("button", name="Edit").click()
            await first.get_by_role("textbox").fill("Temp 38.5 this morning.")
            await first.get_by_role("button", name="Save").click()
            parent.on("dialog", lambda dialog: dialog.accept())
            second = parent.locator(".log .entry.mine", has_text="Sent by mistake.")
            await second.get_by_role("button", name="Delete").click()

            theirs = clinician.locator(".log .entry.theirs")
            await expect(theirs.first).to_contain_text("Temp 38.5 this morning.")
            await expect(theirs.first.locator(".edited")).to_contain_text("edited")
            await expect(theirs.nth(1)).to_contain_text("This message was deleted.")
            await expect(clinician.locator(".log")).not_to_contain_text("Sent by mistake.")
            await expect(clinician.locator("[data-testid=unread]")).to_have_count(0)
            await browser_env.screenshot(clinician, "clinician-sees-changes")
            await close_pages(parent, clinician)

    browser_env.run(scenario())


def test_admin_reads_only_and_a_thread_link_opens_its_thread(
    browser_env: BrowserEnv, tmp_path: Path
) -> None:
    async def scenario() -> None:
        async with running_server(settings(tmp_path)) as server:
            parent_token = server.token(Role.PARENT, "f-8")
            thread_id = await open_thread(server, parent_token, "PR-8008", "Vomiting twice.")
            await open_thread(server, parent_token, "PR-8009", "Other child.")

            admin = await browser_env.page(
                f"{server.url}/threads?token={server.token(Role.ADMIN, 'ops-1')}"
            )
            await expect(admin.locator(".thread-item")).to_have_count(2)
            await admin.locator(".thread-item", has_text="PR-8008").click()
            await expect(admin.locator(".log .entry.theirs")).to_contain_text("Vomiting twice.")
            await expect(admin.locator(".read-only")).to_contain_text("Admins read")
            await expect(admin.get_by_role("textbox", name="Your message")).to_have_count(0)
            await browser_env.screenshot(admin, "admin")

            scoped = server.token(Role.PARENT, "f-8", thread_id=thread_id)
            parent = await browser_env.page(f"{server.url}/threads?token={scoped}")
            await expect(parent.locator("#thread-heading")).to_have_text(
                "Patient reference PR-8008"
            )
            await expect(parent.locator(".thread-item")).to_have_count(1)
            await expect(parent.get_by_role("textbox", name="Patient reference")).to_have_count(0)

            missing = await browser_env.page(f"{server.url}/threads/t-nope?token={parent_token}")
            await expect(missing.get_by_role("alert")).to_contain_text("does not exist")
            await browser_env.screenshot(missing, "missing-thread")
            await close_pages(admin, parent, missing)

    browser_env.run(scenario())
    assert not [line for line in browser_env.console if line.startswith("pageerror")]
