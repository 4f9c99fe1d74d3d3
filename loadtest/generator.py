"""Generates one process's share of a scenario's traffic against the target.

Builds what the share needs (clips encoded once and cached, on a thread; the token source; an
HTTP session without a pool limit, since every socket holds its connection) and runs the video,
message and hotline generators side by side until the run ends or `stopping` is set.
"""

from __future__ import annotations

import asyncio
import random
from collections.abc import Coroutine, Sequence
from pathlib import Path
from typing import Any

import aiohttp

from careline.loadtest.clips import Clip, audio_clip, default_cache_dir, video_clip
from careline.loadtest.concurrency import gather_or_cancel
from careline.loadtest.hotline_traffic import HotlineCalls
from careline.loadtest.ice import LOOPBACK, restrict_host_addresses
from careline.loadtest.load_metrics import LoadMetrics
from careline.loadtest.load_plan import LoadShare, TokenConfig
from careline.loadtest.message_traffic import MessageVisits
from careline.loadtest.scenario import MediaProfile, Scenario
from careline.loadtest.token_source import AdminTokens, SecretTokens, TokenSource
from careline.loadtest.traffic_context import TrafficContext
from careline.loadtest.video_traffic import VideoVisits

#: Seconds of the synthetic clip (it loops); relay latency must stay well under it.
CLIP_SECONDS = 4.0


async def profile_clips(profile: MediaProfile, cache_dir: Path | None) -> tuple[Clip, Clip | None]:
    """The video (and audio) clip of a media profile, encoded once and cached (on a thread)."""
    cache = cache_dir or default_cache_dir()
    video = await asyncio.to_thread(
        video_clip,
        profile.codec,
        profile.width,
        profile.height,
        profile.fps,
        profile.bitrate_kbps * 1000,
        CLIP_SECONDS,
        profile.fps,
        cache,
    )
    audio = None
    if profile.audio:
        audio = await asyncio.to_thread(audio_clip, CLIP_SECONDS, cache)
    return video, audio


def token_source(config: TokenConfig, http: aiohttp.ClientSession, url: str) -> TokenSource:
    """The token source the config names (the secret wins over the admin endpoint)."""
    if config.secret:
        return SecretTokens(
            config.secret,
            order_secret=config.order_secret,
            issuer=config.issuer,
            audience=config.audience,
        )
    if config.admin_token:
        return AdminTokens(
            http,
            url,
            config.admin_token,
            order_secret=config.order_secret,
            issuer=config.issuer,
            audience=config.audience,
        )
    raise ValueError("a token source needs a secret or an admin token")


async def generate(
    scenario: Scenario,
    share: LoadShare,
    *,
    url: str,
    tokens: TokenConfig,
    metrics: LoadMetrics,
    run_id: str,
    seed: int,
    stopping: asyncio.Event,
    clip_cache: Path | None = None,
    media_addresses: Sequence[str] = LOOPBACK,
) -> None:
    """Run `share` until `scenario.duration_seconds` after `metrics.started_at`, or `stopping`.

    Peers gather ICE host candidates on `media_addresses` only (loopback by default).
    """
    if share.empty:
        return
    restrict_host_addresses(media_addresses)
    video, audio = await profile_clips(scenario.video.media, clip_cache)
    connector = aiohttp.TCPConnector(limit=0)
    async with aiohttp.ClientSession(connector=connector) as http:
        ctx = TrafficContext(
            url=url,
            http=http,
            tokens=token_source(tokens, http, url),
            metrics=metrics,
            run_id=run_id,
            ends_at=metrics.started_at + scenario.duration_seconds,
            stopping=stopping,
        )
        jobs: list[Coroutine[Any, Any, None]] = []
        if share.video_slots:
            rng = random.Random(seed + 1 + share.video_slots[0])
            visits = VideoVisits(
                ctx, scenario.video, share.video_slots, share.video_offsets, video, audio, rng
            )
            jobs.append(visits.run())
        if share.families:
            jobs.append(MessageVisits(ctx, scenario.messages, share.families, seed).run())
        if share.hotline:
            jobs.append(HotlineCalls(ctx, scenario.hotline, video).run())
        await gather_or_cancel(jobs, lambda job: job)
