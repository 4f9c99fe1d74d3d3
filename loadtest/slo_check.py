"""Judging a run against its scenario's SLOs: one check per threshold set, with the reason."""

from __future__ import annotations

from collections.abc import Mapping

import msgspec

from careline.loadtest.load_metrics import LoadMetrics
from careline.loadtest.percentiles import percentile
from careline.loadtest.scenario import Slo

#: SLO key -> latency metric whose p99 it bounds.
_P99 = {
    "join_ms_p99": "join_ms",
    "first_frame_ms_p99": "first_frame_ms",
    "relay_ms_p99": "relay_ms",
    "chat_ack_ms_p99": "chat_ack_ms",
    "fanout_ms_p99": "fanout_ms",
    "dispatch_ms_p99": "dispatch_ms",
}


class SloCheck(msgspec.Struct, frozen=True):
    """One threshold: what was measured and whether it holds; `reason` says why not."""

    key: str
    limit: float
    actual: float | None
    passed: bool
    reason: str = ""


def ratio(counters: Mapping[str, int], part: str, whole: str) -> float | None:
    """counters[part] / counters[whole], or None when nothing was counted."""
    total = counters.get(whole, 0)
    return counters.get(part, 0) / total if total else None


def check_slos(slo: Slo, metrics: LoadMetrics) -> list[SloCheck]:
    """Every SLO the scenario sets, judged on what `metrics` recorded."""
    checks: list[SloCheck] = []
    counters = metrics.counters
    for key in slo.__struct_fields__:
        limit = getattr(slo, key)
        if limit is None:
            continue
        if key in _P99:
            values = metrics.values(_P99[key])
            actual = percentile(values, 0.99) if values else None
            checks.append(_at_most(key, float(limit), actual, "p99"))
        elif key == "join_success_min":
            checks.append(_at_least(key, limit, ratio(counters, "joins_ok", "joins_attempted")))
        elif key == "delivered_min":
            delivered = ratio(counters, "frames_delivered", "frames_expected")
            checks.append(_at_least(key, limit, delivered))
        elif key == "answer_rate_min":
            answered = ratio(counters, "calls_answered", "calls_placed")
            checks.append(_at_least(key, limit, answered))
        elif key == "max_errors":
            checks.append(_at_most(key, float(limit), float(sum(metrics.errors.values())), ""))
    return checks


def _at_most(key: str, limit: float, actual: float | None, what: str) -> SloCheck:
    if actual is None:
        return SloCheck(key, limit, None, False, f"{key}: nothing was measured")
    if actual <= limit:
        return SloCheck(key, limit, round(actual, 3), True)
    measured = f"{what} {actual:.1f}" if what else f"{actual:g}"
    return SloCheck(key, limit, round(actual, 3), False, f"{key}: {measured} > {limit:g}")


def _at_least(key: str, limit: float, actual: float | None) -> SloCheck:
    if actual is None:
        return SloCheck(key, limit, None, False, f"{key}: nothing was measured")
    if actual >= limit:
        return SloCheck(key, limit, round(actual, 5), True)
    return SloCheck(key, limit, round(actual, 5), False, f"{key}: {actual:.4f} < {limit:g}")
