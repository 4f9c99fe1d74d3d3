"""The video-visit REST endpoints: who may create, read and audit a visit, and what they get."""

from __future__ import annotations

from typing import Any

import aiohttp

from careline.signaling.identity import Role
from tests.support import RunningServer
from tests.visits.conftest import create_visit


async def call(
    server: RunningServer, method: str, path: str, token: str | None, body: Any = None
) -> tuple[int, Any]:
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    async with (
        aiohttp.ClientSession() as http,
        http.request(method, server.url + path, json=body, headers=headers) as response,
    ):
        return response.status, await response.json()


async def test_create_answers_the_visit_and_a_scoped_link_per_invitee(
    server: RunningServer,
) -> None:
    clinician = server.token(Role.CLINICIAN, "c-1")
    body = {"participants": [{"kind": "parent", "sub": "fam-7"}, {"kind": "interpreter"}]}
    status, created = await call(server, "POST", "/api/visits", clinician, body)
    assert status == 201
    visit = created["visit"]
    assert visit["state"] == "scheduled"
    assert visit["codec"] == "vp8"  # visits.default_codec
    assert visit["ended_at"] is None
    assert [p["kind"] for p in visit["participants"]] == ["clinician", "parent", "interpreter"]
    assert {p["state"] for p in visit["participants"]} == {"invited"}
    invited = created["invited"]
    assert [i["sub"] for i in invited][:2] == ["c-1", "fam-7"]
    assert invited[2]["sub"].startswith("guest-")
    for invitee in invited:
        assert invitee["link"] == f"/visit/{visit['visit_id']}?token={invitee['token']}"
        status, session = await call(server, "GET", "/api/session", invitee["token"])
        assert status == 200
        assert session["visit_id"] == visit["visit_id"]
        assert session["role"] == ("clinician" if invitee["kind"] == "clinician" else "parent")


async def test_only_clinicians_and_admins_create_visits(server: RunningServer) -> None:
    body = {"participants": [{"kind": "parent"}], "codec": "h264"}
    status, created = await call(
        server, "POST", "/api/visits", server.token(Role.ADMIN, "a-1"), body
    )
    assert status == 201
    assert created["visit"]["codec"] == "h264"
    assert [p["kind"] for p in created["visit"]["participants"]] == ["parent"]  # admins stay out
    for role in (Role.PARENT, Role.KIOSK, Role.PHARMACIST):
        status, refused = await call(server, "POST", "/api/visits", server.token(role, "x-1"), body)
        assert (status, refused["error"]["code"]) == (403, "forbidden")
    status, refused = await call(server, "POST", "/api/visits", None, body)
    assert (status, refused["error"]["code"]) == (401, "auth.missing")


async def test_bad_create_bodies_are_refused(server: RunningServer) -> None:
    clinician = server.token(Role.CLINICIAN, "c-1")
    bodies: list[dict[str, Any]] = [
        {},
        {"participants": []},
        {"participants": [{"kind": "surgeon"}]},
        {"participants": [{"kind": "parent"}], "codec": "av1"},
        {"participants": [{"kind": "parent", "sub": "has spaces"}]},
        {"participants": [{"kind": "parent"}], "extra": 1},
    ]
    for body in bodies:
        status, refused = await call(server, "POST", "/api/visits", clinician, body)
        assert (status, refused["error"]["code"]) == (400, "invalid_payload"), body
    twice = {
        "participants": [{"kind": "parent", "sub": "f-1"}, {"kind": "interpreter", "sub": "f-1"}]
    }
    status, refused = await call(server, "POST", "/api/visits", clinician, twice)
    assert (status, refused["error"]["code"]) == (409, "conflict")


async def test_who_sees_a_visit(server: RunningServer) -> None:
    visit = await create_visit(server, ["parent", "interpreter"])
    path = f"/api/visits/{visit.visit_id}"
    for token in (visit.tokens["clinician"], server.token(Role.ADMIN, "a-1")):
        status, seen = await call(server, "GET", path, token)
        assert status == 200
        assert len(seen["participants"]) == 3
    # A family member sees the visit and only itself.
    status, seen = await call(server, "GET", path, visit.tokens["parent"])
    assert status == 200
    assert [p["participant_id"] for p in seen["participants"]] == [visit.participant_ids["parent"]]
    # Anyone else: as if there were no such visit.
    other = await create_visit(server, ["parent"])
    for token in (
        other.tokens["parent"],
        server.token(Role.CLINICIAN, "c-2"),
        server.token(Role.PARENT, "fam-x", visit_id=visit.visit_id),
    ):
        status, refused = await call(server, "GET", path, token)
        assert (status, refused["error"]["code"]) == (404, "not_found")
    status, refused = await call(server, "GET", "/api/visits/v-nothing", visit.tokens["clinician"])
    assert (status, refused["error"]["code"]) == (404, "not_found")


async def test_the_audit_trail_is_for_clinicians_and_admins(server: RunningServer) -> None:
    visit = await create_visit(server, ["parent"])
    path = f"/api/visits/{visit.visit_id}/audit"
    for token in (visit.tokens["clinician"], server.token(Role.ADMIN, "a-1")):
        status, audit = await call(server, "GET", path, token)
        assert status == 200
        [created] = audit["events"]
        assert created["seq"] == 1
        assert created["action"] == "created"
        assert created["actor"] == "c-1"
        assert created["detail"] == {"invited": 2}
    status, refused = await call(server, "GET", path, visit.tokens["parent"])
    assert (status, refused["error"]["code"]) == (403, "forbidden")
    status, page = await call(server, "GET", path + "?after_seq=1", visit.tokens["clinician"])
    assert (status, page) == (200, {"events": []})
    for query in ("?after_seq=-1", "?limit=0", "?limit=x", "?after_seq=1.5"):
        status, refused = await call(server, "GET", path + query, visit.tokens["clinician"])
        assert (status, refused["error"]["code"]) == (400, "invalid_payload"), query
