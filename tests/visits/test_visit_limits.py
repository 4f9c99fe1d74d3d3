"""How many people a visit may invite: `[visits] max_participants` under a hard schema cap."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import aiohttp
import pytest

from careline.server.errors import SettingsError
from careline.server.settings import load_settings
from careline.signaling.identity import Role
from careline.signaling.visit_schemas import MAX_INVITEES
from tests.support import RunningServer, make_settings, running_server


async def post_visit(server: RunningServer, invitees: int) -> tuple[int, dict[str, Any]]:
    clinician = server.token(Role.CLINICIAN, "c-1")
    kinds = ("parent", "second_parent", "interpreter")
    body = {"participants": [{"kind": kinds[i % len(kinds)]} for i in range(invitees)]}
    async with (
        aiohttp.ClientSession() as http,
        http.post(
            server.url + "/api/visits", json=body, headers={"Authorization": f"Bearer {clinician}"}
        ) as response,
    ):
        reply: dict[str, Any] = await response.json()
        return response.status, reply


async def test_the_default_allows_eight_invitees_and_refuses_nine(server: RunningServer) -> None:
    assert server.settings.visits.max_participants == 8
    status, created = await post_visit(server, 8)
    assert status == 201
    assert len(created["invited"]) == 9  # the creating clinician joins on top

    status, refused = await post_visit(server, 9)
    assert status == 400
    assert refused["error"]["code"] == "visit.too_many_participants"
    assert "at most 8" in refused["error"]["message"]


async def test_a_deployment_may_allow_large_visits(tmp_path: Path) -> None:
    settings = make_settings(tmp_path / "data", **{"visits.max_participants": 128})
    async with running_server(settings) as server:
        status, created = await post_visit(server, 128)
        assert status == 201
        assert len(created["invited"]) == 129
        assert len({p["token"] for p in created["invited"]}) == 129

        status, refused = await post_visit(server, 129)
        assert status == 400
        assert refused["error"]["code"] == "visit.too_many_participants"


async def test_a_smaller_limit_is_enforced_too(tmp_path: Path) -> None:
    settings = make_settings(tmp_path / "data", **{"visits.max_participants": 2})
    async with running_server(settings) as server:
        status, refused = await post_visit(server, 3)
        assert status == 400
        assert refused["error"]["code"] == "visit.too_many_participants"
        status, created = await post_visit(server, 2)
        assert status == 201
        assert [p["kind"] for p in created["invited"]] == ["clinician", "parent", "second_parent"]


async def test_the_hard_cap_is_a_schema_error(tmp_path: Path) -> None:
    settings = make_settings(tmp_path / "data", **{"visits.max_participants": MAX_INVITEES})
    async with running_server(settings) as server:
        status, refused = await post_visit(server, MAX_INVITEES + 1)
        assert status == 400
        assert refused["error"]["code"] == "invalid_payload"


def test_the_setting_is_bounded_and_read_from_the_environment() -> None:
    env = {"CARELINE_VISITS_MAX_PARTICIPANTS": "128"}
    assert load_settings(env=env).visits.max_participants == 128
    for bad in ("0", str(MAX_INVITEES + 1), "many"):
        with pytest.raises(SettingsError, match=r"visits\.max_participants"):
            load_settings(env={"CARELINE_VISITS_MAX_PARTICIPANTS": bad})
