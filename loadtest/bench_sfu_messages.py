"""What `careline bench sfu` and its subscriber worker processes say to each other.

One JSON object per line, tagged by `type`: the bench writes to a worker's stdin, the worker
answers on its stdout (its logs go to stderr). The order is: plan -> joined -> receiving ->
(report_request -> report)* -> stop; a worker that cannot go on says `failed` and exits.
Digests travel as base64 (msgspec's encoding of bytes).
"""

from __future__ import annotations

import msgspec

__all__ = [
    "FromWorker",
    "Joined",
    "Receiving",
    "ReportRequest",
    "Stop",
    "SubscriberReport",
    "ToWorker",
    "WorkerFailed",
    "WorkerPlan",
    "WorkerReport",
    "decode_from_worker",
    "decode_to_worker",
    "encode",
]

#: A report line carries every latency sample of up to ~20 subscribers: allow large lines.
LINE_LIMIT = 64 * 1024 * 1024


class WorkerPlan(msgspec.Struct, frozen=True, kw_only=True, tag="plan"):
    """Who the worker's subscribers are and how long they may take to start receiving."""

    url: str
    visit_id: str
    publisher_id: str
    tokens: list[str]
    warmup_frames: int
    warmup_timeout: float
    log_capacity: int
    join_concurrency: int = 10
    media_concurrency: int = 4


class Joined(msgspec.Struct, frozen=True, kw_only=True, tag="joined"):
    """Every subscriber joined and waits to be admitted (participant ids, in plan order)."""

    participant_ids: list[str]


class Receiving(msgspec.Struct, frozen=True, kw_only=True, tag="receiving"):
    """Every subscriber received `warmup_frames` frames of the publisher's video."""

    subscribers: int


class ReportRequest(msgspec.Struct, frozen=True, kw_only=True, tag="report_request"):
    """Match these departures (the measured window's) against what each subscriber received."""

    departures: list[tuple[bytes, float]]
    window_start: float
    window_end: float
    tail: float


class SubscriberReport(msgspec.Struct, frozen=True, kw_only=True):
    """One subscriber's share of the window: frames expected, matched, counted, and latencies."""

    expected: int
    matched: int
    counted: int
    """Frames completed within the window, matched or not (the transcoding baseline's count)."""
    latencies_ms: list[float]


class WorkerReport(msgspec.Struct, frozen=True, kw_only=True, tag="report"):
    """The answer to a ReportRequest."""

    subscribers: list[SubscriberReport]
    unstamped: int
    """Frames logged at their tap time for want of a completion time (should be 0)."""


class Stop(msgspec.Struct, frozen=True, kw_only=True, tag="stop"):
    """Close every subscriber and exit."""


class WorkerFailed(msgspec.Struct, frozen=True, kw_only=True, tag="failed"):
    """The worker cannot go on; `reason` is one line, without personal data."""

    reason: str


ToWorker = WorkerPlan | ReportRequest | Stop
FromWorker = Joined | Receiving | WorkerReport | WorkerFailed

_to_worker: msgspec.json.Decoder[ToWorker] = msgspec.json.Decoder(ToWorker)
_from_worker: msgspec.json.Decoder[FromWorker] = msgspec.json.Decoder(FromWorker)
_encoder = msgspec.json.Encoder()


def encode(message: ToWorker | FromWorker) -> bytes:
    """One line of JSON, newline included."""
    return _encoder.encode(message) + b"\n"


def decode_to_worker(line: bytes) -> ToWorker:
    """A line the worker read; msgspec.ValidationError/DecodeError if it is not a message."""
    return _to_worker.decode(line)


def decode_from_worker(line: bytes) -> FromWorker:
    """A line the bench read; msgspec.ValidationError/DecodeError if it is not a message."""
    return _from_worker.decode(line)
