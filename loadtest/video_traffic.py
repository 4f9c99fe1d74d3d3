"""Video-visit traffic: visits created over HTTP, joined over /visit, media over WebRTC.

Each visit slot runs visits back to back until the run ends: a clinician creates the visit
(`POST /api/visits`) with its family members, everyone connects and joins (family members are
admitted by the clinician), starts media with the scenario's pre-encoded clip, stays
`stay_seconds` and the clinician ends the visit. Slots start by the join pattern: `burst` (all
at once), `ramp` (evenly over `join_spread_seconds`) or `poisson` (random arrivals, same mean).
A `churn` share of family members drops its socket halfway and joins again (a reconnect).

Measured: join attempts and successes, time to join (connect to admitted), time to first frame
(media.start to the first frame from anyone), frames delivered vs sent per (subscriber,
publisher) pair, and relay latency of frames matched by content digest (publisher and
subscriber are in this process, so ClipTrack's send record is at hand).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import random
import time
from collections.abc import Sequence
from dataclasses import dataclass, field

from careline.loadtest.clips import Clip
from careline.loadtest.errors import LoadtestError
from careline.loadtest.scenario import VideoTraffic
from careline.loadtest.traffic_context import TrafficContext
from careline.loadtest.visit_client import VisitClient

log = logging.getLogger(__name__)

_FAMILY_KINDS = ("parent", "second_parent", "interpreter")
_STEP_TIMEOUT = 20.0
_SAMPLE_EVERY = 1.0
_TAIL = 0.5
#: How often a new participant looks for its first frame (the resolution of the figure).
_POLL = 0.005


@dataclass
class _Member:
    """One participant of one visit."""

    client: VisitClient
    token: str
    clinician: bool
    churned: bool = False
    participant_id: str = ""
    seen_until: dict[str, float] = field(default_factory=dict)


@dataclass
class _Pair:
    """A subscriber receiving a publisher: baseline counts for frames delivered vs sent."""

    subscriber: _Member
    publisher: _Member
    received_at_start: int
    sent_at_start: int


def join_offsets(spec: VideoTraffic, count: int, rng: random.Random) -> list[float]:
    """Seconds after the run's start at which each of `count` slots starts its first visit."""
    spread = spec.join_spread_seconds
    if spec.join == "burst" or count == 0 or spread == 0:
        return [0.0] * count
    if spec.join == "ramp":
        return [spread * index / count for index in range(count)]
    offsets, moment = [], 0.0
    for _ in range(count):
        offsets.append(min(moment, spread))
        moment += rng.expovariate(count / spread)
    return offsets


class VideoVisits:
    """Runs the visit slots given to this process (`slots` are global slot numbers)."""

    def __init__(
        self,
        ctx: TrafficContext,
        spec: VideoTraffic,
        slots: Sequence[int],
        offsets: Sequence[float],
        video: Clip,
        audio: Clip | None,
        rng: random.Random,
    ) -> None:
        self._ctx = ctx
        self._spec = spec
        self._slots = list(zip(slots, offsets, strict=True))
        self._video = video
        self._audio = audio
        self._rng = rng

    async def run(self) -> None:
        """Every slot until the run ends; returns when all visits ended."""
        await asyncio.gather(*(self._slot(slot, offset) for slot, offset in self._slots))

    async def _slot(self, slot: int, offset: float) -> None:
        ctx = self._ctx
        if not await ctx.sleep_until(ctx.metrics.started_at + offset):
            return
        round_ = 0
        while ctx.remaining() > 1.0:
            try:
                await self._visit(f"lt-{ctx.run_id}-v{slot}-{round_}")
            except LoadtestError as exc:
                ctx.metrics.error(exc.code)
                await ctx.sleep_until(time.monotonic() + 1.0)
            round_ += 1

    async def _visit(self, prefix: str) -> None:
        ctx, spec = self._ctx, self._spec
        clinician_sub = f"{prefix}-c"
        token = await ctx.tokens.token("clinician", clinician_sub)
        family = [
            {"kind": _FAMILY_KINDS[n % len(_FAMILY_KINDS)], "sub": f"{prefix}-f{n}"}
            for n in range(spec.participants - 1)
        ]
        created = await ctx.post(
            "/api/visits", token, {"participants": family, "codec": spec.media.codec}
        )
        visit_id = str(created["visit"]["visit_id"])
        tokens = {str(p["sub"]): str(p["token"]) for p in created["invited"]}
        members = [self._member(tokens.get(clinician_sub, token), clinician=True)]
        members += [self._member(tokens[str(f["sub"])], clinician=False) for f in family]
        try:
            await self._run_visit(visit_id, members)
        finally:
            await asyncio.gather(*(m.client.close() for m in members), return_exceptions=True)

    def _member(self, token: str, *, clinician: bool) -> _Member:
        client = VisitClient(self._ctx.url, token, video=self._video, audio=self._audio)
        return _Member(client=client, token=token, clinician=clinician)

    async def _run_visit(self, visit_id: str, members: list[_Member]) -> None:
        ctx = self._ctx
        doctor = members[0]
        if not await self._join(doctor, visit_id, None):
            return
        joined = await asyncio.gather(*(self._join(m, visit_id, doctor) for m in members[1:]))
        present = [doctor, *(m for m, ok in zip(members[1:], joined, strict=True) if ok)]
        await asyncio.gather(*(self._start_media(m) for m in present))
        await ctx.sleep_until(time.monotonic() + 1.0)
        pairs = self._pairs(present)
        ends_at = min(time.monotonic() + self._spec.stay_seconds, ctx.ends_at)
        churners = [m for m in present[1:] if self._rng.random() < self._spec.churn]
        churn_at = time.monotonic() + self._spec.stay_seconds / 2
        churning: list[asyncio.Task[None]] = []
        try:
            while time.monotonic() < ends_at and not ctx.stopping.is_set():
                if churners and time.monotonic() >= churn_at:
                    churning = [
                        asyncio.create_task(self._churn(m, visit_id, doctor)) for m in churners
                    ]
                    churners = []
                await ctx.sleep_until(min(ends_at, time.monotonic() + _SAMPLE_EVERY))
                self._sample_relay(present)
            await asyncio.gather(*churning)
        finally:
            for task in churning:
                task.cancel()
            await asyncio.gather(*churning, return_exceptions=True)
        await self._count_delivery(pairs)
        with contextlib.suppress(LoadtestError):
            await doctor.client.call("visit.end")

    async def _join(self, member: _Member, visit_id: str, doctor: _Member | None) -> bool:
        """Connect, join and (family) be admitted; the time it took is `join_ms`."""
        metrics = self._ctx.metrics
        metrics.count("joins_attempted")
        started = time.monotonic()
        try:
            async with asyncio.timeout(_STEP_TIMEOUT):
                await member.client.connect()
                joined = await member.client.join(visit_id)
                member.participant_id = str(joined["participant_id"])
                if joined["state"] == "waiting" and doctor is not None:
                    await doctor.client.call(
                        "visit.admit", {"participant_id": member.participant_id}
                    )
                    await member.client.wait_event("visit.admitted", within=_STEP_TIMEOUT)
        except LoadtestError as exc:
            metrics.error(exc.code)
            return False
        except TimeoutError:
            metrics.error("loadtest.join_timeout")
            return False
        metrics.latency("join_ms", (time.monotonic() - started) * 1000)
        metrics.count("joins_ok")
        return True

    async def _start_media(self, member: _Member) -> None:
        """media.start, then wait for the first frame from anyone: `first_frame_ms`."""
        metrics = self._ctx.metrics
        started = time.monotonic()
        try:
            async with asyncio.timeout(_STEP_TIMEOUT):
                await member.client.start_media()
                frames = member.client.frames
                for _ in range(int(_STEP_TIMEOUT / _POLL)):
                    if frames.keys():
                        break
                    await asyncio.sleep(_POLL)
        except LoadtestError as exc:
            metrics.error(exc.code)
            return
        except TimeoutError:
            metrics.error("loadtest.no_first_frame")
            return
        metrics.latency("first_frame_ms", (time.monotonic() - started) * 1000)

    def _pairs(self, present: list[_Member]) -> list[_Pair]:
        pairs = []
        for subscriber in present:
            for publisher in present:
                track = publisher.client.video_track
                if publisher is subscriber or track is None:
                    continue
                mid = subscriber.client.mid_of(publisher.participant_id)
                received = subscriber.client.frames.count(mid) if mid is not None else 0
                pairs.append(_Pair(subscriber, publisher, received, track.frames_sent))
        return pairs

    async def _count_delivery(self, pairs: list[_Pair]) -> None:
        """Frames each subscriber got of those its publishers sent since the baseline."""
        sent_now = {
            id(p.publisher): p.publisher.client.video_track.frames_sent
            for p in pairs
            if p.publisher.client.video_track is not None
        }
        await asyncio.sleep(_TAIL)
        metrics = self._ctx.metrics
        for pair in pairs:
            if pair.subscriber.churned or pair.publisher.churned:
                continue
            sent = sent_now.get(id(pair.publisher), pair.sent_at_start) - pair.sent_at_start
            mid = pair.subscriber.client.mid_of(pair.publisher.participant_id)
            received = pair.subscriber.client.frames.count(mid) if mid is not None else 0
            metrics.count("frames_expected", sent)
            metrics.count("frames_delivered", min(sent, received - pair.received_at_start))

    def _sample_relay(self, present: list[_Member]) -> None:
        """Relay latency of the frames received since the last look (matched by digest)."""
        metrics = self._ctx.metrics
        for subscriber in present:
            for publisher in present:
                track = publisher.client.video_track
                if publisher is subscriber or track is None:
                    continue
                mid = subscriber.client.mid_of(publisher.participant_id)
                if mid is None:
                    continue
                since = subscriber.seen_until.get(mid, 0.0)
                for arrival in subscriber.client.frames.arrivals(mid):
                    if arrival.arrived_at <= since:
                        continue
                    sent = track.sent_at(arrival.digest)
                    if sent is not None and sent <= arrival.arrived_at:
                        delay = (arrival.arrived_at - sent) * 1000
                        metrics.latency("relay_ms", delay, at=arrival.arrived_at)
                    since = arrival.arrived_at
                subscriber.seen_until[mid] = since

    async def _churn(self, member: _Member, visit_id: str, doctor: _Member) -> None:
        """Drop the socket and join again on a new one (within the reconnect grace)."""
        member.churned = True
        await member.client.close()
        member.client = VisitClient(
            self._ctx.url, member.token, video=self._video, audio=self._audio
        )
        if await self._join(member, visit_id, doctor):
            await self._start_media(member)
