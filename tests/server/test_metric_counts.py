"""Plain counters and histograms expose what prometheus_client's own would (but `_created`)."""

from __future__ import annotations

import pytest
from prometheus_client import CollectorRegistry, Counter, Histogram, generate_latest

from careline.server.metric_counts import LabelCounter, PlainHistogram

BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5)


def _exposition(registry: CollectorRegistry) -> list[str]:
    lines = generate_latest(registry).decode().splitlines()
    return [line for line in lines if "_created" not in line]


def test_same_exposition_as_prometheus_client() -> None:
    theirs, ours = CollectorRegistry(), CollectorRegistry()
    their_counter = Counter("t_events", "Events", ["event", "outcome"], registry=theirs)
    our_counter = LabelCounter("t_events", "Events", ["event", "outcome"], registry=ours)
    their_histogram = Histogram("t_seconds", "Latency", buckets=BUCKETS, registry=theirs)
    our_histogram = PlainHistogram("t_seconds", "Latency", BUCKETS, registry=ours)
    for labels in [("thread.send", "ok"), ("thread.send", "ok"), ("thread.read", "forbidden")]:
        their_counter.labels(*labels).inc()
        our_counter.inc(labels)
    their_counter.labels("thread.sync", "ok").inc(2.5)
    our_counter.inc(("thread.sync", "ok"), 2.5)
    # On a bound, between bounds, below the first and above the last.
    for value in [0.0005, 0.001, 0.003, 0.01, 0.2, 1.0, 3.0]:
        their_histogram.observe(value)
        our_histogram.observe(value)
    assert _exposition(ours) == _exposition(theirs)
    assert 't_events_total{event="thread.send",outcome="ok"} 2.0' in _exposition(ours)
    assert 't_seconds_bucket{le="+Inf"} 7.0' in _exposition(ours)


def test_a_name_is_registered_once() -> None:
    registry = CollectorRegistry()
    LabelCounter("t_events", "Events", ["event"], registry=registry)
    with pytest.raises(ValueError, match="Duplicated"):
        Counter("t_events", "Again", ["event"], registry=registry)
