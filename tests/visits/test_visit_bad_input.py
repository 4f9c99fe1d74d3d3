"""Bad input against a visit in progress, with real peers: each gets a clear error code (or, for
the same identity, replaces the old session) and the visit goes on for everyone else; a peer
that vanishes mid-negotiation leaves no peer connection, task or file descriptor behind."""

from __future__ import annotations

import asyncio
import gc
import re
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest

from careline.loadtest.clips import Clip, audio_clip
from careline.loadtest.visit_client import VisitClient, VisitError
from careline.server.app_keys import MEDIA, VISITS
from careline.signaling.identity import Role
from tests.support import RunningServer, eventually, open_fds
from tests.visits.conftest import create_visit, in_call, joined, visit_server

GRACE = 1.0


@pytest.fixture
async def server(tmp_path: Path) -> AsyncIterator[RunningServer]:
    """A loopback server with the shortest reconnect grace (1 s)."""
    async with visit_server(tmp_path, **{"visits.reconnect_grace_seconds": GRACE}) as running:
        yield running


@pytest.fixture(scope="session")
def sound(tmp_path_factory: pytest.TempPathFactory) -> Clip:
    return audio_clip(seconds=2.0, cache_dir=Path(tmp_path_factory.mktemp("sound")))


async def still_flowing(client: VisitClient, publisher: str, frames: int = 5) -> None:
    """`client` keeps receiving `publisher`'s video: `frames` more arrive."""
    mid = await client.frames_from(publisher, 1)
    before = client.frames.count(mid)
    await client.frames.wait_for(mid, before + frames)


# -- hostile session descriptions --------------------------------------------------------------


def without_m_lines(sdp: str) -> str:
    return sdp[: sdp.index("m=")]


def without_last_m_line(sdp: str) -> str:
    return sdp[: sdp.rindex("m=")]


def with_renamed_mid(sdp: str) -> str:
    return sdp.replace("a=mid:1\r\n", "a=mid:9\r\n")


def without_fingerprint(sdp: str) -> str:
    return re.sub(r"a=fingerprint:[^\r\n]*\r\n", "", sdp)


def h264_only(sdp: str) -> str:
    """Every VP8 payload type relabelled H264 (packetization-mode 1): no VP8 left."""

    def relabel(match: re.Match[str]) -> str:
        pt = match.group(1)
        fmtp = "level-asymmetry-allowed=1;packetization-mode=1;profile-level-id=42e01f"
        return f"a=rtpmap:{pt} H264/90000\r\na=fmtp:{pt} {fmtp}\r\n"

    relabelled = re.sub(r"a=rtpmap:(\d+) VP8/90000\r\n", relabel, sdp)
    assert "VP8" not in relabelled
    return relabelled


def publishing_into_a_slot(sdp: str) -> str:
    """A receive-only slot answered as if the client sent on it."""
    assert "a=recvonly" in sdp
    return sdp.replace("a=recvonly", "a=sendonly", 1)


async def test_hostile_answers_are_refused_and_change_nothing(
    server: RunningServer, clients: list[VisitClient], clip: Clip, sound: Clip
) -> None:
    visit, doctor, parent = await in_call(server, clients, clip, ["interpreter"])
    ids = visit.participant_ids
    interpreter = await joined(
        server, clients, visit.tokens["interpreter"], visit.visit_id, clip, sound
    )
    await doctor.call("visit.admit", {"participant_id": ids["interpreter"]})
    offer = await interpreter.open_media()
    good = await interpreter.make_answer(offer)

    cases: list[tuple[str, Any, str]] = [
        ("empty", {"sdp": ""}, "invalid_payload"),
        ("huge", {"sdp": "a" * (64 * 1024 + 1)}, "invalid_payload"),
        ("binary", {"sdp": bytes(range(256)) * 4}, "invalid_payload"),
        ("not a map", ["v=0"], "invalid_payload"),
        ("unknown field", {"sdp": good, "type": "offer"}, "invalid_payload"),
        ("junk text", {"sdp": "\x00\x01\ufffd junk \r\nm=\r\na=b"}, "media.bad_sdp"),
        ("no m-lines", {"sdp": without_m_lines(good)}, "media.bad_sdp"),
        ("one m-line short", {"sdp": without_last_m_line(good)}, "media.bad_sdp"),
        ("renamed mid", {"sdp": with_renamed_mid(good)}, "media.bad_sdp"),
        ("no fingerprint", {"sdp": without_fingerprint(good)}, "media.bad_sdp"),
        ("slot direction", {"sdp": publishing_into_a_slot(good)}, "media.bad_sdp"),
        ("H264 in a VP8 visit", {"sdp": h264_only(good)}, "media.codec_not_allowed"),
    ]
    session = server.app[MEDIA].sfu.session(ids["interpreter"])
    for name, payload, code in cases:
        with pytest.raises(VisitError) as refused:
            await interpreter.call("media.answer", payload)
        assert refused.value.code == code, name
        assert session.peer_connection.signalingState == "have-local-offer", name  # untouched
        await still_flowing(doctor, ids["parent"], frames=2)
    await still_flowing(parent, ids["clinician"])

    # The offer is still waiting: the real answer goes through, and every track flows, the
    # audio too (aiortc would have applied the audio m-line of the refused H264 answer).
    await interpreter.call("media.answer", {"sdp": good})
    for publisher in (ids["clinician"], ids["parent"]):
        await interpreter.frames_from(publisher, 5)
    await doctor.frames_from(ids["interpreter"], 5)
    await doctor.frames_from(ids["interpreter"], 10, kind="audio")
    await parent.frames_from(ids["interpreter"], 10, kind="audio")
    # Nothing more to answer.
    with pytest.raises(VisitError) as refused:
        await interpreter.call("media.answer", {"sdp": good})
    assert refused.value.code == "media.negotiation_conflict"


async def test_answers_out_of_turn_are_refused(
    server: RunningServer, clients: list[VisitClient]
) -> None:
    visit = await create_visit(server, ["parent"])
    stranger = VisitClient(server.url, visit.tokens["parent"])
    clients.append(stranger)
    await stranger.connect()
    with pytest.raises(VisitError) as refused:
        await stranger.call("media.answer", {"sdp": "v=0\r\n"})
    assert refused.value.code == "visit.not_joined"
    doctor = await joined(server, clients, visit.tokens["clinician"], visit.visit_id)
    with pytest.raises(VisitError) as refused:
        await doctor.call("media.answer", {"sdp": "v=0\r\n"})
    assert refused.value.code == "media.unknown_session"
    with pytest.raises(VisitError) as refused:
        await doctor.call("media.nonsense", {})
    assert refused.value.code == "unknown_event"


# -- joins the token does not grant -----------------------------------------------------------


async def test_joins_the_token_does_not_grant_are_refused(
    server: RunningServer, clients: list[VisitClient]
) -> None:
    visit = await create_visit(server, ["parent"])
    other = await create_visit(server, ["parent"])

    async def join_code(token: str, visit_id: Any) -> str:
        client = VisitClient(server.url, token)
        clients.append(client)
        await client.connect()
        with pytest.raises(VisitError) as refused:
            await client.call("visit.join", {"visit_id": visit_id})
        return refused.value.code

    # A link for one visit opens no other, whatever the role.
    assert await join_code(visit.tokens["parent"], other.visit_id) == "forbidden"
    assert await join_code(visit.tokens["clinician"], other.visit_id) == "forbidden"
    # A family member needs a link; a clinician must be invited.
    assert await join_code(server.token(Role.PARENT, "p-x"), visit.visit_id) == "forbidden"
    assert await join_code(server.token(Role.CLINICIAN, "c-2"), visit.visit_id) == "forbidden"
    scoped_stranger = server.token(Role.PARENT, "p-x", visit_id=visit.visit_id)
    assert await join_code(scoped_stranger, visit.visit_id) == "forbidden"
    # A family token never acts as the clinician, even with the clinician's sub.
    impostor = server.token(Role.PARENT, "c-1", visit_id=visit.visit_id)
    assert await join_code(impostor, visit.visit_id) == "forbidden"
    for role in (Role.ADMIN, Role.KIOSK, Role.PHARMACIST):
        assert await join_code(server.token(role, "x-1"), visit.visit_id) == "forbidden"
    # Visits that do not exist, ids that are not ids.
    assert await join_code(server.token(Role.CLINICIAN, "c-1"), "v-nothing") == "not_found"
    assert await join_code(visit.tokens["parent"], "../etc") == "invalid_payload"
    assert await join_code(visit.tokens["parent"], 12) == "invalid_payload"

    # Nothing of this reached the visit: nobody is waiting, nobody joined.
    doctor = await joined(server, clients, visit.tokens["clinician"], visit.visit_id)
    roster = await doctor.wait_event("visit.roster")
    states = {p["participant_id"]: p["state"] for p in roster["participants"]}
    assert states[visit.participant_ids["parent"]] == "invited"


async def test_one_connection_is_in_one_visit_at_a_time(
    server: RunningServer, clients: list[VisitClient]
) -> None:
    first = await create_visit(server, ["parent"])
    second = await create_visit(server, ["parent"])
    doctor = await joined(server, clients, server.token(Role.CLINICIAN, "c-1"), first.visit_id)
    with pytest.raises(VisitError) as refused:
        await doctor.join(second.visit_id)
    assert refused.value.code == "visit.already_joined"
    await doctor.join(first.visit_id)  # joining the same visit again is fine


async def test_a_denied_or_ended_visit_cannot_be_joined(
    server: RunningServer, clients: list[VisitClient]
) -> None:
    visit = await create_visit(server, ["parent"])
    doctor = await joined(server, clients, visit.tokens["clinician"], visit.visit_id)
    parent = await joined(server, clients, visit.tokens["parent"], visit.visit_id)
    await doctor.call("visit.deny", {"participant_id": visit.participant_ids["parent"]})
    await parent.wait_event("visit.denied")
    again = VisitClient(server.url, visit.tokens["parent"])
    clients.append(again)
    await again.connect()
    with pytest.raises(VisitError) as refused:
        await again.join(visit.visit_id)
    assert refused.value.code == "visit.denied"
    await doctor.call("visit.end")
    late = VisitClient(server.url, visit.tokens["clinician"])
    clients.append(late)
    await late.connect()
    with pytest.raises(VisitError) as refused:
        await late.join(visit.visit_id)
    assert refused.value.code == "visit.ended"


async def test_admitting_or_joining_again_changes_nothing(
    server: RunningServer, clients: list[VisitClient], clip: Clip
) -> None:
    visit, doctor, parent = await in_call(server, clients, clip, ["interpreter"])
    ids = visit.participant_ids
    await doctor.wait_event("visit.roster", where=lambda r: r["state"] == "in_call")
    reply = await doctor.call("visit.admit", {"participant_id": ids["parent"]})
    assert reply["state"] == "connected"
    with pytest.raises(VisitError) as refused:
        await doctor.call("visit.deny", {"participant_id": ids["parent"]})
    assert refused.value.code == "visit.bad_transition"
    with pytest.raises(VisitError) as refused:
        await doctor.call("visit.admit", {"participant_id": ids["clinician"]})
    assert refused.value.code == "conflict"
    with pytest.raises(VisitError) as refused:
        await doctor.call("visit.admit", {"participant_id": "p-nobody"})
    assert refused.value.code == "not_found"
    # A join repeated on a socket that has media changes nothing either.
    assert (await parent.join(visit.visit_id))["state"] == "connected"
    await still_flowing(parent, ids["clinician"])
    await still_flowing(doctor, ids["parent"])
    stats = await doctor.call("visit.stats")
    assert stats[ids["parent"]]["state"] == "connected"
    # Someone not yet arrived may be admitted ahead: they skip the waiting room.
    reply = await doctor.call("visit.admit", {"participant_id": ids["interpreter"]})
    assert reply["state"] == "admitted"
    interpreter = await joined(server, clients, visit.tokens["interpreter"], visit.visit_id)
    assert (await interpreter.join(visit.visit_id))["state"] == "admitted"


# -- the same identity twice ------------------------------------------------------------------


async def test_a_second_connection_takes_over_the_media(
    server: RunningServer, clients: list[VisitClient], clip: Clip
) -> None:
    visit, doctor, parent = await in_call(server, clients, clip, [])
    ids = visit.participant_ids
    sfu = server.app[MEDIA].sfu
    old = sfu.session(ids["parent"])

    phone = await joined(server, clients, visit.tokens["parent"], visit.visit_id, clip)
    await parent.wait_event("visit.replaced")
    await eventually(lambda: not parent.sio.connected)
    # The replaced device no longer sends into the visit: its session closed with it.
    assert old.closed
    assert old.peer_connection.connectionState == "closed"
    assert not sfu.has_session(ids["parent"])
    assert phone.participant_id == ids["parent"]

    await phone.start_media()  # still admitted: no new admit
    new = sfu.session(ids["parent"])
    assert new is not old
    assert sfu.session_count == 2
    await phone.frames_from(ids["clinician"], 10)
    await still_flowing(doctor, ids["parent"], frames=10)


# -- peers that vanish mid-negotiation ---------------------------------------------------------


#: Tasks of other libraries that come and go by themselves: engine.io's server starts a ping
#: timer per socket that sleeps `pingInterval` (25 s) before it looks whether its socket closed,
#: and its client waits for each packet in a task of its own (`asyncio.wait_for`).
TRANSIENT_TASKS = frozenset({"AsyncSocket._send_ping", "ClientWebSocketResponse.receive"})


def live_tasks() -> int:
    """Tasks of this process (server and clients), but the transient ones."""
    return sum(
        1
        for task in asyncio.all_tasks()
        if getattr(task.get_coro(), "__qualname__", "") not in TRANSIENT_TASKS
    )


async def vanish_before_answering(client: VisitClient) -> None:
    await client.open_media()
    await client.close()


async def vanish_before_ice_completes(client: VisitClient) -> None:
    answer = await client.make_answer(await client.open_media())
    assert client.pc is not None
    await client.pc.close()  # the server checks candidates nobody answers any more
    await client.call("media.answer", {"sdp": answer})
    await client.close()


@pytest.mark.parametrize("vanish", [vanish_before_answering, vanish_before_ice_completes])
async def test_a_peer_that_vanishes_mid_negotiation_leaves_nothing_behind(
    server: RunningServer, clients: list[VisitClient], clip: Clip, vanish: Any
) -> None:
    visit = await create_visit(server, ["parent"])
    ids = visit.participant_ids
    doctor = await joined(server, clients, visit.tokens["clinician"], visit.visit_id, clip)
    await doctor.start_media()
    gateway, visits = server.app[MEDIA], server.app[VISITS]

    async def cycle() -> None:
        parent = VisitClient(server.url, visit.tokens["parent"])
        await parent.connect()
        await parent.join(visit.visit_id)
        await doctor.call("visit.admit", {"participant_id": ids["parent"]})
        await parent.wait_event("visit.admitted")
        await vanish(parent)
        assert gateway.sfu.has_session(ids["parent"])  # kept for the grace window
        await eventually(lambda: not gateway.sfu.has_session(ids["parent"]), within=GRACE + 4)
        await doctor.wait_event(
            "visit.roster",
            where=lambda r: (
                {"participant_id": ids["parent"], "kind": "parent", "state": "left"}
                in r["participants"]
            ),
        )
        doctor.events.clear()

    await cycle()  # warm up what aiortc and socket.io create once
    gc.collect()
    tasks, fds = live_tasks(), open_fds()
    await cycle()

    def settled() -> bool:
        gc.collect()
        return live_tasks() <= tasks and open_fds() <= fds

    await eventually(settled, within=5)
    assert gateway.sfu.session_count == 1  # the doctor's
    assert sum(gateway.totals().peer_connections.values()) == 1
    census = visits.census()
    assert census.active_visits == 1
    assert dict(census.participants) == {"connected": 1}
    assert gateway.sfu.session(ids["clinician"]).connection_state == "connected"
