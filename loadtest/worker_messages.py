"""What the load tester's parent and its worker processes say to each other: JSON lines.

Parent -> worker on stdin: one WorkerStart, later at most one WorkerStop. Worker -> parent on
stdout: WorkerProgress about twice a second, then one WorkerDone (or WorkerCrashed).
"""

from __future__ import annotations

import msgspec

from careline.loadtest.load_metrics import MetricsState
from careline.loadtest.load_plan import LoadShare, TokenConfig
from careline.loadtest.scenario import Scenario

#: Longest line either side reads (a WorkerDone carries every sample of the worker).
LINE_LIMIT = 256 * 1024 * 1024


class WorkerStart(msgspec.Struct, tag="start", frozen=True):
    """Generate `share` of `scenario` against `url` from `started_at` (time.monotonic())."""

    scenario: Scenario
    share: LoadShare
    url: str
    tokens: TokenConfig
    run_id: str
    seed: int
    started_at: float
    clip_cache: str | None = None
    media_addresses: tuple[str, ...] = ("127.0.0.1",)


class WorkerStop(msgspec.Struct, tag="stop", frozen=True):
    """End early (the operator pressed Ctrl-C): wind down and report."""


class WorkerProgress(msgspec.Struct, tag="progress", frozen=True):
    """Counters and errors so far (for the live display)."""

    counters: dict[str, int]
    errors: dict[str, int]


class WorkerDone(msgspec.Struct, tag="done", frozen=True):
    """Everything the worker measured, and the CPU seconds it used doing it."""

    metrics: MetricsState
    cpu_seconds: float


class WorkerCrashed(msgspec.Struct, tag="crashed", frozen=True):
    """The worker could not go on; `code` and a one-line reason."""

    code: str
    reason: str
    metrics: MetricsState
    cpu_seconds: float


ToWorker = WorkerStart | WorkerStop
FromWorker = WorkerProgress | WorkerDone | WorkerCrashed

_TO_WORKER = msgspec.json.Decoder(ToWorker)
_FROM_WORKER = msgspec.json.Decoder(FromWorker)
_ENCODER = msgspec.json.Encoder()


def encode_line(message: ToWorker | FromWorker) -> bytes:
    """One JSON line."""
    return _ENCODER.encode(message) + b"\n"


def decode_to_worker(line: bytes) -> ToWorker:
    """A parent's message (msgspec errors if unreadable)."""
    message: ToWorker = _TO_WORKER.decode(line)
    return message


def decode_from_worker(line: bytes) -> FromWorker:
    """A worker's message (msgspec errors if unreadable)."""
    message: FromWorker = _FROM_WORKER.decode(line)
    return message
