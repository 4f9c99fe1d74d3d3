"""Which frames a publisher sent reached a subscriber, and how late: matched by content digest.

The publisher logs (digest, departure time) per frame, the subscriber (digest, completion time)
per frame it received, both on time.monotonic() (CLOCK_MONOTONIC, one clock for every process of
a Linux host). A frame sent in the measured window counts as expected; it counts as delivered
when an arrival with the same digest completed no earlier than `early` seconds before it left and
at most `tail` seconds after. A clip loops, so one digest is sent again each pass: `tail` must be
shorter than the gap between two sends of a frame (a pass of the clip), and each arrival is
matched to one departure at most.
"""

from __future__ import annotations

import bisect
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

#: An arrival may be stamped this much before its departure (two processes read the clock at
#: slightly different points of the same loopback send); anything earlier is another send.
DEFAULT_EARLY = 0.002

Stamp = tuple[bytes, float]
"""(frame digest, time.monotonic() of its departure or completed arrival)."""


@dataclass(frozen=True, slots=True)
class Delivery:
    """What one subscriber received of the frames sent in a window."""

    expected: int
    matched: int
    latencies: tuple[float, ...]
    """Seconds from departure to completed arrival, one per matched frame, in departure order."""

    @property
    def ratio(self) -> float:
        """Matched / expected (1.0 when nothing was expected)."""
        return self.matched / self.expected if self.expected else 1.0


def match_frames(
    departures: Sequence[Stamp],
    arrivals: Iterable[Stamp],
    tail: float,
    early: float = DEFAULT_EARLY,
) -> Delivery:
    """Match the window's `departures` against a subscriber's `arrivals` (any order, any span).

    Arrivals of frames sent outside the window simply match nothing.
    """
    if tail <= 0 or early < 0:
        raise ValueError("tail must be positive and early not negative")
    by_digest: dict[bytes, list[float]] = {}
    for digest, completed in arrivals:
        by_digest.setdefault(digest, []).append(completed)
    for moments in by_digest.values():
        moments.sort()
    next_unused: dict[bytes, int] = {}
    latencies: list[float] = []
    for digest, sent in sorted(departures, key=lambda stamp: stamp[1]):
        times = by_digest.get(digest)
        if not times:
            continue
        index = max(bisect.bisect_left(times, sent - early), next_unused.get(digest, 0))
        if index < len(times) and times[index] <= sent + tail:
            latencies.append(times[index] - sent)
            next_unused[digest] = index + 1
    return Delivery(expected=len(departures), matched=len(latencies), latencies=tuple(latencies))


def count_between(times: Iterable[float], start: float, end: float) -> int:
    """How many of `times` fall within [start, end] (frames counted, not matched)."""
    return sum(1 for moment in times if start <= moment <= end)
