"""Media and video-visit metrics, read from the gateway and the visit service at scrape time.

Aggregates only: label values are connection states, track kinds, participant states and quality
levels (all bounded sets), never visit, participant or subject ids. Collecting walks the open
sessions of this process on the event loop; it never calls getStats.
"""

from __future__ import annotations

from collections.abc import Iterator

from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily
from prometheus_client.metrics_core import Metric

from careline.server.media_gateway import SfuGateway
from careline.signaling.visit import ParticipantState
from careline.signaling.visit_service import VisitService

#: Every aiortc connection state, so each series exists from the first scrape.
_CONNECTION_STATES = ("new", "connecting", "connected", "disconnected", "failed", "closed")
_KINDS = ("audio", "video")
_LEVELS = range(6)


class MediaCollector:
    """A prometheus_client collector of the SFU's and the visits' aggregate state."""

    def __init__(self, gateway: SfuGateway, visits: VisitService) -> None:
        self._gateway = gateway
        self._visits = visits

    def describe(self) -> Iterator[Metric]:
        """The metric families (names only) for the registry's duplicate check."""
        return self._families(collecting=False)

    def collect(self) -> Iterator[Metric]:
        """The current values."""
        return self._families(collecting=True)

    def _families(self, collecting: bool) -> Iterator[Metric]:
        totals = self._gateway.totals() if collecting else None
        census = self._visits.census() if collecting else None

        connections = GaugeMetricFamily(
            "careline_media_peer_connections",
            "Open WebRTC peer connections of the SFU, by connection state",
            labels=["state"],
        )
        tracks = GaugeMetricFamily(
            "careline_media_published_tracks",
            "Inbound tracks the SFU is forwarding, by kind",
            labels=["kind"],
        )
        received = CounterMetricFamily(
            "careline_media_received_frames",
            "Complete encoded frames received from publishers",
        )
        forwarded = CounterMetricFamily(
            "careline_media_forwarded_frames",
            "Encoded frames forwarded to subscribers (one per subscriber)",
        )
        drops = CounterMetricFamily(
            "careline_media_subscriber_drops",
            "Frames dropped for slow subscribers (they skip to the next keyframe)",
        )
        keyframes = CounterMetricFamily(
            "careline_media_keyframe_requests",
            "Keyframe requests (RTCP PLI) sent to publishers after throttling",
        )
        visits = GaugeMetricFamily(
            "careline_visits_active",
            "Video visits with at least one participant connected to this process",
        )
        participants = GaugeMetricFamily(
            "careline_visit_participants",
            "Video-visit participants connected to this process (or in their grace window), "
            "by participant state",
            labels=["state"],
        )
        quality = GaugeMetricFamily(
            "careline_visit_network_quality",
            "Video-visit participants with media, by their last network-quality level (0-5)",
            labels=["level"],
        )
        if totals is not None and census is not None:
            for state in sorted({*_CONNECTION_STATES, *totals.peer_connections}):
                connections.add_metric([state], totals.peer_connections.get(state, 0))
            for kind in _KINDS:
                tracks.add_metric([kind], totals.published_tracks.get(kind, 0))
            received.add_metric([], totals.frames_received)
            forwarded.add_metric([], totals.frames_forwarded)
            drops.add_metric([], totals.frames_dropped)
            keyframes.add_metric([], totals.keyframe_requests)
            visits.add_metric([], census.active_visits)
            for participant_state in ParticipantState:
                value = participant_state.value
                participants.add_metric([value], census.participants.get(value, 0))
            for level in _LEVELS:
                quality.add_metric([str(level)], census.quality.get(level, 0))
        yield from (
            connections,
            tracks,
            received,
            forwarded,
            drops,
            keyframes,
            visits,
            participants,
            quality,
        )
