"""What a load run measures: latency samples over time, counters and errors by code.

Every process of a run (the parent and each worker) keeps one LoadMetrics; workers ship a
MetricsState (msgspec, so it crosses the pipe as it is) and the parent merges them. Sample times
are seconds since the run's start on time.monotonic() (one clock for every process of a Linux
host). Samples per metric are capped (`MAX_SAMPLES`; beyond it one in two is kept, then one in
four, ...), so a long run keeps a bounded, evenly thinned record; counters stay exact.
"""

from __future__ import annotations

import time
from collections import Counter

import msgspec

#: Latency metrics, in milliseconds.
LATENCIES = (
    "join_ms",
    "first_frame_ms",
    "relay_ms",
    "chat_ack_ms",
    "fanout_ms",
    "dispatch_ms",
    "replay_ack_ms",
)
#: Counters a report shows (others may be counted too).
COUNTERS = (
    "joins_attempted",
    "joins_ok",
    "frames_expected",
    "frames_delivered",
    "messages_sent",
    "messages_acked",
    "attachments_sent",
    "calls_placed",
    "calls_answered",
)
MAX_SAMPLES = 50_000


class Series(msgspec.Struct):
    """One latency metric: (seconds since start, milliseconds) pairs, thinned by `stride`."""

    samples: list[tuple[float, float]] = msgspec.field(default_factory=list)
    stride: int = 1
    seen: int = 0


class MetricsState(msgspec.Struct):
    """A process's measurements, as they cross to the parent."""

    series: dict[str, Series] = msgspec.field(default_factory=dict)
    counters: dict[str, int] = msgspec.field(default_factory=dict)
    errors: dict[str, int] = msgspec.field(default_factory=dict)


class LoadMetrics:
    """Records samples, counters and errors of one process. Not thread-safe (one loop)."""

    def __init__(self, started_at: float, max_samples: int = MAX_SAMPLES) -> None:
        self.started_at = started_at
        self._max = max_samples
        self._series: dict[str, Series] = {}
        self.counters: Counter[str] = Counter()
        self.errors: Counter[str] = Counter()

    def elapsed(self) -> float:
        """Seconds since the run started."""
        return time.monotonic() - self.started_at

    def latency(self, name: str, millis: float, at: float | None = None) -> None:
        """One sample of `name` (ms), taken at monotonic time `at` (default now)."""
        series = self._series.get(name)
        if series is None:
            series = self._series[name] = Series()
        series.seen += 1
        if series.seen % series.stride:
            return
        moment = (time.monotonic() if at is None else at) - self.started_at
        series.samples.append((round(moment, 4), round(millis, 3)))
        if len(series.samples) >= self._max:
            series.samples = series.samples[::2]
            series.stride *= 2

    def count(self, name: str, amount: int = 1) -> None:
        """Add to counter `name`."""
        self.counters[name] += amount

    def error(self, code: str, amount: int = 1) -> None:
        """Count an error by its code (a protocol code or a loadtest.* code)."""
        self.errors[code] += amount

    def values(self, name: str) -> list[float]:
        """The kept samples of `name`, in milliseconds."""
        series = self._series.get(name)
        return [value for _, value in series.samples] if series is not None else []

    def samples(self, name: str) -> list[tuple[float, float]]:
        """The kept (seconds since start, ms) samples of `name`, in recording order."""
        series = self._series.get(name)
        return list(series.samples) if series is not None else []

    def names(self) -> list[str]:
        """Every latency metric with samples."""
        return [name for name, series in self._series.items() if series.samples]

    def state(self) -> MetricsState:
        """A copy of everything recorded, for the parent."""
        return MetricsState(
            series={
                name: Series(list(s.samples), s.stride, s.seen) for name, s in self._series.items()
            },
            counters=dict(self.counters),
            errors=dict(self.errors),
        )

    def merge(self, state: MetricsState) -> None:
        """Add a worker's measurements (recorded on the same clock and start)."""
        for name, theirs in state.series.items():
            mine = self._series.get(name)
            if mine is None:
                mine = self._series[name] = Series()
            mine.samples.extend(theirs.samples)
            mine.samples.sort()
            mine.seen += theirs.seen
            mine.stride = max(mine.stride, theirs.stride)
        self.counters.update(state.counters)
        self.errors.update(state.errors)
