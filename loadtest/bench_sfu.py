"""The SFU benchmark (`careline bench sfu`): one publisher, N subscribers, a server on this host.

Each phase starts a throwaway `careline serve` (local_server) on 127.0.0.1, creates one visit
over HTTP, connects the publisher in this process (a clinician sending a pre-encoded clip: no
encoder runs) and spreads the N subscribers over worker processes (bench_sfu_worker), so the
load generator is not the bottleneck. After every subscriber received its warm-up frames and a
short settle, it measures a window of `seconds`:

- server CPU: utime + stime of /proc/<pid>/stat over the window, in % of one core, divided by
  the forwarded video streams (one per subscriber): `cpu_pct_per_stream`;
- delivery: frames the publisher sent in the window, matched by content digest to what each
  subscriber received up to `tail_seconds` later: `delivered_ratio`;
- added relay latency: from the send of a frame's last RTP packet (frame_departures) to the
  arrival of its last packet at a subscriber (frame_completion), both on CLOCK_MONOTONIC;
- memory: server RSS after the window minus RSS before the subscribers joined, per subscriber;
- the load generator's own CPU (workers, and this process, which runs the publisher).

The same shape then runs against a server in `media.forwarding = "transcode"` (aiortc
MediaRelay: decode once, encode per subscriber) with `baseline_subscribers`, and
`baseline_ratio` = its CPU per stream / the forwarding server's. Nothing here is a pass/fail
test: the targets are judged by whoever reads the numbers (docs/benchmarks.md).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import math
import os
import shutil
import tempfile
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import aiohttp
import msgspec

from careline.loadtest.bench_sfu_messages import (
    Joined,
    Receiving,
    ReportRequest,
    SubscriberReport,
    WorkerPlan,
    WorkerReport,
)
from careline.loadtest.clips import Clip, audio_clip, default_cache_dir, video_clip
from careline.loadtest.concurrency import gather_or_cancel
from careline.loadtest.errors import BenchFailed
from careline.loadtest.frame_departures import (
    DepartingClipTrack,
    DepartureLog,
    attach_departure_log,
)
from careline.loadtest.ice import LOOPBACK, restrict_host_addresses
from careline.loadtest.local_server import DEFAULT_COMMAND, LocalServer
from careline.loadtest.percentiles import percentile
from careline.loadtest.proc_stats import cpu_percent, host_cpu_percent, read_rss_kb, sample_cpu
from careline.loadtest.visit_client import VisitClient, VisitError
from careline.loadtest.worker_process import WorkerProcess
from careline.signaling.visit_schemas import CreatedVisit

log = logging.getLogger(__name__)

Forwarding = Literal["encoded", "transcode"]
#: A worker carries at most this many subscribers unless told otherwise.
SUBSCRIBERS_PER_WORKER = 20
#: Subscribers of the transcoding baseline unless told otherwise (it costs ~10 % of a core each).
DEFAULT_BASELINE_SUBSCRIBERS = 10
_PUBLISHER_SUB = "bench-publisher"
_SUBSCRIBER_KINDS = ("parent", "second_parent", "interpreter")


@dataclass(frozen=True, slots=True)
class SfuBenchConfig:
    """What `careline bench sfu` runs. `workers` None: enough for <= 20 subscribers each."""

    subscribers: int = 40
    seconds: float = 20.0
    codec: Literal["vp8", "h264"] = "vp8"
    workers: int | None = None
    baseline: bool = True
    baseline_subscribers: int | None = None
    audio: bool = False
    width: int = 640
    height: int = 480
    fps: int = 30
    bitrate: int = 600_000
    clip_seconds: float = 10.0
    keyframe_interval: int = 60
    clip_cache: Path | None = None
    warmup_frames: int = 30
    warmup_timeout: float = 120.0
    settle_seconds: float = 1.0
    tail_seconds: float = 1.0
    server_command: tuple[str, ...] = DEFAULT_COMMAND

    def __post_init__(self) -> None:
        if self.subscribers < 1:
            raise ValueError("subscribers must be at least 1")
        if self.seconds <= 0 or self.tail_seconds <= 0 or self.warmup_timeout <= 0:
            raise ValueError("seconds, tail_seconds and warmup_timeout must be positive")
        if self.workers is not None and self.workers < 1:
            raise ValueError("workers must be at least 1")
        if self.baseline_subscribers is not None and self.baseline_subscribers < 1:
            raise ValueError("baseline_subscribers must be at least 1")
        if self.tail_seconds >= self.clip_seconds / 2:
            raise ValueError("tail_seconds must be well under a pass of the clip")

    def workers_for(self, subscribers: int) -> int:
        """Worker processes for `subscribers` (never more than one per subscriber)."""
        wanted = self.workers or math.ceil(subscribers / SUBSCRIBERS_PER_WORKER)
        return max(1, min(wanted, subscribers))

    @property
    def baseline_count(self) -> int:
        """Subscribers of the transcoding baseline (0 when it is skipped)."""
        if not self.baseline:
            return 0
        if self.baseline_subscribers is not None:
            return self.baseline_subscribers
        return min(self.subscribers, DEFAULT_BASELINE_SUBSCRIBERS)


@dataclass(frozen=True, slots=True)
class PhaseResult:
    """One run of the shape against one server."""

    forwarding: Forwarding
    subscribers: int
    workers: int
    frames_sent: int
    server_cpu_pct: float
    delivered_ratio: float
    delivered_ratio_min: float
    counted_ratio: float
    latencies_ms: tuple[float, ...]
    rss_kb_before: int
    rss_kb_after: int
    loadgen_cpu_pct: float
    loadgen_worker_cpu_pct_max: float
    publisher_cpu_pct: float
    host_cpu_pct: float
    unstamped: int
    warmup_seconds: float

    @property
    def cpu_pct_per_stream(self) -> float:
        """Server CPU (% of one core) per forwarded video stream (one per subscriber)."""
        return self.server_cpu_pct / self.subscribers

    @property
    def host_other_cpu_pct(self) -> float:
        """Host CPU not charged to the server or the load generator (other processes, softirq)."""
        return (
            self.host_cpu_pct - self.server_cpu_pct - self.loadgen_cpu_pct - self.publisher_cpu_pct
        )

    @property
    def rss_kb_per_subscriber(self) -> float:
        """Server RSS growth from before the subscribers joined to after the window."""
        return (self.rss_kb_after - self.rss_kb_before) / self.subscribers


@dataclass(frozen=True, slots=True)
class SfuBenchResult:
    """Both phases and what was sent; `to_json()` is what `--json` prints."""

    config: SfuBenchConfig
    clip_kbps: float
    loadavg_1m: float
    forwarding: PhaseResult
    baseline: PhaseResult | None = None

    def to_json(self) -> dict[str, Any]:
        """One flat JSON object (see docs/benchmarks.md for every key)."""
        config, main = self.config, self.forwarding
        latencies = main.latencies_ms
        result: dict[str, Any] = {
            "subscribers": main.subscribers,
            "codec": config.codec,
            "media": "video+audio" if config.audio else "video",
            "width": config.width,
            "height": config.height,
            "fps": config.fps,
            "clip_kbps": round(self.clip_kbps, 1),
            "seconds": config.seconds,
            "workers": main.workers,
            "cpu_count": os.cpu_count(),
            "loadavg_1m_at_start": round(self.loadavg_1m, 2),
            "forwarding": main.forwarding,
            "server_cpu_pct": round(main.server_cpu_pct, 2),
            "cpu_pct_per_stream": round(main.cpu_pct_per_stream, 4),
            "frames_sent": main.frames_sent,
            "delivered_ratio": round(main.delivered_ratio, 5),
            "delivered_ratio_min": round(main.delivered_ratio_min, 5),
            "latency_ms_p50": _rounded_percentile(latencies, 0.50),
            "latency_ms_p95": _rounded_percentile(latencies, 0.95),
            "latency_ms_p99": _rounded_percentile(latencies, 0.99),
            "latency_ms_max": _rounded_percentile(latencies, 1.0),
            "latency_samples": len(latencies),
            "unstamped_frames": main.unstamped,
            "rss_kb_before": main.rss_kb_before,
            "rss_kb_after": main.rss_kb_after,
            "rss_kb_per_subscriber": round(main.rss_kb_per_subscriber, 1),
            "loadgen_cpu_pct": round(main.loadgen_cpu_pct, 2),
            "loadgen_worker_cpu_pct_max": round(main.loadgen_worker_cpu_pct_max, 2),
            "publisher_cpu_pct": round(main.publisher_cpu_pct, 2),
            "host_cpu_pct": round(main.host_cpu_pct, 2),
            "host_other_cpu_pct": round(main.host_other_cpu_pct, 2),
            "warmup_seconds": round(main.warmup_seconds, 2),
        }
        base = self.baseline
        result.update(
            {
                "baseline_forwarding": base.forwarding if base else None,
                "baseline_subscribers": base.subscribers if base else None,
                "baseline_server_cpu_pct": round(base.server_cpu_pct, 2) if base else None,
                "baseline_cpu_pct_per_stream": (
                    round(base.cpu_pct_per_stream, 4) if base else None
                ),
                "baseline_delivered_ratio": round(base.counted_ratio, 5) if base else None,
                "baseline_loadgen_cpu_pct": round(base.loadgen_cpu_pct, 2) if base else None,
                "baseline_ratio": (
                    round(base.cpu_pct_per_stream / main.cpu_pct_per_stream, 1)
                    if base and main.cpu_pct_per_stream > 0
                    else None
                ),
            }
        )
        return result


def format_table(result: dict[str, Any]) -> str:
    """The JSON result as aligned `key: value` lines, for people."""
    width = max(len(key) for key in result)
    return "\n".join(f"{key:>{width}}: {value}" for key, value in result.items()) + "\n"


async def run_sfu_bench(config: SfuBenchConfig) -> SfuBenchResult:
    """Run the forwarding phase, then (unless skipped) the transcoding baseline."""
    loadavg = os.getloadavg()[0]
    restrict_host_addresses(LOOPBACK)
    cache = config.clip_cache or default_cache_dir()
    clip = await asyncio.to_thread(
        video_clip,
        config.codec,
        config.width,
        config.height,
        config.fps,
        config.bitrate,
        config.clip_seconds,
        config.keyframe_interval,
        cache,
    )
    sound = None
    if config.audio:
        sound = await asyncio.to_thread(audio_clip, config.clip_seconds, cache)
    clip_kbps = sum(len(frame.data) for frame in clip.frames) * 8 / clip.duration / 1000
    forwarding = await run_phase(config, clip, sound, "encoded", config.subscribers)
    baseline = None
    if config.baseline_count:
        baseline = await run_phase(config, clip, sound, "transcode", config.baseline_count)
    return SfuBenchResult(config, clip_kbps, loadavg, forwarding, baseline)


async def run_phase(
    config: SfuBenchConfig,
    clip: Clip,
    sound: Clip | None,
    forwarding: Forwarding,
    subscribers: int,
) -> PhaseResult:
    """One server, one visit, one publisher, `subscribers` subscribers: measure one window."""
    directory = Path(await asyncio.to_thread(tempfile.mkdtemp, prefix="careline-bench-sfu-"))
    try:
        async with contextlib.AsyncExitStack() as stack:
            server = LocalServer(
                directory,
                {
                    "server": {"log_level": "warning"},
                    "media": {"host_addresses": list(LOOPBACK), "forwarding": forwarding},
                    "visits": {"max_participants": subscribers},
                },
                command=config.server_command,
            )
            stack.push_async_callback(server.stop)
            await server.start()
            log.info("%s: server %s (pid %d)", forwarding, server.url, server.pid)
            return await _measure(config, clip, sound, forwarding, subscribers, server, stack)
    finally:
        await asyncio.to_thread(shutil.rmtree, directory, True)


async def _measure(
    config: SfuBenchConfig,
    clip: Clip,
    sound: Clip | None,
    forwarding: Forwarding,
    subscribers: int,
    server: LocalServer,
    stack: contextlib.AsyncExitStack,
) -> PhaseResult:
    token = await server.token("clinician", _PUBLISHER_SUB)
    created = await _create_visit(server.url, token, subscribers, config.codec)
    visit_id = created.visit.visit_id
    publisher_token = next(p.token for p in created.invited if p.sub == _PUBLISHER_SUB)
    subscriber_tokens = [p.token for p in created.invited if p.sub != _PUBLISHER_SUB]

    frames_kept = math.ceil((config.seconds + config.warmup_timeout + 60) * config.fps)
    departures = DepartureLog(frames_kept, time.monotonic)
    publisher = VisitClient(server.url, publisher_token, video=clip, audio=sound)
    stack.push_async_callback(publisher.close)
    if publisher.video_track is not None:
        publisher.video_track.stop()  # replaced before any use: it never sent a frame
    publisher.video_track = DepartingClipTrack(clip, departures)
    try:
        await publisher.connect()
        publisher_id = str((await publisher.join(visit_id))["participant_id"])
        await publisher.start_media()
    except VisitError as exc:
        raise BenchFailed(f"the publisher could not start: {exc}") from None
    _attach_departures(publisher, departures)
    await _wait_for_departures(departures)
    await asyncio.sleep(config.settle_seconds)
    rss_before = await asyncio.to_thread(read_rss_kb, server.pid)

    count = config.workers_for(subscribers)
    workers = [WorkerProcess(index) for index in range(count)]
    for worker in workers:
        stack.push_async_callback(worker.stop)
    await gather_or_cancel(workers, lambda worker: worker.start())
    chunks = _split(subscriber_tokens, count)

    async def warm(worker: WorkerProcess) -> None:
        await worker.send(
            WorkerPlan(
                url=server.url,
                visit_id=visit_id,
                publisher_id=publisher_id,
                tokens=chunks[worker.index],
                warmup_frames=config.warmup_frames,
                warmup_timeout=config.warmup_timeout,
                log_capacity=frames_kept,
            )
        )
        joined = await worker.receive(Joined)
        for participant_id in joined.participant_ids:
            await publisher.call("visit.admit", {"participant_id": participant_id})
        await worker.receive(Receiving)

    started = time.monotonic()
    log.info("%s: %d subscribers in %d workers joining", forwarding, subscribers, count)
    try:
        async with asyncio.timeout(config.warmup_timeout + 30):
            await gather_or_cancel(workers, warm)
    except TimeoutError:
        raise BenchFailed(
            f"subscribers never got frames within {config.warmup_timeout + 30:.0f} s"
        ) from None
    except VisitError as exc:
        raise BenchFailed(f"admitting a subscriber failed: {exc}") from None
    warmup = time.monotonic() - started
    await asyncio.sleep(config.settle_seconds)

    pids = [server.pid, os.getpid(), *(worker.pid for worker in workers)]
    log.info("%s: all receiving after %.1f s; measuring %.0f s", forwarding, warmup, config.seconds)
    before = await asyncio.to_thread(sample_cpu, pids)
    await asyncio.sleep(config.seconds)
    after = await asyncio.to_thread(sample_cpu, pids)
    await asyncio.sleep(config.tail_seconds)
    rss_after = await asyncio.to_thread(read_rss_kb, server.pid)
    window = departures.between(before.taken_at, after.taken_at)
    if not window:
        raise BenchFailed("the publisher sent no frames during the measured window")
    request = ReportRequest(
        departures=window,
        window_start=before.taken_at,
        window_end=after.taken_at,
        tail=config.tail_seconds,
    )

    async def report(worker: WorkerProcess) -> WorkerReport:
        await worker.send(request)
        return await worker.receive(WorkerReport)

    async with asyncio.timeout(60):
        reports = await gather_or_cancel(workers, report)
    worker_cpu = [cpu_percent(before, after, worker.pid) for worker in workers]
    return _phase_result(
        forwarding,
        subscribers,
        len(window),
        [each for answer in reports for each in answer.subscribers],
        server_cpu=cpu_percent(before, after, server.pid),
        worker_cpu=worker_cpu,
        publisher_cpu=cpu_percent(before, after, os.getpid()),
        host_cpu=host_cpu_percent(before, after),
        rss=(rss_before, rss_after),
        unstamped=sum(answer.unstamped for answer in reports),
        warmup=warmup,
    )


def _phase_result(
    forwarding: Forwarding,
    subscribers: int,
    frames_sent: int,
    reports: Sequence[SubscriberReport],
    *,
    server_cpu: float,
    worker_cpu: Sequence[float],
    publisher_cpu: float,
    host_cpu: float,
    rss: tuple[int, int],
    unstamped: int,
    warmup: float,
) -> PhaseResult:
    if len(reports) != subscribers:
        raise BenchFailed(f"{len(reports)} subscriber reports for {subscribers} subscribers")
    return PhaseResult(
        forwarding=forwarding,
        subscribers=subscribers,
        workers=len(worker_cpu),
        frames_sent=frames_sent,
        server_cpu_pct=server_cpu,
        delivered_ratio=delivered_ratio(reports),
        delivered_ratio_min=min(_ratio(r.matched, r.expected) for r in reports),
        counted_ratio=_ratio(sum(r.counted for r in reports), frames_sent * len(reports)),
        latencies_ms=tuple(value for r in reports for value in r.latencies_ms),
        rss_kb_before=rss[0],
        rss_kb_after=rss[1],
        loadgen_cpu_pct=sum(worker_cpu),
        loadgen_worker_cpu_pct_max=max(worker_cpu),
        publisher_cpu_pct=publisher_cpu,
        host_cpu_pct=host_cpu,
        unstamped=unstamped,
        warmup_seconds=warmup,
    )


def delivered_ratio(reports: Sequence[SubscriberReport]) -> float:
    """Frames matched over frames expected, summed over every subscriber."""
    return _ratio(sum(r.matched for r in reports), sum(r.expected for r in reports))


def _ratio(part: int, whole: int) -> float:
    return part / whole if whole else 0.0


def _rounded_percentile(values: Sequence[float], fraction: float) -> float | None:
    return round(percentile(values, fraction), 3) if values else None


def _split(items: Sequence[str], parts: int) -> list[list[str]]:
    """`items` in `parts` contiguous chunks whose sizes differ by at most one."""
    size, extra = divmod(len(items), parts)
    chunks: list[list[str]] = []
    start = 0
    for index in range(parts):
        end = start + size + (1 if index < extra else 0)
        chunks.append(list(items[start:end]))
        start = end
    return chunks


async def _create_visit(url: str, token: str, subscribers: int, codec: str) -> CreatedVisit:
    kinds = _SUBSCRIBER_KINDS
    body = {
        "participants": [{"kind": kinds[i % len(kinds)]} for i in range(subscribers)],
        "codec": codec,
    }
    async with (
        aiohttp.ClientSession() as http,
        http.post(
            url + "/api/visits", json=body, headers={"Authorization": f"Bearer {token}"}
        ) as response,
    ):
        raw = await response.read()
    if response.status != 201:
        try:
            code = msgspec.json.decode(raw)["error"]["code"]
        except (msgspec.DecodeError, KeyError, TypeError):
            code = "?"
        raise BenchFailed(f"POST /api/visits answered {response.status} {code}")
    return msgspec.json.decode(raw, type=CreatedVisit)


def _attach_departures(publisher: VisitClient, departures: DepartureLog) -> None:
    pc = publisher.pc
    assert pc is not None
    sender = next(
        (t.sender for t in pc.getTransceivers() if t.sender.track is publisher.video_track), None
    )
    if sender is None:
        raise BenchFailed("the server offered no m-line for the publisher's video")
    attach_departure_log(sender, departures)


async def _wait_for_departures(departures: DepartureLog, within: float = 20.0) -> None:
    try:
        async with asyncio.timeout(within):
            await departures.wait_for_first()
    except TimeoutError:
        raise BenchFailed(f"the publisher's media did not connect within {within:.0f} s") from None
