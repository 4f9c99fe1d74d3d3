"""Bad input on the hotline: wrong roles, bad order codes, double calls, stolen offers, registry."""

from __future__ import annotations

import time

import jwt
import pytest

from careline.loadtest.hotline_client import HotlineClient, HotlineError
from careline.signaling.identity import Role
from tests.hotline.conftest import Hotline, order_token
from tests.support import eventually


async def connect_refused(hotline: Hotline, token: str) -> str:
    client = HotlineClient(hotline.url, token)
    hotline.clients.append(client)
    with pytest.raises(HotlineError) as refused:
        await client.connect()
    return refused.value.code


async def test_only_registered_kiosks_and_pharmacists_connect(hotline: Hotline) -> None:
    for role in (Role.PARENT, Role.CLINICIAN, Role.ADMIN):
        assert await connect_refused(hotline, hotline.server.token(role, "x-1")) == (
            "hotline.forbidden"
        )
    unregistered = hotline.server.token(Role.KIOSK, "k-nobody")
    assert await connect_refused(hotline, unregistered) == "hotline.unknown_kiosk"
    order = hotline.order()  # an order code is not an access token
    assert (await connect_refused(hotline, order)).startswith("auth.")


async def test_a_kiosk_token_cannot_act_as_a_pharmacist_and_vice_versa(hotline: Hotline) -> None:
    kiosk = await hotline.kiosk("k-1")
    pharmacist = await hotline.pharmacist("ph-1", available=False)
    assert await kiosk.error("hotline.presence", {"state": "available"}) == "hotline.forbidden"
    assert await kiosk.error("hotline.accept", {"call_id": "hc-x"}) == "hotline.forbidden"
    assert await pharmacist.error("hotline.call", {"order_token": hotline.order()}) == (
        "hotline.forbidden"
    )
    assert await pharmacist.error("hotline.callback") == "hotline.forbidden"
    status, body = await hotline.rest(
        "GET", "/api/hotline/stats", token=hotline.server.token(Role.KIOSK, "k-1")
    )
    assert (status, body["error"]["code"]) == (403, "forbidden")
    assert await kiosk.error("hotline.nope") == "unknown_event"
    assert await pharmacist.error("hotline.accept", {"call_id": "bad id!"}) == "invalid_payload"
    assert await pharmacist.error("hotline.presence", {"state": "busy"}) == "invalid_payload"


async def test_expired_tampered_and_foreign_order_codes_are_refused(hotline: Hotline) -> None:
    kiosk = await hotline.kiosk("k-1")
    good = hotline.order()
    header, payload, signature = good.split(".")
    tampered = f"{header}.{payload}.{signature[:-4]}AAAA"
    expired = order_token(hotline.settings, "ord-old", ttl=1)
    claims = jwt.decode(expired, options={"verify_signature": False})
    assert claims["kind"] == "order"
    forged = jwt.encode({**claims, "exp": int(time.time()) + 600}, "not-the-key" * 4)
    access = hotline.server.token(Role.KIOSK, "k-1")
    # The leeway (30 s) keeps a just-expired token alive: sign one that expired long ago.
    stale = jwt.encode(
        {**claims, "exp": int(time.time()) - 120, "iat": int(time.time()) - 200},
        hotline.settings.hotline.order_secret,
    )
    for token, code in (
        (tampered, "hotline.order_invalid"),
        (forged, "hotline.order_invalid"),
        (access, "hotline.order_invalid"),
        ("not a jwt", "hotline.order_invalid"),
        (stale, "hotline.order_expired"),
    ):
        assert await kiosk.error("hotline.call", {"order_token": token}) == code, token
    assert await kiosk.error("hotline.call", {}) == "invalid_payload"
    stats = (await hotline.rest("GET", "/api/hotline/stats"))[1]
    assert stats["calls"] == 0  # nothing was queued by a refused call


async def test_a_kiosk_calling_twice_is_refused(hotline: Hotline) -> None:
    kiosk = await hotline.kiosk("k-1")
    first = await kiosk.place_call(hotline.order())
    assert await kiosk.error("hotline.call", {"order_token": hotline.order()}) == (
        "hotline.already_calling"
    )
    resumed = await kiosk.call("hotline.resume")
    assert resumed["call"]["call_id"] == first["call_id"]
    assert resumed["call"]["position"] == 1


async def test_accepting_a_call_not_offered_or_unknown(hotline: Hotline) -> None:
    kiosk = await hotline.kiosk("k-1")
    pharmacist = await hotline.pharmacist("ph-1", available=False)
    call = await kiosk.place_call(hotline.order())
    assert await pharmacist.error("hotline.accept", {"call_id": call["call_id"]}) == (
        "hotline.not_offered"
    )
    assert await pharmacist.error("hotline.decline", {"call_id": call["call_id"]}) == (
        "hotline.not_offered"
    )
    assert await pharmacist.error("hotline.accept", {"call_id": "hc-none"}) == (
        "hotline.call_not_found"
    )
    assert await pharmacist.error("hotline.end") == "hotline.no_call"
    assert await pharmacist.error("media.start") == "hotline.no_call"
    assert await kiosk.error("media.start") == "hotline.not_connected"
    await kiosk.call("hotline.end")
    assert await kiosk.error("hotline.end") == "hotline.no_call"


async def test_kiosk_registry_secrets_and_admin_only(hotline: Hotline) -> None:
    kiosk_id, secret = await hotline.register_kiosk("k-9", skills=("licence:CA",))
    for body in ({"secret": secret + "x"}, {"secret": "nope"}):
        status, reply = await hotline.rest("POST", f"/api/kiosks/{kiosk_id}/token", body, token="")
        assert (status, reply["error"]["code"]) == (401, "hotline.bad_kiosk_secret")
    status, reply = await hotline.rest("POST", "/api/kiosks/k-404/token", {"secret": secret}, "")
    assert (status, reply["error"]["code"]) == (401, "hotline.bad_kiosk_secret")
    status, reply = await hotline.rest("POST", "/api/kiosks", {"kiosk_id": "k-9"})
    assert (status, reply["error"]["code"]) == (409, "hotline.kiosk_exists")
    pharmacist = hotline.server.token(Role.PHARMACIST, "ph-1")
    status, reply = await hotline.rest("POST", "/api/kiosks", {}, token=pharmacist)
    assert (status, reply["error"]["code"]) == (403, "hotline.forbidden")
    status, reply = await hotline.rest("GET", f"/api/kiosks/{kiosk_id}")
    assert status == 200
    assert "secret" not in reply
    assert (reply["skills"], reply["enabled"]) == (["licence:CA"], True)
    status, reply = await hotline.rest("POST", "/api/kiosks", {})
    assert status == 201
    assert reply["kiosk"]["kiosk_id"].startswith("k-")
    status, reply = await hotline.rest("POST", "/api/kiosks", {"skills": ["bad skill"]})
    assert (status, reply["error"]["code"]) == (400, "invalid_payload")


async def test_disabling_a_kiosk_ends_its_call_and_refuses_its_tokens(hotline: Hotline) -> None:
    kiosk_id = "k-1"
    token, secret = await hotline.registered_kiosk(kiosk_id)
    kiosk = await hotline.connect(token)
    pharmacist = await hotline.pharmacist("ph-1")
    call = await kiosk.place_call(hotline.order())
    await pharmacist.wait_event("hotline.offer")

    status, reply = await hotline.rest("POST", f"/api/kiosks/{kiosk_id}/disable")
    assert status == 200
    assert reply["kiosk"]["enabled"] is False
    assert (reply["ended_call"]["state"], reply["ended_call"]["end_reason"]) == (
        "abandoned",
        "kiosk_disabled",
    )
    await kiosk.wait_event("hotline.disabled")
    await eventually(lambda: not kiosk.sio.connected)
    await pharmacist.wait_event("hotline.offer_withdrawn")
    assert await connect_refused(hotline, token) == "hotline.kiosk_disabled"
    status, reply = await hotline.rest(
        "POST", f"/api/kiosks/{kiosk_id}/token", {"secret": secret}, token=""
    )
    assert (status, reply["error"]["code"]) == (403, "hotline.kiosk_disabled")
    assert (await hotline.record(call["call_id"]))["call"]["state"] == "abandoned"

    status, _ = await hotline.rest("POST", f"/api/kiosks/{kiosk_id}/enable")
    assert status == 200
    again = await hotline.connect(await hotline.kiosk_token(kiosk_id, secret))
    await again.place_call(hotline.order())
