"""Who may do what, for every role, and attachments served only to the thread's readers."""

from __future__ import annotations

from careline.signaling.identity import Role
from tests.threads.conftest import JPEG, PNG, World


async def test_every_role_against_one_thread(sqlite_world: World) -> None:
    world = sqlite_world
    thread_id = await world.open_thread("fam-1")
    base = f"/api/threads/{thread_id}"
    outcomes: dict[tuple[Role, str], int] = {}
    for role, sub in (
        (Role.PARENT, "fam-1"),
        (Role.PARENT, "fam-2"),
        (Role.CLINICIAN, "doc-1"),
        (Role.PHARMACIST, "ph-1"),
        (Role.KIOSK, "k-1"),
        (Role.ADMIN, "adm-1"),
    ):
        api = world.api(role, sub)
        status, _ = await api.request("GET", base)
        outcomes[(role, sub + ":get")] = status
        status, _ = await api.request(
            "POST", base + "/messages", json={"client_msg_id": f"m-{sub}", "text": "hi"}
        )
        outcomes[(role, sub + ":send")] = status
        status, listed = await api.request("GET", "/api/threads")
        outcomes[(role, sub + ":list")] = len(listed["threads"]) if status == 200 else -status
    assert outcomes == {
        (Role.PARENT, "fam-1:get"): 200,
        (Role.PARENT, "fam-1:send"): 201,
        (Role.PARENT, "fam-1:list"): 1,
        (Role.PARENT, "fam-2:get"): 404,
        (Role.PARENT, "fam-2:send"): 404,
        (Role.PARENT, "fam-2:list"): 0,
        (Role.CLINICIAN, "doc-1:get"): 200,  # the open queue
        (Role.CLINICIAN, "doc-1:send"): 403,  # thread.not_assigned
        (Role.CLINICIAN, "doc-1:list"): 1,
        (Role.PHARMACIST, "ph-1:get"): 403,
        (Role.PHARMACIST, "ph-1:send"): 403,
        (Role.PHARMACIST, "ph-1:list"): -403,
        (Role.KIOSK, "k-1:get"): 403,
        (Role.KIOSK, "k-1:send"): 403,
        (Role.KIOSK, "k-1:list"): -403,
        (Role.ADMIN, "adm-1:get"): 200,
        (Role.ADMIN, "adm-1:send"): 403,  # admins read and manage, never write
        (Role.ADMIN, "adm-1:list"): 1,
    }


async def test_assignment_decides_what_clinicians_see(world: World) -> None:
    thread_id = await world.open_thread()
    mine, theirs = world.api(Role.CLINICIAN, "doc-1"), world.api(Role.CLINICIAN, "doc-2")
    status, _ = await mine.request("POST", f"/api/threads/{thread_id}/assign")
    assert status == 200
    status, body = await theirs.request("GET", f"/api/threads/{thread_id}")
    assert (status, body["error"]["code"]) == (404, "thread.not_found")
    status, listed = await theirs.request("GET", "/api/threads")
    assert listed["threads"] == []
    admin = world.api(Role.ADMIN, "adm-1")
    status, body = await admin.request("POST", f"/api/threads/{thread_id}/assign")
    assert (status, body["error"]["code"]) == (403, "thread.forbidden")
    status, moved = await admin.request(
        "POST", f"/api/threads/{thread_id}/assign", json={"assignee": "doc-2"}
    )
    assert (status, moved["thread"]["assigned_to"]) == (200, "doc-2")
    status, _ = await theirs.request("GET", f"/api/threads/{thread_id}")
    assert status == 200
    status, body = await mine.request("POST", f"/api/threads/{thread_id}/close")
    assert (status, body["error"]["code"]) == (404, "thread.not_found")
    parent = world.api(Role.PARENT, "fam-1")
    status, body = await parent.request("POST", f"/api/threads/{thread_id}/close")
    assert (status, body["error"]["code"]) == (403, "thread.forbidden")
    status, body = await parent.request("POST", f"/api/threads/{thread_id}/assign")
    assert (status, body["error"]["code"]) == (403, "thread.forbidden")
    status, body = await world.api(Role.CLINICIAN, "doc-1").request(
        "POST", "/api/threads", json={"patient_ref": "p"}
    )
    assert (status, body["error"]["code"]) == (403, "thread.forbidden")
    status, created = await admin.request(
        "POST", "/api/threads", json={"patient_ref": "p", "family_sub": "fam-7"}
    )
    assert (status, created["thread"]["family_sub"]) == (201, "fam-7")


async def test_attachments_go_only_to_the_threads_readers(world: World) -> None:
    thread_id = await world.open_thread()
    parent = world.api(Role.PARENT, "fam-1")
    status, uploaded = await parent.request(
        "POST", f"/api/threads/{thread_id}/attachments", data=JPEG
    )
    assert status == 201
    assert (uploaded["content_type"], uploaded["size"]) == ("image/jpeg", len(JPEG))
    url = uploaded["url"]
    assert url == f"/api/threads/{thread_id}/attachments/{uploaded['attachment_id']}"

    doctor = world.api(Role.CLINICIAN, "doc-1")
    status, _, _, _ = await doctor.raw(url)
    assert status == 404  # not sent yet: only its uploader sees it
    status, content_type, data, headers = await parent.raw(url)
    assert (status, content_type, data) == (200, "image/jpeg", JPEG)
    assert headers["X-Content-Type-Options"] == "nosniff"

    status, sent = await parent.request(
        "POST",
        f"/api/threads/{thread_id}/messages",
        json={
            "client_msg_id": "photo",
            "text": "the rash",
            "attachment_ids": [uploaded["attachment_id"]],
        },
    )
    assert status == 201
    [ref] = sent["message"]["attachments"]
    assert ref["url"] == url
    status, content_type, data, _ = await doctor.raw(url)
    assert (status, content_type, data) == (200, "image/jpeg", JPEG)
    for stranger in (
        world.api(Role.PARENT, "fam-2"),
        world.api(Role.KIOSK, "k-1"),
        world.api(Role.PARENT, "fam-1", thread_id="t-other"),
    ):
        status, _, data, _ = await stranger.raw(url)
        assert status in (403, 404)
        assert data != JPEG
    await doctor.request("POST", f"/api/threads/{thread_id}/assign")
    status, _, _, _ = await world.api(Role.CLINICIAN, "doc-2").raw(url)
    assert status == 404
    status, _, _, _ = await world.api(Role.ADMIN, "adm").raw(url)
    assert status == 200
    status, upload = await world.api(Role.CLINICIAN, "doc-2").request(
        "POST", f"/api/threads/{thread_id}/attachments", data=PNG
    )
    assert (status, upload["error"]["code"]) == (404, "thread.not_found")

    status, deleted = await parent.request(
        "POST",
        f"/api/threads/{thread_id}/messages/{sent['message']['seq']}/delete",
        json={"client_msg_id": "del"},
    )
    assert (status, deleted["target"]["attachments"]) == (201, [])
    status, _, _, _ = await parent.raw(url)
    assert status == 404
    status, _, _, _ = await doctor.raw(f"/api/threads/{thread_id}/attachments/a-nope")
    assert status == 404


async def test_audit_trail_for_clinicians_and_admins(world: World) -> None:
    thread_id = await world.open_thread("fam-1")
    base = f"/api/threads/{thread_id}"
    doctor, parent = world.api(Role.CLINICIAN, "doc-1"), world.api(Role.PARENT, "fam-1")
    status, _ = await doctor.request("POST", base + "/assign")
    assert status == 200
    status, sent = await parent.request(
        "POST", base + "/messages", json={"client_msg_id": "m-1", "text": "a private text"}
    )
    assert status == 201
    seq = sent["message"]["seq"]
    status, _ = await parent.request(
        "POST", f"{base}/messages/{seq}/edit", json={"client_msg_id": "e-1", "text": "new text"}
    )
    assert status == 201
    status, _ = await doctor.request("POST", base + "/close")
    assert status == 200

    status, trail = await doctor.request("GET", base + "/audit")
    assert status == 200
    events = trail["events"]
    assert [e["action"] for e in events] == [
        "thread_opened",
        "thread_assigned",
        "message_edited",
        "thread_closed",
    ]
    assert [e["seq"] for e in events] == [1, 2, 3, 4]
    assert [e["actor"] for e in events] == ["fam-1", "doc-1", "fam-1", "doc-1"]
    assert events[2]["detail"]["seq"] == seq
    assert "text" not in str(trail)  # ids, times and numbers only: no message text
    status, page = await doctor.request("GET", base + "/audit?after_seq=1&limit=2")
    assert (status, [e["seq"] for e in page["events"]]) == (200, [2, 3])
    status, as_admin = await world.api(Role.ADMIN, "adm-1").request("GET", base + "/audit")
    assert (status, as_admin) == (200, trail)

    for role, sub, expected in (
        (Role.PARENT, "fam-1", (403, "thread.forbidden")),  # its own thread, not its audit
        (Role.PARENT, "fam-2", (404, "thread.not_found")),
        (Role.CLINICIAN, "doc-2", (404, "thread.not_found")),  # assigned to someone else
        (Role.PHARMACIST, "ph-1", (403, "thread.forbidden")),
        (Role.KIOSK, "k-1", (403, "thread.forbidden")),
    ):
        status, body = await world.api(role, sub).request("GET", base + "/audit")
        assert (status, body["error"]["code"]) == expected, (role, sub)
    for query in ("after_seq=-1", "limit=0", "limit=many"):
        status, body = await doctor.request("GET", f"{base}/audit?{query}")
        assert (status, body["error"]["code"]) == (400, "invalid_payload"), query
    status, body = await world.api(Role.ADMIN, "adm-1").request(
        "GET", "/api/threads/no-such-thread/audit"
    )
    assert (status, body["error"]["code"]) == (404, "thread.not_found")
