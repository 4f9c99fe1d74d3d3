"""A load-test scenario: what traffic to generate and the SLOs it must meet, from a TOML file.

Parsed in one call with msgspec (`load_scenario`): an unknown key, a wrong type or an impossible
number (a negative count, a share above 1, a visit of one person) is refused before anything
starts, with a ScenarioError naming the key (`$.video.participants`). Every section is optional;
a scenario needs at least one kind of traffic. docs/loadtest.md lists every key.
"""

from __future__ import annotations

import tomllib
from pathlib import Path
from typing import Annotated, Literal

import msgspec

from careline.loadtest.errors import LoadtestError

Count = Annotated[int, msgspec.Meta(ge=0, le=100_000)]
Positive = Annotated[int, msgspec.Meta(ge=1, le=100_000)]
Seconds = Annotated[float, msgspec.Meta(ge=0, le=86_400)]
Share = Annotated[float, msgspec.Meta(ge=0, le=1)]
Millis = Annotated[float, msgspec.Meta(gt=0)]
JoinPattern = Literal["burst", "ramp", "poisson"]


class ScenarioError(LoadtestError):
    """The scenario file is unreadable or invalid; the message names the key."""

    code = "loadtest.scenario"


class _Section(msgspec.Struct, frozen=True, forbid_unknown_fields=True, kw_only=True):
    """Every table refuses keys it does not know."""


class MediaProfile(_Section, frozen=True):
    """The synthetic clip each video participant publishes (encoded once, cached)."""

    codec: Literal["vp8", "h264"] = "vp8"
    bitrate_kbps: Annotated[int, msgspec.Meta(ge=50, le=20_000)] = 300
    width: Annotated[int, msgspec.Meta(ge=16, le=1920, multiple_of=2)] = 320
    height: Annotated[int, msgspec.Meta(ge=16, le=1080, multiple_of=2)] = 240
    fps: Annotated[int, msgspec.Meta(ge=1, le=60)] = 15
    audio: bool = False


class VideoTraffic(_Section, frozen=True):
    """Video visits: a clinician and family members who join, publish and watch each other."""

    visits: Count = 0
    participants: Annotated[int, msgspec.Meta(ge=2, le=256)] = 2
    join: JoinPattern = "ramp"
    join_spread_seconds: Seconds = 0.0
    stay_seconds: Seconds = 10.0
    churn: Share = 0.0
    media: MediaProfile = msgspec.field(default_factory=MediaProfile)


class MessageTraffic(_Section, frozen=True):
    """Message visits: families write in threads their clinician has picked up."""

    threads: Count = 0
    senders: Positive = 1
    rate_per_second: Annotated[float, msgspec.Meta(gt=0, le=100_000)] = 1.0
    attachment_share: Share = 0.0
    text_bytes: Annotated[int, msgspec.Meta(ge=1, le=8192)] = 200


class HotlineTraffic(_Section, frozen=True):
    """Pharmacist hotline: kiosks calling pharmacists who answer, talk and hang up."""

    kiosks: Count = 0
    pharmacists: Positive = 1
    calls_per_minute: Annotated[float, msgspec.Meta(gt=0, le=100_000)] = 6.0
    handle_seconds: Seconds = 2.0
    answer_delay_seconds: Seconds = 0.0
    media: bool = False


class Slo(_Section, frozen=True):
    """Thresholds the run must meet; a key left out is not checked."""

    join_success_min: Share | None = None
    join_ms_p99: Millis | None = None
    first_frame_ms_p99: Millis | None = None
    delivered_min: Share | None = None
    relay_ms_p99: Millis | None = None
    chat_ack_ms_p99: Millis | None = None
    fanout_ms_p99: Millis | None = None
    dispatch_ms_p99: Millis | None = None
    answer_rate_min: Share | None = None
    max_errors: Count | None = None


class Scenario(_Section, frozen=True):
    """One scenario file."""

    name: Annotated[str, msgspec.Meta(pattern=r"^[A-Za-z0-9_.-]{1,64}$")] = "scenario"
    duration_seconds: Annotated[float, msgspec.Meta(gt=0, le=86_400)] = 10.0
    video: VideoTraffic = msgspec.field(default_factory=VideoTraffic)
    messages: MessageTraffic = msgspec.field(default_factory=MessageTraffic)
    hotline: HotlineTraffic = msgspec.field(default_factory=HotlineTraffic)
    slo: Slo = msgspec.field(default_factory=Slo)

    def __post_init__(self) -> None:
        video, messages, hotline = self.video, self.messages, self.hotline
        if not (video.visits or messages.threads or hotline.kiosks):
            raise ValueError(
                "no traffic: set video.visits, messages.threads or hotline.kiosks - at `$`"
            )
        if video.visits and video.join_spread_seconds >= self.duration_seconds:
            raise ValueError(
                "joins must start within the run - at `$.video.join_spread_seconds`"
                f" (must be < duration_seconds = {self.duration_seconds})"
            )
        if messages.threads and messages.senders > messages.threads:
            raise ValueError(
                f"each sender needs a thread of its own - at `$.messages.senders`"
                f" (must be <= messages.threads = {messages.threads})"
            )


def parse_scenario(text: str) -> Scenario:
    """A Scenario from TOML text; ScenarioError naming the key that is wrong."""
    try:
        raw = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise ScenarioError(f"not valid TOML: {exc}") from None
    try:
        return msgspec.convert(raw, Scenario)
    except msgspec.ValidationError as exc:
        raise ScenarioError(f"invalid scenario: {exc}") from None


def load_scenario(path: Path) -> Scenario:
    """Read and parse a scenario file (blocking: call it before the event loop runs)."""
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise ScenarioError(f"cannot read {path}: {exc.strerror or exc}") from None
    return parse_scenario(text)
