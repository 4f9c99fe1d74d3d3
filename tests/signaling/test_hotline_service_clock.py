"""The HotlineService's timers driven by a fake clock: no sleeping, one `tick()` at a time.

The store is a real SQLite database; the socket channel and the media gateway are recording
fakes (the edges these tests do not exercise); time is the only thing mocked.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest

from careline.server.order_tokens import OrderTokens
from careline.server.storage.sqlite_storage import SqliteStorage
from careline.signaling.hotline_service import HotlineConfig, HotlineService
from careline.signaling.identity import Principal, Role
from careline.signaling.kiosk_registry import KioskRegistry
from careline.signaling.media_gateway import MediaOffer, MediaStats
from careline.signaling.media_router import MediaRouter

KEY = "k" * 40


class Clock:
    def __init__(self) -> None:
        self.now = 1_000_000.0

    def __call__(self) -> float:
        return self.now


class Channel:
    """Records every emit as (event, data, to)."""

    def __init__(self) -> None:
        self.sent: list[tuple[str, Any, str]] = []

    async def emit(self, event: str, data: Any, to: str) -> None:
        self.sent.append((event, data, to))

    async def enter_room(self, sid: str, room: str) -> None:
        """Rooms are not needed here."""

    async def disconnect(self, sid: str) -> None:
        self.sent.append(("disconnect", None, sid))

    def to(self, sid: str, event: str) -> list[Any]:
        return [data for name, data, to in self.sent if name == event and to == sid]


class Media:
    """A media plane that opens nothing."""

    async def open_session(self, room_id: str, session_id: str, video_codec: str) -> MediaOffer:
        return MediaOffer(sdp="v=0", tracks=(), publish={})

    async def accept_answer(self, session_id: str, sdp: str) -> None:
        """Nothing to apply."""

    async def close_session(self, session_id: str) -> None:
        """Nothing to close."""

    async def stats(self, session_id: str) -> MediaStats | None:
        return None


class NoListener:
    def media_offer(self, session_id: str, offer: MediaOffer) -> None:
        """Ignore."""

    def media_tracks(self, session_id: str, tracks: Any) -> None:
        """Ignore."""

    def media_state(self, session_id: str, state: str) -> None:
        """Ignore."""


def principal(role: Role, sub: str) -> Principal:
    return Principal(sub=sub, role=role, token_id=f"t-{sub}", expires_at=2e9)


class Rig:
    def __init__(
        self, service: HotlineService, kiosks: KioskRegistry, clock: Clock, channel: Channel
    ) -> None:
        self.service, self.kiosks, self.clock, self.channel = service, kiosks, clock, channel
        self.orders = OrderTokens(
            KEY, issuer="careline", audience="careline", leeway=0, clock=clock
        )

    async def kiosk(self, kiosk_id: str) -> Principal:
        admin = principal(Role.ADMIN, "admin")
        await self.kiosks.register(admin, kiosk_id, None, ())
        who = principal(Role.KIOSK, kiosk_id)
        await self.service.connected(f"sid-{kiosk_id}", who)
        return who

    async def pharmacist(self, sub: str) -> Principal:
        who = principal(Role.PHARMACIST, sub)
        await self.service.connected(f"sid-{sub}", who)
        await self.service.choose_presence(who, f"sid-{sub}", "available")
        return who

    def order(self) -> str:
        return self.orders.issue("ord-1", 600).token

    async def later(self, seconds: float) -> None:
        self.clock.now += seconds
        await self.service.tick()


@pytest.fixture
async def rig(tmp_path: Path) -> AsyncIterator[Rig]:
    clock, channel = Clock(), Channel()
    storage = SqliteStorage(tmp_path / "hotline.sqlite3")
    await storage.open()
    config = HotlineConfig(
        ring_timeout_seconds=20.0,
        wrap_up_seconds=30.0,
        reconnect_grace_seconds=30.0,
        callback_after_seconds=300.0,
        position_update_seconds=5.0,
    )
    kiosks = KioskRegistry(storage.hotline, clock)
    service = HotlineService(
        storage.hotline,
        storage.audit,
        kiosks,
        OrderTokens(KEY, issuer="careline", audience="careline", leeway=0, clock=clock),
        Media(),
        MediaRouter(fallback=NoListener()),
        config,
        ice_servers=lambda sub: [],
        clock=clock,
    )
    service.bind(channel)
    try:
        yield Rig(service, kiosks, clock, channel)
    finally:
        await service.close()
        await storage.close()


async def test_ring_timeout_wrap_up_and_auto_pause_follow_the_clock(rig: Rig) -> None:
    kiosk = await rig.kiosk("k-1")
    pharmacist = await rig.pharmacist("ph-1")
    call = await rig.service.place_call(kiosk, "sid-k-1", rig.order())
    await rig.service.dispatch()
    assert len(rig.channel.to("sid-ph-1", "hotline.offer")) == 1
    await rig.later(19.9)
    assert rig.channel.to("sid-ph-1", "hotline.offer_withdrawn") == []
    await rig.later(0.2)
    assert rig.channel.to("sid-ph-1", "hotline.offer_withdrawn") == [
        {"call_id": call.call_id, "reason": "ring_timeout"}
    ]
    presence = rig.channel.to("sid-ph-1", "hotline.presence")[-1]
    assert (presence.state, presence.reason) == ("away", "ring_timeout")
    # Back from the pause, they get it again, answer, hang up: wrap-up ends after 30 s.
    await rig.service.choose_presence(pharmacist, "sid-ph-1", "available")
    await rig.service.dispatch()
    await rig.service.accept(pharmacist, "sid-ph-1", call.call_id)
    await rig.later(60.0)
    await rig.service.hang_up(pharmacist, "sid-ph-1")
    await rig.later(29.0)
    assert rig.channel.to("sid-ph-1", "hotline.presence")[-1].state == "wrap_up"
    await rig.later(1.5)
    assert rig.channel.to("sid-ph-1", "hotline.presence")[-1].state == "available"
    stats = await rig.service.stats()
    assert stats.answered == 1
    assert stats.asa_seconds == pytest.approx(20.1, abs=0.01)
    assert stats.average_handle_seconds == pytest.approx(60.0 + 30.0)


async def test_grace_callback_offer_and_position_updates_follow_the_clock(rig: Rig) -> None:
    first = await rig.kiosk("k-1")
    second = await rig.kiosk("k-2")
    await rig.service.place_call(first, "sid-k-1", rig.order())
    rig.clock.now += 0.1
    placed = await rig.service.place_call(second, "sid-k-2", rig.order())
    assert placed.position == 2
    assert placed.estimated_wait_seconds is None  # nobody staffed
    await rig.later(5.0)
    assert rig.channel.to("sid-k-2", "hotline.position") == []  # unchanged since the ack
    await rig.service.disconnected("sid-k-1")
    await rig.later(29.0)
    await rig.later(1.5)  # the first kiosk's grace is over: its call is abandoned
    assert [p.position for p in rig.channel.to("sid-k-2", "hotline.position")] == [1]
    await rig.later(1.0)
    assert len(rig.channel.to("sid-k-2", "hotline.position")) == 1  # not repeated
    await rig.later(300.0)
    offers = rig.channel.to("sid-k-2", "hotline.callback_offer")
    assert [o["call_id"] for o in offers] == [placed.call_id]
    taken = await rig.service.take_callback(second, "sid-k-2")
    assert taken.state == "callback"
    stats = await rig.service.stats()
    assert (stats.abandoned, stats.callbacks, stats.queue_length) == (1, 1, 0)
