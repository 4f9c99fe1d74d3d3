"""One participant's RTCPeerConnection with the server: its publications and its subscriber slots.

The server is always the offerer. The first offer has one receive-only audio and video
transceiver (the participant's camera and microphone) plus a send-only slot for every track it
should see; later offers add slots when more tracks appear than free slots exist. Slots are
recycled: a slot freed by a leaving publisher is rebound to the next one of the same kind without
renegotiation. The participant answers; it never offers.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from dataclasses import dataclass, field

from aiortc import (
    RTCBundlePolicy,
    RTCConfiguration,
    RTCIceServer,
    RTCPeerConnection,
    RTCRtpReceiver,
    RTCRtpSender,
    RTCRtpTransceiver,
    RTCSessionDescription,
)
from aiortc.mediastreams import MediaStreamTrack

from careline.media.answer_check import allowed_codecs, check_answer
from careline.media.errors import BadSdp, IncompatibleAiortc, NegotiationConflict
from careline.media.publication import Publication
from careline.media.rtp_writer import attach_rtp_writer
from careline.media.seams import route_keyframe_requests
from careline.media.subscriber_track import SubscriberTrack

log = logging.getLogger(__name__)

#: Offers and answers larger than this are refused before parsing.
MAX_SDP_BYTES = 64 * 1024
_CLOCK_RATES = {"audio": 48_000, "video": 90_000}


@dataclass(slots=True)
class Slot:
    """A send-only transceiver that forwards one publication at a time."""

    kind: str
    transceiver: RTCRtpTransceiver
    track: SubscriberTrack
    publication: Publication | None = None

    @property
    def mid(self) -> str | None:
        """The m-line id, known once an offer including it was created."""
        return self.transceiver.mid


@dataclass(slots=True)
class SessionCallbacks:
    """How a PeerSession reports to its Sfu (all called on the event loop)."""

    on_publication: Callable[[PeerSession, Publication], None]
    on_state: Callable[[PeerSession, str], None]
    on_negotiation_needed: Callable[[PeerSession], None]


@dataclass(slots=True)
class _Negotiation:
    pending_offer: bool = False
    needed: bool = False
    lock: asyncio.Lock = field(default_factory=asyncio.Lock)


class PeerSession:
    """The server side of one participant's peer connection.

    Concurrency: offers and answers are serialized by a lock; at most one server offer is
    outstanding, and a change made meanwhile marks negotiation as needed for the next round.
    """

    def __init__(
        self,
        session_id: str,
        room_id: str,
        video_codec: str,
        ice_servers: list[RTCIceServer],
        callbacks: SessionCallbacks,
        keyframe_interval: float,
        slot_capacity: int,
        transcode: bool = False,
        fast_path: bool = True,
    ) -> None:
        self.session_id = session_id
        self._fast_path = fast_path
        self.room_id = room_id
        self.video_codec = video_codec
        self._callbacks = callbacks
        self._keyframe_interval = keyframe_interval
        self._transcode = transcode
        self._slot_capacity = slot_capacity
        # max-bundle: one transport for every m-line. With aiortc's default (balanced), a second
        # video transceiver created before the first answer keeps a transport that bundling
        # then discards, and its sender never starts.
        self._pc = RTCPeerConnection(
            RTCConfiguration(iceServers=ice_servers, bundlePolicy=RTCBundlePolicy.MAX_BUNDLE)
        )
        self._pc.on("track", self._on_track)
        self._pc.on("connectionstatechange", self._on_state)
        self._negotiation = _Negotiation()
        self.publications: dict[str, Publication] = {}
        self.slots: list[Slot] = []
        self._inbound: dict[str, RTCRtpTransceiver] = {}
        for kind in ("audio", "video"):
            # First in every offer: the participant's own microphone and camera.
            transceiver = self._pc.addTransceiver(kind, direction="recvonly")
            self._prefer_codec(transceiver)
            self._inbound[kind] = transceiver
        self._offered = False
        self.closed = False

    @property
    def connection_state(self) -> str:
        """aiortc's connectionState: new, connecting, connected, failed or closed."""
        return str(self._pc.connectionState)

    @property
    def peer_connection(self) -> RTCPeerConnection:
        """The underlying connection (stats and tests)."""
        return self._pc

    # -- negotiation -------------------------------------------------------------------------

    async def create_offer(self) -> str | None:
        """The next server offer, or None if one is outstanding or nothing changed."""
        async with self._negotiation.lock:
            if self.closed:
                return None
            if self._negotiation.pending_offer or self._pc.signalingState != "stable":
                self._negotiation.needed = True
                return None
            if self._offered and not self._negotiation.needed:
                return None
            self._offered = True
            self._negotiation.needed = False
            offer = await self._pc.createOffer()
            await self._pc.setLocalDescription(offer)
            self._negotiation.pending_offer = True
            return str(self._pc.localDescription.sdp)

    async def accept_answer(self, sdp: str) -> None:
        """Apply the participant's answer to the outstanding offer."""
        _check_size(sdp)
        async with self._negotiation.lock:
            if not self._negotiation.pending_offer or self._pc.signalingState != "have-local-offer":
                raise NegotiationConflict("no offer is waiting for an answer")
            # Checked whole first: aiortc would apply a refused answer's first m-lines.
            check_answer(self._pc.localDescription.sdp, sdp, self.video_codec)
            try:
                await self._pc.setRemoteDescription(RTCSessionDescription(sdp=sdp, type="answer"))
            except (ValueError, KeyError, IndexError, TypeError) as exc:
                raise BadSdp(f"the answer could not be applied: {exc.__class__.__name__}") from None
            except Exception as exc:  # aiortc raises several of its own for bad descriptions
                if exc.__class__.__module__.startswith("aiortc"):
                    raise BadSdp(f"the answer was refused: {exc.__class__.__name__}") from None
                raise
            self._negotiation.pending_offer = False
            again = self._negotiation.needed
        if again:
            self._callbacks.on_negotiation_needed(self)

    def _prefer_codec(self, transceiver: RTCRtpTransceiver) -> None:
        transceiver.setCodecPreferences(allowed_codecs(transceiver.kind, self.video_codec))

    # -- subscriptions -----------------------------------------------------------------------

    def subscribe(self, publication: Publication) -> bool:
        """Forward `publication` here; True if a new slot (so a renegotiation) is needed."""
        for slot in self.slots:
            if slot.publication is publication:
                return False
        free = next(
            (s for s in self.slots if s.kind == publication.kind and s.publication is None), None
        )
        created = free is None
        if free is None:
            track = SubscriberTrack(
                publication.kind, _CLOCK_RATES[publication.kind], self._slot_capacity
            )
            transceiver = self._pc.addTransceiver(track, direction="sendonly")
            self._prefer_codec(transceiver)
            if not self._transcode:  # the encoder honours PLI itself in the baseline mode
                route_keyframe_requests(transceiver.sender, _keyframe_request(track))
                self._attach_fast_path(transceiver.sender, track)
            free = Slot(publication.kind, transceiver, track)
            self.slots.append(free)
            self._negotiation.needed = True
        free.publication = publication
        publication.subscribe(free.track)
        return created

    def _attach_fast_path(self, sender: RTCRtpSender, track: SubscriberTrack) -> None:
        if not self._fast_path:
            return
        try:
            attach_rtp_writer(sender, track.attach)
        except IncompatibleAiortc as exc:
            log.warning("session %s: %s; using aiortc's sender path", self.session_id, exc)

    def unsubscribe(self, publication: Publication) -> None:
        """Stop forwarding `publication` here; its slot becomes free for the next publisher."""
        for slot in self.slots:
            if slot.publication is publication:
                publication.unsubscribe(slot.track)
                slot.publication = None
                slot.track.rebind()

    def publish_mids(self) -> dict[str, str]:
        """kind -> mid of the m-lines the participant sends its own audio and video on."""
        return {kind: t.mid for kind, t in self._inbound.items() if t.mid is not None}

    def track_map(self) -> dict[str, tuple[str, str]]:
        """mid -> (publisher session id, kind) for every bound slot that has a mid."""
        return {
            slot.mid: (slot.publication.session_id, slot.kind)
            for slot in self.slots
            if slot.mid is not None and slot.publication is not None
        }

    # -- events --------------------------------------------------------------------------------

    def _on_track(self, track: MediaStreamTrack) -> None:
        receiver = self._receiver_of(track)
        if receiver is None or track.kind in self.publications:
            return
        publication = Publication(
            self.session_id,
            track.kind,
            receiver,
            self._keyframe_interval,
            transcode=self._transcode,
        )
        self.publications[track.kind] = publication
        self._callbacks.on_publication(self, publication)

    def _receiver_of(self, track: MediaStreamTrack) -> RTCRtpReceiver | None:
        for transceiver in self._pc.getTransceivers():
            if transceiver.receiver.track is track:
                return transceiver.receiver
        return None

    def _on_state(self) -> None:
        self._callbacks.on_state(self, self.connection_state)

    async def close(self) -> None:
        """Close the peer connection and end every publication and slot; safe to call twice."""
        if self.closed:
            return
        self.closed = True
        for publication in self.publications.values():
            publication.close()
        for slot in self.slots:
            if slot.publication is not None:
                slot.publication.unsubscribe(slot.track)
            slot.track.stop()
        await self._pc.close()


def _keyframe_request(track: SubscriberTrack) -> Callable[[], None]:
    """A PLI/FIR on this slot's sender asks whichever publication the slot is bound to."""
    return lambda: track.on_keyframe_needed()


def _check_size(sdp: str) -> None:
    if not sdp or len(sdp) > MAX_SDP_BYTES:
        raise BadSdp(f"a session description must be text of 1 to {MAX_SDP_BYTES} bytes")
