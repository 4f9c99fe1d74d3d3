"""`careline bench hotline` runs end to end on a small shape (a smoke test, never a timing test)."""

from __future__ import annotations

import pytest

from careline.loadtest.bench_hotline import HotlineBenchConfig, run_hotline_bench


async def test_small_benchmark_dispatches_every_call_once() -> None:
    config = HotlineBenchConfig(
        kiosks=20, pharmacists=4, rate=20.0, seconds=1.5, warmup_seconds=0.5, talk_seconds=0.05
    )
    result = await run_hotline_bench(config)
    assert result.calls >= 20
    assert result.double_dispatches == 0
    assert result.errors == {}
    assert 0 < result.dispatch_ms_p50 <= result.dispatch_ms_p99 <= result.dispatch_ms_max
    assert result.server_cpu_pct > 0
    assert set(result.to_json()) >= {
        "calls",
        "dispatch_ms_p50",
        "dispatch_ms_p99",
        "double_dispatches",
        "server_cpu_pct",
    }


def test_bad_shapes_are_refused() -> None:
    with pytest.raises(ValueError, match="kiosks"):
        HotlineBenchConfig(kiosks=0)
    with pytest.raises(ValueError, match="rate"):
        HotlineBenchConfig(rate=0)
