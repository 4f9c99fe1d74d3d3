"""Many devices writing into one thread at once: gap-free seqs, every push delivered."""

from __future__ import annotations

import asyncio
from collections.abc import Callable

from careline.signaling.identity import Role
from tests.threads.conftest import ThreadSocket, World


async def test_concurrent_senders_get_gap_free_seqs(world: World) -> None:
    thread_id = await world.open_thread()
    doctor_devices = [await world.socket(Role.CLINICIAN, "doc-1") for _ in range(2)]
    await doctor_devices[0].ok("thread.assign", {"thread_id": thread_id})
    parent_devices = [await world.socket(Role.PARENT, "fam-1") for _ in range(4)]
    devices = parent_devices + doctor_devices
    per_device = 25

    async def burst(index: int) -> list[int]:
        device = devices[index]
        replies = await asyncio.gather(
            *(
                device.ok(
                    "thread.send",
                    {"thread_id": thread_id, "client_msg_id": f"d{index}-{n}", "text": f"{n}"},
                )
                for n in range(per_device)
            )
        )
        return [r["message"]["seq"] for r in replies]

    http = world.api(Role.PARENT, "fam-1")

    async def over_http(n: int) -> int:
        status, body = await http.request(
            "POST",
            f"/api/threads/{thread_id}/messages",
            json={"client_msg_id": f"h-{n}", "text": "http"},
        )
        assert status == 201, body
        seq: int = body["message"]["seq"]
        return seq

    bursts, singles = await asyncio.gather(
        asyncio.gather(*(burst(i) for i in range(len(devices)))),
        asyncio.gather(*(over_http(n) for n in range(20))),
    )
    seqs = sorted([seq for part in bursts for seq in part] + singles)
    total = per_device * len(devices) + 20
    assert seqs == list(range(3, 3 + total))
    page = await devices[0].ok(
        "thread.sync", {"thread_id": thread_id, "after_seq": 0, "limit": 500}
    )
    assert [m["seq"] for m in page["messages"]] == list(range(1, 3 + total))
    assert len({m["client_msg_id"] for m in page["messages"]}) == 2 + total

    # Every device is pushed every message it did not send itself.
    for index, device in enumerate(devices):
        expected = total - per_device
        await device.wait_for(_has_at_least(device, expected), within=10)
        own = {m["client_msg_id"] for m in device.messages()}
        assert not any(c.startswith(f"d{index}-") for c in own)


def _has_at_least(device: ThreadSocket, count: int) -> Callable[[], bool]:
    return lambda: len(device.messages()) >= count
