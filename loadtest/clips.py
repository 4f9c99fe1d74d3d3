"""Synthetic media clips: encoded once with av, cached on disk, replayed by ClipTrack.

Video is ffmpeg's `testsrc2` pattern (moving shapes and a frame counter) under temporal noise,
so every frame differs and the encoder spends its whole bitrate, as a camera would. Audio is a
stereo tone whose pitch steps every 20 ms frame. Every encoded frame's bytes are distinct: the
SFU tests match sent and received frames by content digest.

Building a clip encodes on the calling thread (about a second per 4 s of 640x480 video) and does
file I/O: it must never run on an event loop. Async callers use
`await asyncio.to_thread(video_clip, ...)`; calling it from a running loop raises
BlockingCallError. Clips are cached under `cache_dir` (msgpack, one file per parameter set,
written atomically), so several processes may build the same clip concurrently.
"""

from __future__ import annotations

import asyncio
import logging
import os
import tempfile
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path
from typing import Any, Literal, TypeVar

import av
import av.filter
import msgpack
from av.audio.frame import AudioFrame
from av.video.frame import PictureType, VideoFrame

from careline.loadtest.errors import BlockingCallError, ClipError
from careline.loadtest.frame_digest import frame_digest
from careline.loadtest.keyframes import h264_nal_types, h264_nal_units, keyframe_kind

__all__ = [
    "AUDIO_FRAME_SAMPLES",
    "AUDIO_SAMPLE_RATE",
    "VIDEO_CLOCK_RATE",
    "Clip",
    "ClipCodec",
    "ClipKind",
    "EncodedFrame",
    "audio_clip",
    "default_cache_dir",
    "keyframe_kind",
    "video_clip",
]

logger = logging.getLogger(__name__)
_T = TypeVar("_T")

ClipKind = Literal["video", "audio"]
ClipCodec = Literal["vp8", "h264", "opus"]

VIDEO_CLOCK_RATE = 90_000
AUDIO_SAMPLE_RATE = 48_000
AUDIO_FRAME_SAMPLES = 960  # 20 ms
AUDIO_BITRATE = 48_000
CACHE_FORMAT = 1

_ENCODERS: dict[str, str] = {"vp8": "libvpx", "h264": "libx264", "opus": "libopus"}
_MIME_TYPES: dict[str, str] = {"vp8": "video/VP8", "h264": "video/H264", "opus": "audio/opus"}
_ANNEX_B_START = b"\x00\x00\x00\x01"
_NOISE_STRENGTH = 12
_NOISE_SEED = 20_240_607


@dataclass(frozen=True, slots=True)
class EncodedFrame:
    """One encoded frame: its bytes, whether it is a keyframe, and its pts in the clip."""

    data: bytes
    keyframe: bool
    pts: int


@dataclass(frozen=True, slots=True)
class Clip:
    """A sequence of encoded frames of one codec, paced `frame_duration` apart.

    `time_base` is the RTP clock (1/90000 for video, 1/48000 for audio); `fps` is frames per
    second (50 for 20 ms audio); `width` and `height` are None for audio.
    """

    kind: ClipKind
    codec: ClipCodec
    time_base: Fraction
    frame_duration: int
    frames: tuple[EncodedFrame, ...]
    fps: int
    bitrate: int
    width: int | None = None
    height: int | None = None

    @property
    def mime_type(self) -> str:
        """The codec's mime type as aiortc names it ("video/VP8", "video/H264", "audio/opus")."""
        return _MIME_TYPES[self.codec]

    @property
    def frame_interval(self) -> float:
        """Seconds between two frames."""
        return float(self.frame_duration * self.time_base)

    @property
    def duration(self) -> float:
        """Seconds of media in one pass of the clip."""
        return self.frame_interval * len(self.frames)

    @property
    def keyframe_indices(self) -> tuple[int, ...]:
        """Indices of the keyframes, ascending (index 0 is always one for video)."""
        return tuple(index for index, frame in enumerate(self.frames) if frame.keyframe)

    def digests(self) -> frozenset[bytes]:
        """The content digest of every frame (see frame_digest)."""
        return frozenset(frame_digest(frame.data) for frame in self.frames)


def default_cache_dir() -> Path:
    """~/.cache/careline/clips. Callers that honour XDG_CACHE_HOME pass their own directory."""
    return Path.home() / ".cache" / "careline" / "clips"


def video_clip(
    codec: Literal["vp8", "h264"] = "vp8",
    width: int = 640,
    height: int = 480,
    fps: int = 30,
    bitrate: int = 600_000,
    seconds: float = 4.0,
    keyframe_interval: int = 30,
    cache_dir: Path | None = None,
) -> Clip:
    """A synthetic video clip, from the cache or encoded now (blocking: see the module doc).

    VP8 is libvpx realtime without alt-ref frames; H264 is libx264 constrained baseline,
    zerolatency, no B-frames, one slice per frame, Annex-B with 4-byte start codes and SPS/PPS
    before every IDR (byte-identical to what aiortc's H264 depayloader rebuilds). Frame `i` is a
    keyframe exactly when `i % keyframe_interval == 0`. `fps` must divide 90000.
    """
    _refuse_event_loop("video_clip")
    if codec not in ("vp8", "h264"):
        raise ValueError(f"video codec must be 'vp8' or 'h264', got {codec!r}")
    if width <= 0 or height <= 0 or width % 2 or height % 2:
        raise ValueError(f"width and height must be positive and even, got {width}x{height}")
    if fps <= 0 or VIDEO_CLOCK_RATE % fps:
        raise ValueError(f"fps must divide {VIDEO_CLOCK_RATE}, got {fps}")
    if bitrate <= 0 or keyframe_interval <= 0:
        raise ValueError("bitrate and keyframe_interval must be positive")
    count = _frame_count(seconds, fps)
    name = (
        f"video-{codec}-{width}x{height}-{fps}fps-{bitrate}bps-{seconds:g}s"
        f"-kf{keyframe_interval}.v{CACHE_FORMAT}.msgpack"
    )

    def encode() -> Clip:
        frames = _encode_video(codec, width, height, fps, bitrate, count, keyframe_interval)
        return Clip(
            kind="video",
            codec=codec,
            time_base=Fraction(1, VIDEO_CLOCK_RATE),
            frame_duration=VIDEO_CLOCK_RATE // fps,
            frames=frames,
            fps=fps,
            bitrate=bitrate,
            width=width,
            height=height,
        )

    return _cached(cache_dir, name, encode)


def audio_clip(seconds: float = 4.0, cache_dir: Path | None = None) -> Clip:
    """A synthetic Opus clip: 48 kHz stereo, 20 ms frames (blocking: see the module doc)."""
    _refuse_event_loop("audio_clip")
    fps = AUDIO_SAMPLE_RATE // AUDIO_FRAME_SAMPLES
    count = _frame_count(seconds, fps)
    name = f"audio-opus-{AUDIO_BITRATE}bps-{seconds:g}s.v{CACHE_FORMAT}.msgpack"

    def encode() -> Clip:
        return Clip(
            kind="audio",
            codec="opus",
            time_base=Fraction(1, AUDIO_SAMPLE_RATE),
            frame_duration=AUDIO_FRAME_SAMPLES,
            frames=_encode_audio(count),
            fps=fps,
            bitrate=AUDIO_BITRATE,
        )

    return _cached(cache_dir, name, encode)


def _refuse_event_loop(name: str) -> None:
    try:
        asyncio.get_running_loop()
    except RuntimeError:
        return
    raise BlockingCallError(f"{name} blocks (encoding, file I/O): call it with asyncio.to_thread")


def _frame_count(seconds: float, fps: int) -> int:
    count = round(seconds * fps)
    if count < 1:
        raise ValueError(f"a clip needs at least one frame, got {seconds} s at {fps} fps")
    return count


def _cached(cache_dir: Path | None, name: str, encode: Callable[[], Clip]) -> Clip:
    directory = default_cache_dir() if cache_dir is None else cache_dir
    path = directory / name
    clip = _load(path)
    if clip is not None:
        return clip
    started = time.perf_counter()
    clip = encode()
    logger.info("encoded clip %s in %.2f s", name, time.perf_counter() - started)
    _store(path, clip)
    return clip


def _load(path: Path) -> Clip | None:
    try:
        raw = path.read_bytes()
    except FileNotFoundError:
        return None
    try:
        return _from_wire(msgpack.unpackb(raw, raw=False))
    except (ValueError, TypeError, KeyError) as exc:
        logger.warning("clip cache %s is unreadable (%s): encoding again", path.name, exc)
        return None


def _store(path: Path, clip: Clip) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    payload: bytes = msgpack.packb(_to_wire(clip), use_bin_type=True)
    with tempfile.NamedTemporaryFile(dir=path.parent, prefix=".clip-", delete=False) as handle:
        handle.write(payload)
    os.replace(handle.name, path)


def _to_wire(clip: Clip) -> dict[str, Any]:
    return {
        "format": CACHE_FORMAT,
        "kind": clip.kind,
        "codec": clip.codec,
        "time_base": [clip.time_base.numerator, clip.time_base.denominator],
        "frame_duration": clip.frame_duration,
        "fps": clip.fps,
        "bitrate": clip.bitrate,
        "width": clip.width,
        "height": clip.height,
        "frames": [[frame.data, frame.keyframe, frame.pts] for frame in clip.frames],
    }


def _from_wire(value: object) -> Clip:
    if not isinstance(value, dict) or value.get("format") != CACHE_FORMAT:
        raise ValueError("not a clip of the current cache format")
    kind, codec = value["kind"], value["codec"]
    if (kind, codec) not in (("video", "vp8"), ("video", "h264"), ("audio", "opus")):
        raise ValueError(f"unknown kind/codec {kind!r}/{codec!r}")
    numerator, denominator = value["time_base"]
    frames = tuple(
        EncodedFrame(data=_typed(data, bytes), keyframe=_typed(key, bool), pts=_typed(pts, int))
        for data, key, pts in value["frames"]
    )
    if not frames:
        raise ValueError("a clip without frames")
    width, height = value["width"], value["height"]
    return Clip(
        kind=kind,
        codec=codec,
        time_base=Fraction(_typed(numerator, int), _typed(denominator, int)),
        frame_duration=_typed(value["frame_duration"], int),
        frames=frames,
        fps=_typed(value["fps"], int),
        bitrate=_typed(value["bitrate"], int),
        width=None if width is None else _typed(width, int),
        height=None if height is None else _typed(height, int),
    )


def _typed(value: object, expected: type[_T]) -> _T:
    if not isinstance(value, expected):
        raise ValueError(f"expected {expected.__name__}, got {type(value).__name__}")
    return value


def _synthetic_video(width: int, height: int, fps: int, count: int) -> Iterator[VideoFrame]:
    graph = av.filter.Graph()
    source = graph.add("testsrc2", f"size={width}x{height}:rate={fps}")
    noise = graph.add("noise", f"alls={_NOISE_STRENGTH}:allf=t:all_seed={_NOISE_SEED}")
    convert = graph.add("format", "pix_fmts=yuv420p")
    sink = graph.add("buffersink")
    source.link_to(noise)
    noise.link_to(convert)
    convert.link_to(sink)
    graph.configure()
    for _ in range(count):
        frame = sink.pull()
        assert isinstance(frame, VideoFrame)
        yield frame


def _encode_video(
    codec: str, width: int, height: int, fps: int, bitrate: int, count: int, interval: int
) -> tuple[EncodedFrame, ...]:
    context = av.CodecContext.create(_ENCODERS[codec], "w")
    assert isinstance(context, av.VideoCodecContext)
    context.width = width
    context.height = height
    context.pix_fmt = "yuv420p"
    context.time_base = Fraction(1, fps)
    context.framerate = Fraction(fps, 1)
    context.bit_rate = bitrate
    context.gop_size = interval
    context.thread_count = 1  # reproducible output; for H264 also one slice per frame
    rate_control = {"maxrate": str(bitrate), "bufsize": str(bitrate)}
    if codec == "vp8":
        context.options = {
            **rate_control,
            "deadline": "realtime",
            "cpu-used": "16",  # fastest realtime mode
            "lag-in-frames": "0",
            "auto-alt-ref": "0",  # no invisible alt-ref frames: one packet per input frame
            "minrate": str(bitrate),
            "undershoot-pct": "100",
            "overshoot-pct": "15",
        }
    else:
        context.options = {
            **rate_control,
            "profile": "baseline",
            "preset": "veryfast",
            "tune": "zerolatency",
            "forced-idr": "1",
            "x264-params": f"keyint={interval}:min-keyint={interval}:scenecut=0:bframes=0",
        }
    packets: list[bytes] = []
    for index, frame in enumerate(_synthetic_video(width, height, fps, count)):
        frame.pts = index
        frame.time_base = Fraction(1, fps)
        frame.pict_type = PictureType.I if index % interval == 0 else PictureType.NONE
        packets.extend(bytes(packet) for packet in context.encode(frame))
    packets.extend(bytes(packet) for packet in context.encode(None))
    if codec == "h264":
        packets = [_annex_b(data) for data in packets]
    frames = _frames(codec, packets, VIDEO_CLOCK_RATE // fps)
    if len(frames) != count:
        raise ClipError(f"{codec} encoder returned {len(frames)} frames for {count}")
    expected = tuple(range(0, count, interval))
    actual = tuple(index for index, frame in enumerate(frames) if frame.keyframe)
    if actual != expected:
        raise ClipError(f"{codec} keyframes at {actual[:8]}..., expected {expected[:8]}...")
    return frames


def _annex_b(data: bytes) -> bytes:
    """Re-emit an access unit with a 4-byte start code per NAL; check SPS/PPS precede an IDR."""
    normalized = b"".join(_ANNEX_B_START + unit for unit in h264_nal_units(data))
    types = h264_nal_types(normalized)
    if 5 in types:
        before_idr = types[: types.index(5)]
        if 7 not in before_idr or 8 not in before_idr:
            raise ClipError(f"H264 IDR without SPS/PPS before it (NAL types {types})")
    return normalized


def _synthetic_audio(count: int) -> Iterator[AudioFrame]:
    # The pitch steps every 20 ms frame (and cycles over 32 steps), so frames differ.
    step = "mod(floor(t*50)\\,32)"
    left = f"0.3*sin(2*PI*(300+25*{step})*t)"
    right = f"0.3*sin(2*PI*(450+25*{step})*t)"
    graph = av.filter.Graph()
    source = graph.add(
        "aevalsrc", f"exprs={left}|{right}:s={AUDIO_SAMPLE_RATE}:n={AUDIO_FRAME_SAMPLES}"
    )
    convert = graph.add(
        "aformat", f"sample_fmts=s16:channel_layouts=stereo:sample_rates={AUDIO_SAMPLE_RATE}"
    )
    sink = graph.add("abuffersink")
    source.link_to(convert)
    convert.link_to(sink)
    graph.configure()
    for _ in range(count):
        frame = sink.pull()
        assert isinstance(frame, AudioFrame)
        yield frame


def _encode_audio(count: int) -> tuple[EncodedFrame, ...]:
    context = av.CodecContext.create(_ENCODERS["opus"], "w")
    assert isinstance(context, av.AudioCodecContext)
    context.sample_rate = AUDIO_SAMPLE_RATE
    context.layout = "stereo"
    context.format = "s16"
    context.bit_rate = AUDIO_BITRATE
    context.time_base = Fraction(1, AUDIO_SAMPLE_RATE)
    context.options = {"application": "voip", "frame_duration": "20"}
    packets: list[bytes] = []
    for index, frame in enumerate(_synthetic_audio(count)):
        frame.pts = index * AUDIO_FRAME_SAMPLES
        frame.time_base = Fraction(1, AUDIO_SAMPLE_RATE)
        packets.extend(bytes(packet) for packet in context.encode(frame))
    packets.extend(bytes(packet) for packet in context.encode(None))
    return _frames("opus", packets, AUDIO_FRAME_SAMPLES)


def _frames(codec: str, packets: list[bytes], duration: int) -> tuple[EncodedFrame, ...]:
    if len({frame_digest(data) for data in packets}) != len(packets):
        raise ClipError(f"{codec} encoder produced two identical frames")
    return tuple(
        EncodedFrame(data=data, keyframe=keyframe_kind(codec, data), pts=index * duration)
        for index, data in enumerate(packets)
    )
