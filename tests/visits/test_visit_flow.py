"""Video visits end to end: REST, socket.io (/visit) and real WebRTC media through the SFU."""

from __future__ import annotations

import asyncio
from pathlib import Path

import aiohttp
import pytest

from careline.loadtest.clips import Clip, video_clip
from careline.loadtest.visit_client import VisitClient, VisitError
from careline.server.app_keys import MEDIA
from careline.signaling.identity import Role
from tests.support import RunningServer, eventually
from tests.visits.conftest import admitted, create_visit, joined


@pytest.fixture(scope="session")
def h264_clip(tmp_path_factory: pytest.TempPathFactory) -> Clip:
    cache = Path(tmp_path_factory.mktemp("h264"))
    return video_clip("h264", width=320, height=240, bitrate=300_000, seconds=2.0, cache_dir=cache)


async def test_waiting_room_admit_and_media_both_ways(
    server: RunningServer, clients: list[VisitClient], clip: Clip
) -> None:
    visit = await create_visit(server, ["parent"])
    doctor = await joined(server, clients, visit.tokens["clinician"], visit.visit_id, clip)
    parent = VisitClient(server.url, visit.tokens["parent"], video=clip)
    clients.append(parent)
    await parent.connect()
    reply = await parent.join(visit.visit_id)
    assert reply["state"] == "waiting"
    # Nobody gets media before the clinician admits them.
    with pytest.raises(VisitError) as refused:
        await parent.call("media.start")
    assert refused.value.code == "visit.not_admitted"
    waiting = await doctor.wait_event("visit.waiting_room", where=lambda d: bool(d["waiting"]))
    assert waiting["waiting"] == [visit.participant_ids["parent"]]

    await doctor.call("visit.admit", {"participant_id": visit.participant_ids["parent"]})
    await parent.wait_event("visit.admitted")
    await doctor.start_media()
    await parent.start_media()
    parent_id, doctor_id = visit.participant_ids["parent"], visit.participant_ids["clinician"]
    at_parent = await parent.frames_from(doctor_id, 20)
    at_doctor = await doctor.frames_from(parent_id, 20)
    digests = clip.digests()
    assert parent.frames.digests(at_parent) <= digests  # byte-identical
    assert doctor.frames.digests(at_doctor) <= digests
    assert parent.frames.arrivals(at_parent)[0].keyframe


async def test_a_parent_cannot_become_host_or_join_another_visit(
    server: RunningServer, clients: list[VisitClient]
) -> None:
    visit = await create_visit(server, ["parent"])
    other = await create_visit(server, ["parent"])
    parent = await joined(server, clients, visit.tokens["parent"], visit.visit_id, None)
    with pytest.raises(VisitError) as caught:
        await parent.call("visit.admit", {"participant_id": visit.participant_ids["parent"]})
    assert caught.value.code == "forbidden"
    with pytest.raises(VisitError) as caught:
        await parent.call("visit.join", {"visit_id": other.visit_id})
    assert caught.value.code == "forbidden"
    with pytest.raises(VisitError) as caught:
        await parent.call("visit.join", {"visit_id": "no such id"})
    assert caught.value.code == "invalid_payload"


async def test_three_party_leave_and_continue(
    server: RunningServer, clients: list[VisitClient], clip: Clip
) -> None:
    visit, doctor, parent = await admitted(server, clients, clip, ["interpreter"])
    ids = visit.participant_ids
    await parent.frames_from(ids["clinician"], 5)

    loop = asyncio.get_running_loop()
    interpreter = await joined(server, clients, visit.tokens["interpreter"], visit.visit_id, clip)
    await doctor.call("visit.admit", {"participant_id": ids["interpreter"]})
    started = loop.time()
    await interpreter.start_media()
    for publisher in (ids["clinician"], ids["parent"]):
        mid = await interpreter.frames_from(publisher, 1, within=5)
        assert interpreter.frames.arrivals(mid)[0].keyframe
    assert loop.time() - started < 2.0
    await doctor.frames_from(ids["interpreter"], 5)

    await interpreter.close()
    mid = await doctor.frames_from(ids["parent"], 1)
    before = doctor.frames.count(mid)
    await asyncio.sleep(0.5)
    assert doctor.frames.count(mid) > before + 5


async def test_rejoin_within_grace_needs_no_new_admit(
    server: RunningServer, clients: list[VisitClient], clip: Clip
) -> None:
    visit, doctor, parent = await admitted(server, clients, clip, [])
    ids = visit.participant_ids
    await doctor.frames_from(ids["parent"], 5)

    await parent.close()  # network drop
    await doctor.wait_event(
        "visit.roster",
        where=lambda r: (
            {"participant_id": ids["parent"], "kind": "parent", "state": "reconnecting"}
            in r["participants"]
        ),
    )

    again = VisitClient(server.url, visit.tokens["parent"], video=clip)
    clients.append(again)
    await again.connect()
    reply = await again.join(visit.visit_id)
    assert reply["state"] == "admitted"  # its place was kept: no waiting room
    await again.start_media()  # no admit needed
    await doctor.frames_from(ids["parent"], 5)
    await again.frames_from(ids["clinician"], 5)


async def test_after_the_grace_window_others_are_told_and_a_new_admit_is_needed(
    server: RunningServer, clients: list[VisitClient], clip: Clip
) -> None:
    visit = await create_visit(server, ["parent"])
    ids = visit.participant_ids
    doctor = await joined(server, clients, visit.tokens["clinician"], visit.visit_id, clip)
    parent = await joined(server, clients, visit.tokens["parent"], visit.visit_id, None)
    await doctor.call("visit.admit", {"participant_id": ids["parent"]})
    await parent.close()

    def parent_state() -> str | None:
        for name, data in reversed(doctor.events):
            if name == "visit.roster":
                for p in data["participants"]:
                    if p["participant_id"] == ids["parent"]:
                        return str(p["state"])
        return None

    await eventually(lambda: parent_state() == "reconnecting", within=5)
    await eventually(lambda: parent_state() == "left", within=8)
    again = await joined(server, clients, visit.tokens["parent"], visit.visit_id, None)
    assert again.participant_id == ids["parent"]
    with pytest.raises(VisitError):
        await again.call("media.start")


async def test_remove_revokes_the_token_and_end_closes_everything(
    server: RunningServer, clients: list[VisitClient], clip: Clip
) -> None:
    visit = await create_visit(server, ["parent", "second_parent", "interpreter"])
    ids = visit.participant_ids
    doctor = await joined(server, clients, visit.tokens["clinician"], visit.visit_id, clip)
    parent = await joined(server, clients, visit.tokens["parent"], visit.visit_id, clip)
    second = await joined(server, clients, visit.tokens["second_parent"], visit.visit_id, None)
    await doctor.call("visit.admit", {"participant_id": ids["parent"]})
    await doctor.call("visit.remove", {"participant_id": ids["second_parent"]})
    await second.wait_event("visit.removed")
    await eventually(lambda: not second.sio.connected)
    retry = VisitClient(server.url, visit.tokens["second_parent"])
    clients.append(retry)
    with pytest.raises(VisitError) as refused:
        await retry.connect()
    assert refused.value.code == "auth.revoked"

    waiting = await joined(server, clients, visit.tokens["interpreter"], visit.visit_id, None)
    await doctor.call("visit.end")
    await parent.wait_event("visit.ended")
    await eventually(lambda: not parent.sio.connected)
    await eventually(lambda: not waiting.sio.connected)  # the waiting room is closed too
    for client in (parent, waiting):
        ended = [data for name, data in client.events if name == "visit.ended"]
        assert ended == [{"visit_id": visit.visit_id}]  # told once
    clinician = server.token(Role.CLINICIAN, "c-1")
    async with (
        aiohttp.ClientSession() as http,
        http.get(
            f"{server.url}/api/visits/{visit.visit_id}",
            headers={"Authorization": f"Bearer {clinician}"},
        ) as response,
    ):
        body = await response.json()
    assert body["state"] == "ended"
    async with (
        aiohttp.ClientSession() as http,
        http.get(
            f"{server.url}/api/visits/{visit.visit_id}/audit",
            headers={"Authorization": f"Bearer {clinician}"},
        ) as response,
    ):
        audit = await response.json()
    actions = [e["action"] for e in audit["events"]]
    assert actions[0] == "created"
    assert {"joined", "admitted", "removed", "ended"} <= set(actions)


async def test_a_second_connection_replaces_the_first(
    server: RunningServer, clients: list[VisitClient]
) -> None:
    visit = await create_visit(server, ["parent"])
    first = await joined(server, clients, visit.tokens["parent"], visit.visit_id, None)
    second = await joined(server, clients, visit.tokens["parent"], visit.visit_id, None)
    await first.wait_event("visit.replaced")
    await eventually(lambda: not first.sio.connected)
    assert second.participant_id == first.participant_id


async def test_an_h264_visit_forwards_h264_byte_identical(
    server: RunningServer, clients: list[VisitClient], h264_clip: Clip
) -> None:
    visit = await create_visit(server, ["parent"], codec="h264")
    ids = visit.participant_ids
    doctor = await joined(server, clients, visit.tokens["clinician"], visit.visit_id, h264_clip)
    parent = await joined(server, clients, visit.tokens["parent"], visit.visit_id, h264_clip)
    reply = await doctor.call("visit.admit", {"participant_id": ids["parent"]})
    assert reply["state"] == "admitted"
    await doctor.start_media()
    await parent.start_media()
    at_parent = await parent.frames_from(ids["clinician"], 20)
    at_doctor = await doctor.frames_from(ids["parent"], 20)
    digests = h264_clip.digests()
    for client, mid in ((parent, at_parent), (doctor, at_doctor)):
        arrivals = client.frames.arrivals(mid)
        assert {a.codec for a in arrivals} == {"h264"}
        assert client.frames.digests(mid) <= digests  # byte-identical access units
        assert arrivals[0].keyframe  # an IDR with its parameter sets first
    # The server offered H264 only, so nothing else could have been negotiated.
    assert parent.pc is not None
    assert "VP8" not in parent.pc.remoteDescription.sdp


async def test_media_restart_makes_a_new_connection_and_keeps_the_place(
    server: RunningServer, clients: list[VisitClient], clip: Clip
) -> None:
    visit = await create_visit(server, ["parent", "interpreter"])
    ids = visit.participant_ids
    doctor = await joined(server, clients, visit.tokens["clinician"], visit.visit_id, clip)
    parent = await joined(server, clients, visit.tokens["parent"], visit.visit_id, clip)
    interpreter = await joined(server, clients, visit.tokens["interpreter"], visit.visit_id, clip)
    for kind in ("parent", "interpreter"):
        await doctor.call("visit.admit", {"participant_id": ids[kind]})
    for client in (doctor, parent, interpreter):
        await client.start_media()
    await parent.frames_from(ids["clinician"], 5)
    await doctor.frames_from(ids["parent"], 5)
    sfu = server.app[MEDIA].sfu
    old = sfu.session(ids["parent"])
    old_client_pc = parent.pc

    parent.frames = type(parent.frames)()  # count only what arrives on the new connection
    await parent.restart_media()  # the network changed: a new peer connection, a new offer
    assert old.closed
    assert old.peer_connection.connectionState == "closed"
    assert old_client_pc is not None
    assert old_client_pc.connectionState == "closed"
    assert sfu.session(ids["parent"]) is not old
    assert sfu.session_count == 3

    # The parent receives both again; the others get the parent's new stream and keep theirs.
    mid = await interpreter.frames_from(ids["clinician"], 1)
    before = interpreter.frames.count(mid)
    for publisher in (ids["clinician"], ids["interpreter"]):
        mid = await parent.frames_from(publisher, 10)
        assert parent.frames.arrivals(mid)[0].keyframe
    for client in (doctor, interpreter):
        mid = await client.frames_from(ids["parent"], 1)
        await client.frames_from(ids["parent"], client.frames.count(mid) + 10)
    mid = await interpreter.frames_from(ids["clinician"], 1)
    assert interpreter.frames.count(mid) > before + 10

    # The participant kept its place: still connected, no new admit, nothing in the waiting room.
    roster = await doctor.wait_event(
        "visit.roster", where=lambda r: r["state"] == "in_call", within=5
    )
    states = {p["participant_id"]: p["state"] for p in roster["participants"]}
    assert states[ids["parent"]] == "connected"
    stats = await doctor.call("visit.stats")
    assert set(stats) == set(ids.values())
