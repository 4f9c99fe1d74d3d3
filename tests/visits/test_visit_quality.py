"""Network quality pushed to participants, clinician-only stats, and media metrics on /metrics."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import aiohttp
import pytest
from prometheus_client.parser import text_string_to_metric_families

from careline.loadtest.clips import Clip
from careline.loadtest.visit_client import VisitClient, VisitError
from tests.support import RunningServer, eventually
from tests.visits.conftest import admitted, create_visit, joined, visit_server


@pytest.fixture
async def server(tmp_path: Path) -> AsyncIterator[RunningServer]:
    """A loopback server measuring network quality every 0.2 s."""
    async with visit_server(tmp_path, **{"visits.quality_interval_seconds": 0.2}) as running:
        yield running


def levels(client: VisitClient) -> dict[str, int]:
    """The latest network-quality level the client was told, per participant."""
    found: dict[str, int] = {}
    for name, data in client.events:
        if name == "visit.quality":
            assert set(data) == {"participant_id", "level"}
            found[data["participant_id"]] = data["level"]
    return found


async def scrape(server: RunningServer) -> tuple[str, dict[tuple[str, tuple[str, ...]], float]]:
    """The /metrics text and its samples by (name, label values)."""
    async with aiohttp.ClientSession() as http, http.get(server.url + "/metrics") as response:
        text = await response.text()
    samples = {
        (s.name, tuple(s.labels.values())): s.value
        for family in text_string_to_metric_families(text)
        for s in family.samples
    }
    return text, samples


async def test_every_participant_is_told_everyones_network_quality(
    server: RunningServer, clients: list[VisitClient], clip: Clip
) -> None:
    visit, doctor, parent = await admitted(server, clients, clip, ["interpreter"])
    ids = visit.participant_ids
    both = {ids["clinician"]: 5, ids["parent"]: 5}  # loopback: no loss, tiny round trips
    await eventually(lambda: levels(doctor) == both, within=8)
    await eventually(lambda: levels(parent) == both, within=8)

    # Pushed on change only: a steady call sends nothing more.
    pushes = len([e for e in doctor.events if e[0] == "visit.quality"])
    await doctor.frames_from(ids["parent"], 15)
    assert len([e for e in doctor.events if e[0] == "visit.quality"]) == pushes

    # Whoever enters the visit room later is told the levels it missed, even unchanged ones.
    interpreter = await joined(server, clients, visit.tokens["interpreter"], visit.visit_id, None)
    await doctor.call("visit.admit", {"participant_id": ids["interpreter"]})
    await eventually(lambda: levels(interpreter) == both, within=5)
    # A level appears for the newcomer once it has media.
    await interpreter.start_media()
    await eventually(lambda: levels(doctor).get(ids["interpreter"]) == 5, within=8)


async def test_nobody_in_the_waiting_room_is_told_quality(
    server: RunningServer, clients: list[VisitClient], clip: Clip
) -> None:
    visit = await create_visit(server, ["parent"])
    doctor = await joined(server, clients, visit.tokens["clinician"], visit.visit_id, clip)
    parent = await joined(server, clients, visit.tokens["parent"], visit.visit_id, None)
    await doctor.start_media()
    await eventually(lambda: levels(doctor) == {visit.participant_ids["clinician"]: 5}, within=8)
    # The round that told the doctor ran after the parent joined: it was not told.
    await doctor.call("visit.stats")
    assert levels(parent) == {}


async def test_stats_are_for_the_visits_clinicians_only(
    server: RunningServer, clients: list[VisitClient], clip: Clip
) -> None:
    visit, doctor, parent = await admitted(server, clients, clip, [])
    ids = visit.participant_ids
    await doctor.frames_from(ids["parent"], 10)
    await parent.frames_from(ids["clinician"], 10)

    with pytest.raises(VisitError) as refused:
        await parent.call("visit.stats")
    assert refused.value.code == "forbidden"

    stats = await doctor.call("visit.stats")
    assert set(stats) == {ids["clinician"], ids["parent"]}
    for participant in stats.values():
        assert participant["state"] == "connected"
        assert participant["frames_in"] > 0
        assert participant["frames_forwarded"] > 0
        assert participant["quality"] == 5
        assert 0 <= participant["packet_loss"] <= 1


async def test_media_metrics_are_aggregate_and_carry_no_ids(
    server: RunningServer, clients: list[VisitClient], clip: Clip
) -> None:
    visit = await create_visit(server, ["parent", "second_parent"])
    ids = visit.participant_ids
    doctor = await joined(server, clients, visit.tokens["clinician"], visit.visit_id, clip)
    parent = await joined(server, clients, visit.tokens["parent"], visit.visit_id, clip)
    await joined(server, clients, visit.tokens["second_parent"], visit.visit_id, None)
    await doctor.call("visit.admit", {"participant_id": ids["parent"]})
    await doctor.start_media()
    await parent.start_media()
    await doctor.frames_from(ids["parent"], 20)
    await parent.frames_from(ids["clinician"], 20)
    await eventually(lambda: len(levels(doctor)) == 2, within=8)

    text, during = await scrape(server)
    assert during[("careline_media_peer_connections", ("connected",))] == 2
    assert during[("careline_media_published_tracks", ("video",))] == 2
    assert during[("careline_visits_active", ())] == 1
    assert during[("careline_visit_participants", ("connected",))] == 2
    assert during[("careline_visit_participants", ("waiting",))] == 1
    assert during[("careline_visit_network_quality", ("5",))] == 2
    assert during[("careline_media_forwarded_frames_total", ())] >= 40
    assert during[("careline_media_received_frames_total", ())] >= 40
    assert during[("careline_media_keyframe_requests_total", ())] >= 1
    assert ("careline_media_subscriber_drops_total", ()) in during
    # No visit, participant or subject id anywhere in the exposition.
    for secret in (visit.visit_id, *ids.values(), "c-1", "guest-"):
        assert secret not in text

    await doctor.call("visit.end")
    await eventually(lambda: not parent.sio.connected)
    _, after = await scrape(server)
    assert after[("careline_media_peer_connections", ("connected",))] == 0
    assert after[("careline_visits_active", ())] == 0
    assert after[("careline_visit_participants", ("connected",))] == 0
    # Counters never go back when the sessions that counted them close.
    for counter in ("forwarded", "received"):
        name = f"careline_media_{counter}_frames_total"
        assert after[(name, ())] >= during[(name, ())]
