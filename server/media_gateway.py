"""signaling's MediaGateway implemented over media.Sfu (the only place the two meet)."""

from __future__ import annotations

import dataclasses
import time
from collections import Counter
from collections.abc import Callable, Mapping
from dataclasses import dataclass

from careline.media.errors import MediaError
from careline.media.peer_session import PeerSession
from careline.media.sfu import IceServer, Offer, Sfu, SfuConfig, TrackMap
from careline.server.settings import MediaSettings
from careline.signaling.errors import MediaRefused
from careline.signaling.media_gateway import MediaListener, MediaOffer, MediaStats, TrackInfo


@dataclass(slots=True)
class _Sample:
    at: float
    bytes_in: int


@dataclass(slots=True)
class _Counts:
    frames_in: int = 0
    frames_forwarded: int = 0
    frames_dropped: int = 0
    keyframe_requests: int = 0

    def add(self, session: PeerSession) -> None:
        for publication in session.publications.values():
            self.frames_in += publication.frames_in
            self.keyframe_requests += publication.keyframes_requested
        for slot in session.slots:
            self.frames_forwarded += slot.track.stats.forwarded
            self.frames_dropped += slot.track.stats.dropped


@dataclass(frozen=True, slots=True)
class MediaTotals:
    """Aggregate media counters of this process for /metrics: no ids, bounded label values.

    The frame counters only grow: sessions that closed are folded into them when they close.
    """

    #: open peer connections by aiortc connection state (new, connecting, connected, ...)
    peer_connections: Mapping[str, int]
    #: inbound tracks being forwarded, by kind (audio, video)
    published_tracks: Mapping[str, int]
    frames_received: int
    frames_forwarded: int
    frames_dropped: int
    keyframe_requests: int
    #: subscriber slots bound to a publication (one forwarded stream each)
    forwarded_streams: int = 0


class SfuGateway:
    """Adapts Sfu to MediaGateway: primitive arguments in, signaling types and errors out."""

    def __init__(
        self,
        media: MediaSettings,
        listener: MediaListener | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        servers = tuple(IceServer(urls=(url,)) for url in media.stun_urls)
        config = SfuConfig(
            ice_servers=servers,
            keyframe_interval=media.keyframe_interval_seconds,
            video_queue_frames=media.video_queue_frames,
            forwarding=media.forwarding,
        )
        self._listener = listener
        self._clock = clock
        self._samples: dict[str, _Sample] = {}
        self._open: set[str] = set()
        self._retired = _Counts()
        self.sfu = Sfu(config, self)

    def bind(self, listener: MediaListener) -> None:
        """Set the listener (the visit service is built after the gateway)."""
        self._listener = listener

    async def open_session(self, room_id: str, session_id: str, video_codec: str) -> MediaOffer:
        """Open a peer session (replacing one with that id); MediaRefused if it is refused."""
        await self.close_session(session_id)  # a restart: the old connection's counts are kept
        try:
            offer = await self.sfu.open_session(room_id, session_id, video_codec)
        except MediaError as exc:
            raise MediaRefused(exc.message, code=exc.code) from None
        self._open.add(session_id)
        return _offer(offer)

    async def accept_answer(self, session_id: str, sdp: str) -> None:
        """Apply a client's answer; MediaRefused (media.bad_sdp, ...) if it is refused."""
        try:
            await self.sfu.accept_answer(session_id, sdp)
        except MediaError as exc:
            raise MediaRefused(exc.message, code=exc.code) from None

    async def close_session(self, session_id: str) -> None:
        """Close a session (idempotent)."""
        session = self._retire(session_id)
        await self.sfu.close_session(session_id)
        if session is not None:
            self._retired.add(session)  # its final counts

    def _retire(self, session_id: str) -> PeerSession | None:
        """Forget a session's samples; the session if it is open (about to close)."""
        self._samples.pop(session_id, None)
        self._open.discard(session_id)
        return self.sfu.session(session_id) if self.sfu.has_session(session_id) else None

    def totals(self) -> MediaTotals:
        """Aggregate counters of every session this process has had (cheap: no getStats)."""
        counts = dataclasses.replace(self._retired)
        states: Counter[str] = Counter()
        kinds: Counter[str] = Counter()
        forwarded = 0
        for session_id in self._open:
            if not self.sfu.has_session(session_id):
                continue
            session = self.sfu.session(session_id)
            counts.add(session)
            states[session.connection_state] += 1
            kinds.update(p.kind for p in session.publications.values() if not p.ended)
            forwarded += sum(1 for slot in session.slots if slot.publication is not None)
        return MediaTotals(
            peer_connections=states,
            published_tracks=kinds,
            frames_received=counts.frames_in,
            frames_forwarded=counts.frames_forwarded,
            frames_dropped=counts.frames_dropped,
            keyframe_requests=counts.keyframe_requests,
            forwarded_streams=forwarded,
        )

    async def stats(self, session_id: str) -> MediaStats | None:
        """Counters of one session, with inbound bitrate since the previous call."""
        if not self.sfu.has_session(session_id):
            return None
        session = self.sfu.session(session_id)
        frames_in = sum(p.frames_in for p in session.publications.values())
        bytes_in = sum(p.bytes_in for p in session.publications.values())
        forwarded = sum(s.track.stats.forwarded for s in session.slots)
        dropped = sum(s.track.stats.dropped for s in session.slots)
        now = self._clock()
        previous = self._samples.get(session_id)
        self._samples[session_id] = _Sample(now, bytes_in)
        bitrate = 0.0
        if previous is not None and now > previous.at:
            bitrate = (bytes_in - previous.bytes_in) * 8 / 1000 / (now - previous.at)
        loss, rtt = await _loss_and_rtt(session.peer_connection)
        state = session.connection_state
        return MediaStats(
            state=state,
            frames_in=frames_in,
            frames_forwarded=forwarded,
            frames_dropped=dropped,
            bitrate_in_kbps=round(bitrate, 1),
            packet_loss=round(loss, 4),
            rtt_ms=None if rtt is None else round(rtt * 1000, 1),
            quality=network_quality(state, loss, rtt),
        )

    async def close(self) -> None:
        """Close every session (at shutdown)."""
        await self.sfu.close()

    # SfuEvents
    def offer(self, session_id: str, offer: Offer) -> None:
        """Forward a renegotiation offer to the listener."""
        if self._listener is not None:
            self._listener.media_offer(session_id, _offer(offer))

    def tracks(self, session_id: str, tracks: TrackMap) -> None:
        """Forward a track remapping to the listener."""
        if self._listener is not None:
            self._listener.media_tracks(session_id, _tracks(tracks))

    def state(self, session_id: str, state: str) -> None:
        """Forward a connection state change to the listener."""
        if self._listener is not None:
            self._listener.media_state(session_id, state)


def network_quality(state: str, loss: float, rtt: float | None) -> int:
    """0 (no connection) to 5 (excellent), from loss ratio and round-trip time in seconds."""
    if state != "connected":
        return 0
    rtt = 0.0 if rtt is None else rtt
    for level, max_loss, max_rtt in ((5, 0.01, 0.1), (4, 0.02, 0.2), (3, 0.05, 0.3), (2, 0.1, 0.5)):
        if loss <= max_loss and rtt <= max_rtt:
            return level
    return 1


async def _loss_and_rtt(pc: object) -> tuple[float, float | None]:
    """Inbound loss ratio and the mean round-trip time reported by the client's receiver reports."""
    get_stats = getattr(pc, "getStats", None)
    if get_stats is None:
        return 0.0, None
    report = await get_stats()
    received = lost = 0
    rtts: list[float] = []
    for stat in report.values():
        kind = getattr(stat, "type", "")
        if kind == "inbound-rtp":
            received += int(getattr(stat, "packetsReceived", 0) or 0)
            lost += max(0, int(getattr(stat, "packetsLost", 0) or 0))
        elif kind == "remote-inbound-rtp":
            rtt = getattr(stat, "roundTripTime", None)
            if rtt is not None:
                rtts.append(float(rtt))
    total = received + lost
    return (lost / total if total else 0.0), (sum(rtts) / len(rtts) if rtts else None)


def _tracks(tracks: TrackMap) -> tuple[TrackInfo, ...]:
    return tuple(
        TrackInfo(mid=mid, publisher=publisher, kind=kind)
        for mid, (publisher, kind) in sorted(tracks.items(), key=lambda item: int(item[0]))
    )


def _offer(offer: Offer) -> MediaOffer:
    return MediaOffer(sdp=offer.sdp, tracks=_tracks(offer.tracks), publish=dict(offer.publish))
