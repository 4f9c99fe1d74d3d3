"""Fixtures for video visits: a real server gathering ICE on loopback, clips, visit creation."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from careline.loadtest.clips import Clip, video_clip
from careline.loadtest.ice import restrict_host_addresses
from careline.loadtest.visit_client import VisitClient
from careline.signaling.identity import Role
from tests.support import RunningServer, make_settings, running_server


@pytest.fixture(scope="session")
def clip(tmp_path_factory: pytest.TempPathFactory) -> Clip:
    cache = Path(tmp_path_factory.mktemp("clips"))
    return video_clip("vp8", width=320, height=240, bitrate=300_000, seconds=2.0, cache_dir=cache)


@asynccontextmanager
async def visit_server(tmp_path: Path, **overrides: Any) -> AsyncIterator[RunningServer]:
    """A server whose SFU gathers on 127.0.0.1 only, with a 3 s reconnect grace (`overrides`
    are settings by dotted name)."""
    restrict_host_addresses(["127.0.0.1"])
    settings = make_settings(
        tmp_path / "data",
        **{
            "media.host_addresses": ["127.0.0.1"],
            "media.keyframe_interval_seconds": 0.2,
            "visits.reconnect_grace_seconds": 3.0,
            **overrides,
        },
    )
    async with running_server(settings) as running:
        yield running


@pytest.fixture
async def server(tmp_path: Path) -> AsyncIterator[RunningServer]:
    """A server whose SFU gathers on 127.0.0.1 only, with a short reconnect grace."""
    async with visit_server(tmp_path) as running:
        yield running


@dataclass
class CreatedVisit:
    """A visit created over REST, with each invitee's token by kind."""

    visit_id: str
    tokens: dict[str, str]
    participant_ids: dict[str, str]


async def create_visit(server: RunningServer, kinds: list[str], codec: str = "vp8") -> CreatedVisit:
    clinician = server.token(Role.CLINICIAN, "c-1")
    body: dict[str, Any] = {"participants": [{"kind": k} for k in kinds], "codec": codec}
    async with (
        aiohttp.ClientSession() as http,
        http.post(
            server.url + "/api/visits", json=body, headers={"Authorization": f"Bearer {clinician}"}
        ) as response,
    ):
        assert response.status == 201, await response.text()
        created = await response.json()
    tokens = {p["kind"]: p["token"] for p in created["invited"]}
    ids = {p["kind"]: p["participant_id"] for p in created["invited"]}
    return CreatedVisit(created["visit"]["visit_id"], tokens, ids)


async def joined(
    server: RunningServer,
    clients: list[VisitClient],
    token: str,
    visit_id: str,
    clip: Clip | None = None,
    sound: Clip | None = None,
) -> VisitClient:
    """A client connected with `token` that joined the visit (added to `clients`)."""
    client = VisitClient(server.url, token, video=clip, audio=sound)
    clients.append(client)
    await client.connect()
    await client.join(visit_id)
    return client


async def admitted(
    server: RunningServer, clients: list[VisitClient], clip: Clip, kinds: list[str]
) -> tuple[CreatedVisit, VisitClient, VisitClient]:
    """A visit whose clinician admitted the parent, both with media started; `kinds` are the
    other invitees (who have not joined)."""
    visit = await create_visit(server, ["parent", *kinds])
    ids = visit.participant_ids
    doctor = await joined(server, clients, visit.tokens["clinician"], visit.visit_id, clip)
    parent = await joined(server, clients, visit.tokens["parent"], visit.visit_id, clip)
    await doctor.call("visit.admit", {"participant_id": ids["parent"]})
    await doctor.start_media()
    await parent.start_media()
    return visit, doctor, parent


async def in_call(
    server: RunningServer, clients: list[VisitClient], clip: Clip, kinds: list[str]
) -> tuple[CreatedVisit, VisitClient, VisitClient]:
    """As `admitted`, once clinician and parent receive each other's video."""
    visit, doctor, parent = await admitted(server, clients, clip, kinds)
    await doctor.frames_from(visit.participant_ids["parent"], 5)
    await parent.frames_from(visit.participant_ids["clinician"], 5)
    return visit, doctor, parent


@pytest.fixture
async def clients() -> AsyncIterator[list[VisitClient]]:
    """Clients created by a test; all closed at the end."""
    made: list[VisitClient] = []
    yield made
    for client in made:
        await client.close()
