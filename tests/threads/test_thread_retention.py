"""Retention: closed threads past `threads.retention_days` are purged whole, on demand or on
the periodic task; their attachment bytes go too."""

from __future__ import annotations

import asyncio

from careline.signaling.identity import Role
from tests.threads.conftest import PNG, World, WorldFactory

# 0.0000025 days is about 0.2 s.
RETENTION = {"threads.retention_days": 0.0000025, "threads.purge_interval_seconds": 1.0}


async def _closed_thread_with_a_photo(world: World, family: str) -> tuple[str, str]:
    thread_id = await world.open_thread(family)
    parent = world.api(Role.PARENT, family)
    status, uploaded = await parent.request(
        "POST", f"/api/threads/{thread_id}/attachments", data=PNG
    )
    assert status == 201
    status, _ = await parent.request(
        "POST",
        f"/api/threads/{thread_id}/messages",
        json={"client_msg_id": "p", "text": "", "attachment_ids": [uploaded["attachment_id"]]},
    )
    assert status == 201
    doctor = world.api(Role.CLINICIAN, "doc-1")
    await doctor.request("POST", f"/api/threads/{thread_id}/assign")
    status, _ = await doctor.request("POST", f"/api/threads/{thread_id}/close")
    assert status == 200
    return thread_id, str(uploaded["url"])


async def test_purge_on_demand_and_on_schedule(make_world: WorldFactory) -> None:
    async with make_world("sqlite", **RETENTION) as world:
        admin = world.api(Role.ADMIN, "adm-1")
        first, url = await _closed_thread_with_a_photo(world, "fam-1")
        kept = await world.open_thread("fam-3")
        blobs = world.server.settings.data_path / "attachments"
        assert sum(1 for p in blobs.rglob("*") if p.is_file()) == 1
        status, body = await world.api(Role.PARENT, "fam-1").request("POST", "/api/threads/purge")
        assert (status, body["error"]["code"]) == (403, "thread.forbidden")
        await asyncio.sleep(0.3)
        status, body = await admin.request("POST", "/api/threads/purge")
        assert status == 200
        assert body == {"purged_threads": 1, "purged_attachments": 1}
        status, _ = await admin.request("GET", f"/api/threads/{first}")
        assert status == 404
        # The audit trail outlives the thread, for admins: ids and times of what happened.
        status, trail = await admin.request("GET", f"/api/threads/{first}/audit")
        assert status == 200
        assert trail["events"][0]["action"] == "thread_opened"
        assert trail["events"][-1]["action"] == "thread_purged"
        status, _, _, _ = await admin.raw(url)
        assert status == 404
        assert not any(p.is_file() for p in blobs.rglob("*"))
        status, _ = await admin.request("GET", f"/api/threads/{kept}")
        assert status == 200

        second, _ = await _closed_thread_with_a_photo(world, "fam-2")
        for _ in range(50):  # the periodic purge runs every second
            await asyncio.sleep(0.1)
            if (await admin.request("GET", f"/api/threads/{second}"))[0] == 404:
                break
        else:
            raise AssertionError("the periodic purge did not remove the thread")


async def test_nothing_is_purged_without_retention(world: World) -> None:
    thread_id = await world.open_thread()
    doctor = world.api(Role.CLINICIAN, "doc-1")
    await doctor.request("POST", f"/api/threads/{thread_id}/assign")
    await doctor.request("POST", f"/api/threads/{thread_id}/close")
    admin = world.api(Role.ADMIN, "adm-1")
    status, body = await admin.request("POST", "/api/threads/purge")
    assert (status, body["purged_threads"]) == (200, 0)
    status, _ = await admin.request("GET", f"/api/threads/{thread_id}")
    assert status == 200
