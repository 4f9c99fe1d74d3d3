"""Bad input gets a clear code, changes nothing, and never disturbs other users."""

from __future__ import annotations

import asyncio

from careline.signaling.identity import Role
from tests.threads.conftest import PDF, PNG, World, WorldFactory


async def _last_seq(world: World, thread_id: str) -> int:
    status, body = await world.api(Role.ADMIN, "adm").request("GET", f"/api/threads/{thread_id}")
    assert status == 200
    last: int = body["last_seq"]
    return last


async def test_oversized_text_is_refused_whole(sqlite_world: World) -> None:
    world = sqlite_world
    thread_id = await world.open_thread()
    parent = await world.socket(Role.PARENT, "fam-1")
    limit = world.server.settings.threads.max_text_bytes
    assert limit == 8192
    fits = {"thread_id": thread_id, "client_msg_id": "fits", "text": "é" * (limit // 2)}
    assert (await parent.ok("thread.send", fits))["message"]["seq"] == 2
    too_big = {"thread_id": thread_id, "client_msg_id": "big", "text": "é" * (limit // 2 + 1)}
    assert await parent.error("thread.send", too_big) == "thread.text_too_large"
    status, body = await world.api(Role.PARENT, "fam-1").request(
        "POST",
        f"/api/threads/{thread_id}/messages",
        json={"client_msg_id": "big", "text": "x" * (limit + 1)},
    )
    assert (status, body["error"]["code"]) == (413, "thread.text_too_large")
    assert await _last_seq(world, thread_id) == 2
    empty = {"thread_id": thread_id, "client_msg_id": "e"}
    assert await parent.error("thread.send", empty) == "thread.empty_message"


async def test_oversized_and_mistyped_files_are_refused(make_world: WorldFactory) -> None:
    async with make_world("sqlite", **{"threads.max_attachment_bytes": 4096}) as world:
        thread_id = await world.open_thread()
        parent = world.api(Role.PARENT, "fam-1")
        path = f"/api/threads/{thread_id}/attachments"
        status, body = await parent.request("POST", path, data=PNG[:100] + b"\x00" * 5000)
        assert (status, body["error"]["code"]) == (413, "thread.attachment_too_large")
        # A PDF named photo.jpg and declared as image/jpeg is still a PDF.
        status, body = await parent.request("POST", path + "?name=photo.jpg", data=PDF)
        assert (status, body["error"]["code"]) == (415, "thread.unsupported_attachment")
        status, body = await parent.request("POST", path, data=b"")
        assert (status, body["error"]["code"]) == (415, "thread.unsupported_attachment")
        attachments = world.server.settings.data_path / "attachments"
        assert not any(p.is_file() for p in attachments.rglob("*"))
        status, body = await parent.request("POST", path, data=PNG)
        assert status == 201
        assert body["content_type"] == "image/png"


async def test_a_thread_the_token_does_not_grant(world: World) -> None:
    mine = await world.open_thread("fam-1")
    theirs = await world.open_thread("fam-2")
    scoped = await world.socket(Role.PARENT, "fam-1", thread_id=mine)
    other = {"thread_id": theirs, "client_msg_id": "x", "text": "hi"}
    assert await scoped.error("thread.send", other) == "thread.not_granted"
    assert await scoped.error("thread.sync", {"thread_id": theirs}) == "thread.not_granted"
    assert (await scoped.ok("thread.list", {}))["threads"][0]["thread_id"] == mine
    assert await scoped.error("thread.send", {**other, "thread_id": "t-nope"}) == (
        "thread.not_granted"
    )
    parent = await world.socket(Role.PARENT, "fam-1")
    assert await parent.error("thread.send", other) == "thread.not_found"
    assert await parent.error("thread.sync", {"thread_id": theirs}) == "thread.not_found"
    visit_token = world.api(Role.PARENT, "fam-1", visit_id="v-1")
    status, body = await visit_token.request("GET", f"/api/threads/{mine}")
    assert (status, body["error"]["code"]) == (403, "thread.not_granted")
    status, body = await world.api(Role.PARENT, "fam-1", thread_id=mine).request(
        "POST", "/api/threads", json={"patient_ref": "p"}
    )
    assert (status, body["error"]["code"]) == (403, "thread.not_granted")
    assert await _last_seq(world, theirs) == 1


async def test_sync_positions_out_of_range(world: World) -> None:
    thread_id = await world.open_thread()
    parent = await world.socket(Role.PARENT, "fam-1")
    far = {"thread_id": thread_id, "after_seq": 10**9}
    assert await parent.error("thread.sync", far) == "thread.seq_out_of_range"
    negative = {"thread_id": thread_id, "after_seq": -1}
    assert await parent.error("thread.sync", negative) == "invalid_payload"
    api = world.api(Role.PARENT, "fam-1")
    for query, code in (
        ("after_seq=99", "thread.seq_out_of_range"),
        ("after_seq=-3", "invalid_payload"),
        ("after_seq=abc", "invalid_payload"),
        ("before_seq=0", "invalid_payload"),
        ("after_seq=0&before_seq=2", "invalid_payload"),
        ("limit=100000", "invalid_payload"),
    ):
        status, body = await api.request("GET", f"/api/threads/{thread_id}/messages?{query}")
        assert (status, body["error"]["code"]) == (400, code), query
    read = {"thread_id": thread_id, "seq": 2}
    assert await parent.error("thread.read", read) == "thread.seq_out_of_range"


async def test_bad_payloads_are_named(world: World) -> None:
    thread_id = await world.open_thread()
    parent = await world.socket(Role.PARENT, "fam-1")
    for bad in (
        {"thread_id": thread_id, "client_msg_id": "m"},
        {"thread_id": thread_id, "client_msg_id": "has space", "text": "x"},
        {"thread_id": thread_id, "client_msg_id": "m", "text": 5},
        {"thread_id": thread_id, "client_msg_id": "m", "text": "x", "extra": 1},
        [1, 2, 3],
    ):
        code = await parent.error("thread.send", bad)
        assert code in ("invalid_payload", "thread.empty_message"), bad
    api = world.api(Role.PARENT, "fam-1")
    status, body = await api.request(
        "POST",
        f"/api/threads/{thread_id}/messages",
        json={"thread_id": "t-other", "client_msg_id": "m", "text": "x"},
    )
    assert (status, body["error"]["code"]) == (400, "invalid_payload")
    many = {
        "thread_id": thread_id,
        "client_msg_id": "m",
        "attachment_ids": [f"a{i}" for i in range(9)],
    }
    assert await parent.error("thread.send", many) == "thread.too_many_attachments"
    twice = {"thread_id": thread_id, "client_msg_id": "m", "attachment_ids": ["a", "a"]}
    assert await parent.error("thread.send", twice) == "thread.duplicate_attachment"
    missing = {"thread_id": thread_id, "client_msg_id": "m", "attachment_ids": ["a-none"]}
    assert await parent.error("thread.send", missing) == "thread.attachment_not_found"
    assert await _last_seq(world, thread_id) == 1


async def test_a_flood_from_one_sender_is_limited_and_others_are_unaffected(
    make_world: WorldFactory,
) -> None:
    limits = {
        "threads.send_burst": 5,
        "threads.send_rate_per_second": 1.0,
        "threads.typing_burst": 3,
        "threads.typing_rate_per_second": 0.5,
    }
    async with make_world("sqlite", **limits) as world:
        noisy_thread = await world.open_thread("fam-1")
        calm_thread = await world.open_thread("fam-2")
        noisy = await world.socket(Role.PARENT, "fam-1")
        noisy_tablet = await world.socket(Role.PARENT, "fam-1")
        calm = await world.socket(Role.PARENT, "fam-2")
        replies = await asyncio.gather(
            *(
                sock.call(
                    "thread.send",
                    {"thread_id": noisy_thread, "client_msg_id": f"f{i}", "text": "spam"},
                )
                for i, sock in enumerate([noisy, noisy_tablet] * 10)
            )
        )
        stored = [r for r in replies if r["ok"]]
        limited = [r for r in replies if not r["ok"]]
        assert len(stored) == 5
        assert {r["error"]["code"] for r in limited} == {"thread.rate_limited"}
        assert "retry in" in limited[0]["error"]["message"]
        calm_reply = await calm.ok(
            "thread.send", {"thread_id": calm_thread, "client_msg_id": "c", "text": "hello"}
        )
        assert calm_reply["message"]["seq"] == 2
        assert await _last_seq(world, noisy_thread) == 6
        page = await noisy.ok("thread.sync", {"thread_id": noisy_thread})
        assert [m["seq"] for m in page["messages"]] == [1, 2, 3, 4, 5, 6]
        status, body = await world.api(Role.PARENT, "fam-1").request(
            "POST",
            f"/api/threads/{noisy_thread}/messages",
            json={"client_msg_id": "http", "text": "more"},
        )
        assert (status, body["error"]["code"]) == (429, "thread.rate_limited")
        for _ in range(5):
            await noisy.call("thread.typing", {"thread_id": noisy_thread})
        assert await noisy.error("thread.typing", {"thread_id": noisy_thread}) == (
            "thread.rate_limited"
        )
