"""Fixtures for video visits: a real server gathering ICE on loopback, clips, visit creation."""

from __future__ import annotations

from collections.abc import AsyncIterator
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


@pytest.fixture
async def server(tmp_path: Path) -> AsyncIterator[RunningServer]:
    """A server whose SFU gathers on 127.0.0.1 only, with a short reconnect grace."""
    restrict_host_addresses(["127.0.0.1"])
    settings = make_settings(
        tmp_path / "data",
        **{
            "media.host_addresses": ["127.0.0.1"],
            "media.keyframe_interval_seconds": 0.2,
            "visits.reconnect_grace_seconds": 3.0,
        },
    )
    async with running_server(settings) as running:
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


@pytest.fixture
async def clients() -> AsyncIterator[list[VisitClient]]:
    """Clients created by a test; all closed at the end."""
    made: list[VisitClient] = []
    yield made
    for client in made:
        await client.close()
