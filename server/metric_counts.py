"""Counters and a histogram kept in plain Python values and exported when /metrics is scraped.

prometheus_client's Counter and Histogram take a lock and check their labels on every call; the
chat path counts an event, a stored entry and a store latency for every message, a few µs each
on the event loop. These keep a dict of numbers (label values -> count) that only the event loop
updates, and hand prometheus_client the same families (`<name>_total`, `_bucket`/`_count`/`_sum`)
when the registry collects. Event-loop use only; a scrape from another thread reads a copy.
"""

from __future__ import annotations

import bisect
from collections.abc import Iterator, Sequence

from prometheus_client import CollectorRegistry
from prometheus_client.core import CounterMetricFamily, HistogramMetricFamily, Metric
from prometheus_client.registry import Collector


class LabelCounter(Collector):
    """A counter with labels, counted in a dict."""

    def __init__(
        self, name: str, documentation: str, labels: Sequence[str], registry: CollectorRegistry
    ) -> None:
        self._name = name
        self._documentation = documentation
        self._labels = list(labels)
        self.counts: dict[tuple[str, ...], float] = {}
        registry.register(self)

    def inc(self, values: tuple[str, ...], amount: float = 1.0) -> None:
        """Add `amount` to the count of these label values (one per label, in order)."""
        counts = self.counts
        counts[values] = counts.get(values, 0.0) + amount

    def collect(self) -> Iterator[Metric]:
        """The family prometheus_client exposes (as `<name>_total`)."""
        family = CounterMetricFamily(self._name, self._documentation, labels=self._labels)
        for values, count in list(self.counts.items()):
            family.add_metric(list(values), count)
        yield family

    def describe(self) -> Iterator[Metric]:
        """The family's name, so that the registry refuses a second metric of that name."""
        yield CounterMetricFamily(self._name, self._documentation, labels=self._labels)


class PlainHistogram(Collector):
    """A histogram without labels, counted in a list of bucket counts."""

    def __init__(
        self,
        name: str,
        documentation: str,
        buckets: Sequence[float],
        registry: CollectorRegistry,
    ) -> None:
        self._name = name
        self._documentation = documentation
        self._bounds = sorted(float(b) for b in buckets)
        self._counts = [0] * (len(self._bounds) + 1)  # the last one: above every bound (+Inf)
        self._sum = 0.0
        registry.register(self)

    def observe(self, value: float) -> None:
        """Count one observation (in the first bucket whose bound it does not exceed)."""
        self._counts[bisect.bisect_left(self._bounds, value)] += 1
        self._sum += value

    def collect(self) -> Iterator[Metric]:
        """Cumulative buckets, count and sum, as prometheus_client's Histogram exposes them."""
        counts = list(self._counts)
        total = self._sum
        cumulative: list[tuple[str, float]] = []
        running = 0
        for bound, count in zip([*self._bounds, float("inf")], counts, strict=True):
            running += count
            cumulative.append(("+Inf" if bound == float("inf") else _bound(bound), running))
        family = HistogramMetricFamily(self._name, self._documentation)
        family.add_metric([], cumulative, total)
        yield family

    def describe(self) -> Iterator[Metric]:
        """The family's name, so that the registry refuses a second metric of that name."""
        yield HistogramMetricFamily(self._name, self._documentation)


def _bound(value: float) -> str:
    """A bucket bound as prometheus_client writes it (`0.005`, `1.0`)."""
    return repr(float(value))
