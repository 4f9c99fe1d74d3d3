"""The HTTP surface on a real loopback server: health, metrics, web, errors, token endpoints."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import aiohttp
import pytest

from careline.signaling.identity import Role
from tests.support import RunningServer, make_settings, running_server


async def _call(
    server: RunningServer,
    method: str,
    path: str,
    token: str | None = None,
    **kwargs: Any,
) -> tuple[int, Any]:
    headers = dict(kwargs.pop("headers", {}))
    if token:
        headers["Authorization"] = f"Bearer {token}"
    async with (
        aiohttp.ClientSession() as http,
        http.request(method, server.url + path, headers=headers, **kwargs) as response,
    ):
        body = (
            await response.json()
            if response.content_type == "application/json"
            else (await response.text())
        )
        return response.status, body


async def test_healthz_and_readyz(server: RunningServer) -> None:
    assert await _call(server, "GET", "/healthz") == (200, {"status": "ok", "version": "0.1.0"})
    assert await _call(server, "GET", "/readyz") == (200, {"status": "ready", "store": "sqlite"})


async def test_index_page_is_served_from_web(server: RunningServer) -> None:
    status, body = await _call(server, "GET", "/")
    assert status == 200
    assert "<title>Careline</title>" in body
    status, body = await _call(server, "GET", "/dist/index.js")
    assert status == 200
    assert "readyz" in body


@pytest.mark.parametrize(
    ("path", "title"),
    [
        ("/visit/v-1", "Video visit"),
        ("/threads", "Message visits"),
        ("/threads/t-1", "Message visits"),
        ("/kiosk", "Pharmacist hotline kiosk"),
        ("/pharmacist", "Pharmacist console"),
    ],
)
async def test_pages_are_served_with_security_headers(
    server: RunningServer, path: str, title: str
) -> None:
    async with aiohttp.ClientSession() as session, session.get(server.url + path) as response:
        assert response.status == 200
        body = await response.text()
        assert f"<title>{title} · Careline</title>" in body
        assert response.headers["Referrer-Policy"] == "no-referrer"
        assert "frame-ancestors 'none'" in response.headers["Content-Security-Policy"]
        assert response.headers["Cache-Control"] == "no-cache"
        script = body.split('<script src="')[1].split('"')[0]
    async with aiohttp.ClientSession() as session, session.get(server.url + script) as response:
        assert response.status == 200
        assert response.headers["Content-Type"].startswith(("application/javascript", "text/"))


@pytest.mark.parametrize(
    "path",
    ["/package.json", "/package-lock.json", "/build.mjs", "/src/pages/visit.js", "/__init__.py"],
)
async def test_build_inputs_are_not_served(server: RunningServer, path: str) -> None:
    status, _ = await _call(server, "GET", path)
    assert status == 404


@pytest.mark.parametrize(
    ("method", "path", "status", "code"),
    [
        ("GET", "/no/such/page", 404, "not_found"),
        ("GET", "/../pyproject.toml", 404, "not_found"),
        ("DELETE", "/healthz", 405, "method_not_allowed"),
        ("GET", "/api/tokens", 405, "method_not_allowed"),
        ("GET", "/api/nothing-here", 404, "not_found"),
        ("GET", "/api/session", 401, "auth.missing"),
    ],
)
async def test_errors_are_json(
    server: RunningServer, method: str, path: str, status: int, code: str
) -> None:
    got_status, body = await _call(server, method, path)
    assert got_status == status
    assert body["error"]["code"] == code
    assert body["error"]["message"]


async def test_session_reports_the_caller(server: RunningServer) -> None:
    token = server.token(Role.CLINICIAN, "c-1", visit_id="v-1")
    status, body = await _call(server, "GET", "/api/session", token)
    assert status == 200
    assert body["sub"] == "c-1"
    assert body["role"] == "clinician"
    assert body["visit_id"] == "v-1"


async def test_tampered_bearer_is_refused(server: RunningServer) -> None:
    token = server.token(Role.PARENT, "p-1")
    tampered = token[:-4] + ("AAAA" if not token.endswith("AAAA") else "BBBB")
    status, body = await _call(server, "GET", "/api/session", tampered)
    assert status == 401
    assert body["error"]["code"] == "auth.bad_signature"


async def test_admin_mints_tokens_others_cannot(server: RunningServer) -> None:
    admin = server.token(Role.ADMIN, "admin-1")
    status, body = await _call(
        server,
        "POST",
        "/api/tokens",
        admin,
        json={"sub": "p-9", "role": "parent", "visit_id": "v-9", "ttl_seconds": 120},
    )
    assert status == 201
    assert body["token_id"]
    status, me = await _call(server, "GET", "/api/session", body["token"])
    assert (status, me["sub"], me["role"], me["visit_id"]) == (200, "p-9", "parent", "v-9")

    parent = server.token(Role.PARENT, "p-1")
    status, body = await _call(
        server, "POST", "/api/tokens", parent, json={"sub": "x", "role": "admin"}
    )
    assert (status, body["error"]["code"]) == (403, "forbidden")


@pytest.mark.parametrize(
    "payload",
    [
        b"{not json",
        b'{"sub": "p-1"}',
        b'{"sub": "p-1", "role": "emperor"}',
        b'{"sub": "p 1", "role": "parent"}',
        b'{"sub": "p-1", "role": "parent", "extra": 1}',
        b'{"sub": "p-1", "role": "parent", "ttl_seconds": 0}',
        b'{"sub": "p-1", "role": "parent", "ttl_seconds": 999999999}',
        b'{"sub": "p-1", "role": "parent", "visit_id": "v", "thread_id": "t"}',
        b"[]",
    ],
)
async def test_bad_bodies_get_invalid_payload(server: RunningServer, payload: bytes) -> None:
    admin = server.token(Role.ADMIN, "admin-1")
    status, body = await _call(
        server,
        "POST",
        "/api/tokens",
        admin,
        data=payload,
        headers={"Content-Type": "application/json"},
    )
    assert status == 400
    assert body["error"]["code"] == "invalid_payload"


async def test_oversized_body_is_refused(tmp_path: Path) -> None:
    async with running_server(make_settings(tmp_path, **{"server.max_body_bytes": 2048})) as small:
        admin = small.token(Role.ADMIN, "admin-1")
        status, body = await _call(small, "POST", "/api/tokens", admin, data=b"x" * 4096)
        assert (status, body["error"]["code"]) == (413, "payload_too_large")
        # The server goes on serving.
        assert (await _call(small, "GET", "/healthz"))[0] == 200


async def test_revoke_token_and_subject(server: RunningServer) -> None:
    admin = server.token(Role.ADMIN, "admin-1")
    status, minted = await _call(
        server, "POST", "/api/tokens", admin, json={"sub": "k-1", "role": "kiosk"}
    )
    assert status == 201
    status, _ = await _call(
        server, "POST", "/api/tokens/revoke", admin, json={"token_id": minted["token_id"]}
    )
    assert status == 200
    status, body = await _call(server, "GET", "/api/session", minted["token"])
    assert (status, body["error"]["code"]) == (401, "auth.revoked")

    other = server.token(Role.PARENT, "p-5", visit_id="v-5")
    status, _ = await _call(
        server, "POST", "/api/tokens/revoke", admin, json={"sub": "p-5", "scope": "v-5"}
    )
    assert status == 200
    status, body = await _call(server, "GET", "/api/session", other)
    assert (status, body["error"]["code"]) == (401, "auth.revoked")

    status, body = await _call(server, "POST", "/api/tokens/revoke", admin, json={})
    assert (status, body["error"]["code"]) == (400, "invalid_payload")


async def test_metrics_count_requests_without_ids(server: RunningServer) -> None:
    await _call(server, "GET", "/healthz")
    await _call(server, "GET", "/api/session", "bad-token")
    status, text = await _call(server, "GET", "/metrics")
    assert status == 200
    assert 'careline_http_requests_total{method="GET",route="/healthz",status="200"}' in text
    assert 'careline_http_auth_failures_total{code="auth.malformed"}' in text
    assert 'careline_build_info{version="0.1.0"}' in text
    assert "bad-token" not in text
