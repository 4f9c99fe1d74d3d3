"""The summary of a load run (`summary.json`): percentiles, rates, errors, CPU and SLO verdicts."""

from __future__ import annotations

import msgspec

from careline.loadtest.load_metrics import COUNTERS, LATENCIES, LoadMetrics
from careline.loadtest.percentiles import percentile
from careline.loadtest.slo_check import SloCheck, ratio


class LatencySummary(msgspec.Struct, frozen=True):
    """HDR-style percentiles of one latency metric, in milliseconds."""

    count: int
    p50: float
    p90: float
    p99: float
    max: float


class GeneratorCpu(msgspec.Struct, frozen=True):
    """CPU of the load generator over the run, in % of one core (100 = one core busy)."""

    total_pct: float
    per_process_pct: list[float]
    host_pct: float
    cpu_count: int
    server_pct: float | None = None


class RunSummary(msgspec.Struct, frozen=True):
    """Everything `summary.json` holds; `passed` is the SLO verdict (False when interrupted)."""

    scenario: str
    target: str
    started_at: float
    elapsed_seconds: float
    workers: int
    interrupted: bool
    failure: str | None
    latency_ms: dict[str, LatencySummary]
    rates: dict[str, float | None]
    counters: dict[str, int]
    errors: dict[str, int]
    errors_total: int
    generator_cpu: GeneratorCpu | None
    slo: list[SloCheck]
    passed: bool

    @property
    def reasons(self) -> list[str]:
        """Why the run did not pass, one line each."""
        lines = [check.reason for check in self.slo if not check.passed]
        if self.failure:
            lines.insert(0, self.failure)
        if self.interrupted:
            lines.insert(0, "interrupted (Ctrl-C): partial results")
        return lines


def latency_summary(values: list[float]) -> LatencySummary:
    """p50/p90/p99/max of samples (ms)."""
    return LatencySummary(
        count=len(values),
        p50=round(percentile(values, 0.5), 2),
        p90=round(percentile(values, 0.9), 2),
        p99=round(percentile(values, 0.99), 2),
        max=round(max(values), 2),
    )


def summarize(
    *,
    scenario: str,
    target: str,
    started_at: float,
    elapsed: float,
    workers: int,
    metrics: LoadMetrics,
    cpu: GeneratorCpu | None,
    checks: list[SloCheck],
    interrupted: bool,
    failure: str | None,
) -> RunSummary:
    """The summary of a finished (or interrupted) run."""
    latency = {}
    for name in LATENCIES:
        values = metrics.values(name)
        if values:
            latency[name] = latency_summary(values)
    counters = {name: metrics.counters.get(name, 0) for name in COUNTERS}
    counters.update(metrics.counters)
    rates = {
        "join_success": ratio(counters, "joins_ok", "joins_attempted"),
        "delivered": ratio(counters, "frames_delivered", "frames_expected"),
        "answer_rate": ratio(counters, "calls_answered", "calls_placed"),
        "messages_per_second": round(counters["messages_acked"] / elapsed, 2) if elapsed else None,
    }
    return RunSummary(
        scenario=scenario,
        target=target,
        started_at=round(started_at, 3),
        elapsed_seconds=round(elapsed, 3),
        workers=workers,
        interrupted=interrupted,
        failure=failure,
        latency_ms=latency,
        rates={k: (round(v, 5) if v is not None else None) for k, v in rates.items()},
        counters=dict(sorted(counters.items())),
        errors=dict(sorted(metrics.errors.items())),
        errors_total=sum(metrics.errors.values()),
        generator_cpu=cpu,
        slo=checks,
        passed=not interrupted and failure is None and all(c.passed for c in checks),
    )
