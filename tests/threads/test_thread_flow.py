"""A message visit end to end on a real server, on both backends, with real socket.io clients."""

from __future__ import annotations

from careline.signaling.identity import Role
from tests.threads.conftest import World


async def test_both_devices_of_a_parent_get_every_push(world: World) -> None:
    thread_id = await world.open_thread()
    phone = await world.socket(Role.PARENT, "fam-1")
    tablet = await world.socket(Role.PARENT, "fam-1")
    stranger = await world.socket(Role.PARENT, "fam-2")
    sent = await phone.ok(
        "thread.send", {"thread_id": thread_id, "client_msg_id": "m-1", "text": "fever since noon"}
    )
    assert sent["duplicate"] is False
    assert sent["message"]["seq"] == 2
    assert sent["message"]["text"] == "fever since noon"
    await tablet.wait_for(lambda: len(tablet.messages()) == 1)
    [pushed] = tablet.messages()
    assert pushed == sent["message"]
    assert tablet.pushes["thread.message"][0]["thread"]["last_seq"] == 2
    assert phone.messages() == []  # the sending socket has its ack; its siblings the push
    assert stranger.messages() == []


async def test_a_clinician_picks_up_answers_and_closes(world: World) -> None:
    doctor = await world.socket(Role.CLINICIAN, "doc-1")
    thread_id = await world.open_thread()
    await doctor.wait_for(lambda: len(doctor.pushes["thread.updated"]) >= 1)
    assert doctor.pushes["thread.updated"][0]["thread"]["state"] == "open"
    parent = await world.socket(Role.PARENT, "fam-1")
    await parent.ok(
        "thread.send", {"thread_id": thread_id, "client_msg_id": "q", "text": "rash on arm"}
    )

    queue = await doctor.ok("thread.list", {"states": ["open"]})
    assert [t["thread_id"] for t in queue["threads"]] == [thread_id]
    assert queue["threads"][0]["unread"] == 2
    picked = await doctor.ok("thread.assign", {"thread_id": thread_id})
    assert picked["thread"]["state"] == "assigned"
    assert picked["thread"]["assigned_to"] == "doc-1"
    assert picked["message"]["event"] == "assigned"
    again = await doctor.ok("thread.assign", {"thread_id": thread_id})
    assert again["message"] is None  # a retry of the pickup is a no-op
    other = await world.socket(Role.CLINICIAN, "doc-2")
    assert await other.error("thread.assign", {"thread_id": thread_id}) == "thread.not_found"

    answer = await doctor.ok(
        "thread.send", {"thread_id": thread_id, "client_msg_id": "a", "text": "send a photo"}
    )
    assert answer["thread"]["state"] == "answered"
    await parent.wait_for(lambda: any(m["text"] == "send a photo" for m in parent.messages()))
    reply = await parent.ok(
        "thread.send", {"thread_id": thread_id, "client_msg_id": "r", "text": "here"}
    )
    assert reply["thread"]["state"] == "assigned"
    await doctor.wait_for(lambda: any(m["text"] == "here" for m in doctor.messages()))

    closed = await doctor.ok("thread.close", {"thread_id": thread_id})
    assert closed["thread"]["state"] == "closed"
    assert closed["message"]["event"] == "closed"
    assert (await doctor.ok("thread.close", {"thread_id": thread_id}))["message"] is None
    assert (
        await parent.error(
            "thread.send", {"thread_id": thread_id, "client_msg_id": "x", "text": "?"}
        )
        == "thread.closed"
    )
    reopened = await parent.ok("thread.reopen", {"thread_id": thread_id})
    assert reopened["thread"]["state"] == "assigned"
    page = await parent.ok("thread.sync", {"thread_id": thread_id, "after_seq": 0})
    events = [m["event"] for m in page["messages"] if m["kind"] == "system"]
    assert events == ["opened", "assigned", "closed", "reopened"]
    assert [m["seq"] for m in page["messages"]] == list(range(1, page["last_seq"] + 1))

    audit = await world.api(Role.ADMIN, "adm").request(
        "GET", f"/api/threads/{thread_id}/messages?after_seq=0"
    )
    assert audit[0] == 200


async def test_a_retry_returns_the_original(world: World) -> None:
    thread_id = await world.open_thread()
    parent = await world.socket(Role.PARENT, "fam-1")
    payload = {"thread_id": thread_id, "client_msg_id": "once", "text": "hello"}
    first = await parent.ok("thread.send", payload)
    retry = await parent.ok("thread.send", payload)
    assert retry["duplicate"] is True
    assert retry["message"] == first["message"]
    status, body = await world.api(Role.PARENT, "fam-1").request(
        "POST",
        f"/api/threads/{thread_id}/messages",
        json={"client_msg_id": "once", "text": "hello"},
    )
    assert status == 200
    assert body["duplicate"] is True
    assert body["message"]["seq"] == first["message"]["seq"]
    changed = {**payload, "text": "hello?"}
    assert await parent.error("thread.send", changed) == "thread.duplicate_mismatch"
    page = await parent.ok("thread.sync", {"thread_id": thread_id, "after_seq": 0})
    assert [m["seq"] for m in page["messages"]] == [1, 2]


async def test_resync_after_a_disconnect_gets_everything_missed(world: World) -> None:
    thread_id = await world.open_thread()
    phone = await world.socket(Role.PARENT, "fam-1")
    tablet = await world.socket(Role.PARENT, "fam-1")
    await phone.ok("thread.send", {"thread_id": thread_id, "client_msg_id": "m0", "text": "0"})
    await tablet.wait_for(lambda: len(tablet.messages()) == 1)
    seen = tablet.messages()[-1]["seq"]
    await tablet.close()
    for i in range(1, 8):
        await phone.ok(
            "thread.send", {"thread_id": thread_id, "client_msg_id": f"m{i}", "text": str(i)}
        )
    back = await world.socket(Role.PARENT, "fam-1")
    page = await back.ok("thread.sync", {"thread_id": thread_id, "after_seq": seen, "limit": 4})
    assert [m["seq"] for m in page["messages"]] == [3, 4, 5, 6]
    assert page["has_more"] is True
    rest = await back.ok("thread.sync", {"thread_id": thread_id, "after_seq": 6})
    assert [m["text"] for m in rest["messages"]] == ["5", "6", "7"]
    assert rest["has_more"] is False
    assert rest["last_seq"] == 9
    status, body = await world.api(Role.PARENT, "fam-1").request(
        "GET", f"/api/threads/{thread_id}/messages?before_seq=4&limit=2"
    )
    assert status == 200
    assert [m["seq"] for m in body["messages"]] == [2, 3]
    assert body["has_more"] is True


async def test_receipts_unread_counts_and_typing(world: World) -> None:
    thread_id = await world.open_thread()
    doctor = await world.socket(Role.CLINICIAN, "doc-1")
    await doctor.ok("thread.assign", {"thread_id": thread_id})
    parent = await world.socket(Role.PARENT, "fam-1")
    for i in range(3):
        await doctor.ok(
            "thread.send", {"thread_id": thread_id, "client_msg_id": f"d{i}", "text": f"{i}"}
        )
    listed = await parent.ok("thread.list", {})
    [mine] = listed["threads"]
    assert (mine["last_seq"], mine["read_seq"], mine["unread"]) == (5, 1, 4)
    assert (await parent.ok("thread.read", {"thread_id": thread_id, "seq": 4}))["read_seq"] == 4
    assert (await parent.ok("thread.read", {"thread_id": thread_id, "seq": 2}))["read_seq"] == 4
    await doctor.wait_for(lambda: bool(doctor.pushes["thread.read"]))
    assert doctor.pushes["thread.read"][0] == {
        "thread_id": thread_id,
        "sub": "fam-1",
        "read_seq": 4,
    }
    status, body = await world.api(Role.PARENT, "fam-1").request("GET", f"/api/threads/{thread_id}")
    assert (status, body["unread"]) == (200, 1)

    await parent.ok("thread.typing", {"thread_id": thread_id, "typing": True})
    await doctor.wait_for(lambda: bool(doctor.pushes["thread.typing"]))
    assert doctor.pushes["thread.typing"] == [
        {"thread_id": thread_id, "sub": "fam-1", "typing": True}
    ]
    assert parent.pushes["thread.typing"] == []
    page = await parent.ok("thread.sync", {"thread_id": thread_id, "after_seq": 0})
    assert page["last_seq"] == 5  # typing is never stored


async def test_edits_and_deletions_replace_the_text_for_readers(world: World) -> None:
    thread_id = await world.open_thread()
    parent = await world.socket(Role.PARENT, "fam-1")
    doctor = await world.socket(Role.CLINICIAN, "doc-1")
    await doctor.ok("thread.assign", {"thread_id": thread_id})
    sent = await parent.ok(
        "thread.send", {"thread_id": thread_id, "client_msg_id": "m", "text": "temp 38.5"}
    )
    seq = sent["message"]["seq"]
    edit = {"thread_id": thread_id, "client_msg_id": "e", "target_seq": seq, "text": "temp 39.5"}
    edited = await parent.ok("thread.edit", edit)
    assert edited["message"]["kind"] == "edit"
    assert edited["message"]["text"] is None
    assert edited["target"]["text"] == "temp 39.5"
    assert edited["target"]["version"] == 2
    await doctor.wait_for(lambda: any(m["kind"] == "edit" for m in doctor.messages()))
    push = next(p for p in doctor.pushes["thread.message"] if p["message"]["kind"] == "edit")
    assert push["target"]["text"] == "temp 39.5"
    assert (await parent.ok("thread.edit", edit))["duplicate"] is True
    assert await doctor.error("thread.edit", {**edit, "client_msg_id": "e2"}) == "thread.not_sender"

    page = await doctor.ok("thread.sync", {"thread_id": thread_id, "after_seq": seq})
    assert [m["kind"] for m in page["messages"]] == ["edit"]
    assert [t["text"] for t in page["targets"]] == ["temp 39.5"]
    full = await doctor.ok("thread.sync", {"thread_id": thread_id, "after_seq": 0})
    assert "temp 38.5" not in str(full)

    deleted = await parent.ok(
        "thread.delete", {"thread_id": thread_id, "client_msg_id": "d", "target_seq": seq}
    )
    assert deleted["target"]["deleted"] is True
    assert deleted["target"]["text"] == ""
    status, audit = await world.api(Role.ADMIN, "adm").request(
        "GET", f"/api/threads/{thread_id}/messages?after_seq={seq}"
    )
    assert status == 200
    assert [(m["kind"], m["sender"], m["target_seq"]) for m in audit["messages"]] == [
        ("edit", "fam-1", seq),
        ("delete", "fam-1", seq),
    ]
    assert all(m["text"] is None for m in audit["messages"])


async def test_rest_flow_matches_the_socket_flow(world: World) -> None:
    parent = world.api(Role.PARENT, "fam-1")
    status, created = await parent.request(
        "POST", "/api/threads", json={"patient_ref": "pat-9", "client_thread_id": "c-1"}
    )
    assert (status, created["created"]) == (201, True)
    thread_id = created["thread"]["thread_id"]
    status, again = await parent.request(
        "POST", "/api/threads", json={"patient_ref": "pat-9", "client_thread_id": "c-1"}
    )
    assert (status, again["created"], again["thread"]["thread_id"]) == (200, False, thread_id)
    status, body = await parent.request(
        "POST", "/api/threads", json={"patient_ref": "pat-other", "client_thread_id": "c-1"}
    )
    assert (status, body["error"]["code"]) == (409, "thread.duplicate_mismatch")
    status, sent = await parent.request(
        "POST", f"/api/threads/{thread_id}/messages", json={"client_msg_id": "m", "text": "hi"}
    )
    assert (status, sent["message"]["seq"]) == (201, 2)
    doctor = world.api(Role.CLINICIAN, "doc-1")
    status, picked = await doctor.request("POST", f"/api/threads/{thread_id}/assign")
    assert (status, picked["thread"]["state"]) == (200, "assigned")
    status, edited = await parent.request(
        "POST",
        f"/api/threads/{thread_id}/messages/2/edit",
        json={"client_msg_id": "e", "text": "hello"},
    )
    assert (status, edited["target"]["text"]) == (201, "hello")
    status, read = await doctor.request("POST", f"/api/threads/{thread_id}/read", json={"seq": 4})
    assert (status, read["read_seq"]) == (200, 4)
    status, closed = await doctor.request("POST", f"/api/threads/{thread_id}/close")
    assert (status, closed["thread"]["state"]) == (200, "closed")
    status, listed = await parent.request("GET", "/api/threads?state=closed")
    assert [t["thread_id"] for t in listed["threads"]] == [thread_id]
    status, listed = await parent.request("GET", "/api/threads?state=open")
    assert listed["threads"] == []
    status, reopened = await parent.request("POST", f"/api/threads/{thread_id}/reopen")
    assert (status, reopened["thread"]["state"]) == (200, "assigned")
