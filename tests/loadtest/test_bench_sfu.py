"""`careline bench sfu`: the real benchmark end to end (tiny), its accounting and its failures."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from careline.loadtest.bench_sfu import (
    PhaseResult,
    SfuBenchConfig,
    SfuBenchResult,
    _split,
    delivered_ratio,
    format_table,
    run_sfu_bench,
)
from careline.loadtest.bench_sfu_messages import (
    ReportRequest,
    SubscriberReport,
    WorkerFailed,
    WorkerReport,
    decode_from_worker,
    decode_to_worker,
    encode,
)
from careline.loadtest.errors import BenchFailed
from careline.loadtest.local_server import LocalServer
from careline.server.cli import main

REQUIRED_KEYS = {
    "subscribers",
    "cpu_pct_per_stream",
    "delivered_ratio",
    "latency_ms_p50",
    "latency_ms_p95",
    "rss_kb_per_subscriber",
    "baseline_cpu_pct_per_stream",
    "baseline_ratio",
}


def phase(forwarding: str, subscribers: int, server_cpu: float) -> PhaseResult:
    return PhaseResult(
        forwarding="encoded" if forwarding == "encoded" else "transcode",
        subscribers=subscribers,
        workers=1,
        frames_sent=300,
        server_cpu_pct=server_cpu,
        delivered_ratio=0.999,
        delivered_ratio_min=0.99,
        counted_ratio=1.0,
        latencies_ms=(1.0, 2.0, 3.0, 4.0, 10.0),
        rss_kb_before=100_000,
        rss_kb_after=110_000,
        loadgen_cpu_pct=20.0,
        loadgen_worker_cpu_pct_max=20.0,
        publisher_cpu_pct=1.5,
        host_cpu_pct=50.0,
        unstamped=0,
        warmup_seconds=2.0,
    )


def test_the_result_has_every_key_the_issue_asks_for() -> None:
    config = SfuBenchConfig(subscribers=40)
    result = SfuBenchResult(
        config, 600.0, 0.1, phase("encoded", 40, 10.0), phase("transcode", 10, 100.0)
    ).to_json()
    assert set(result) >= REQUIRED_KEYS
    assert result["cpu_pct_per_stream"] == 0.25
    assert result["baseline_cpu_pct_per_stream"] == 10.0
    assert result["baseline_ratio"] == 40.0
    assert result["rss_kb_per_subscriber"] == 250.0
    assert result["latency_ms_p50"] == 3.0
    assert result["latency_ms_p95"] == pytest.approx(8.8)
    assert result["media"] == "video"
    assert result["host_other_cpu_pct"] == pytest.approx(50.0 - 10.0 - 20.0 - 1.5)
    json.dumps(result)  # JSON-ready
    table = format_table(result)
    assert "cpu_pct_per_stream: 0.25" in table
    assert len(table.splitlines()) == len(result)


def test_without_a_baseline_its_keys_are_null() -> None:
    config = SfuBenchConfig(subscribers=4, baseline=False)
    assert config.baseline_count == 0
    result = SfuBenchResult(config, 600.0, 0.1, phase("encoded", 4, 2.0)).to_json()
    assert set(result) >= REQUIRED_KEYS
    assert result["baseline_ratio"] is None
    assert result["baseline_cpu_pct_per_stream"] is None


def test_config_defaults_and_checks() -> None:
    assert SfuBenchConfig(subscribers=80).workers_for(80) == 4
    assert SfuBenchConfig(subscribers=41).workers_for(41) == 3
    assert SfuBenchConfig(subscribers=2, workers=5).workers_for(2) == 2
    assert SfuBenchConfig(subscribers=40).baseline_count == 10
    assert SfuBenchConfig(subscribers=3).baseline_count == 3
    assert SfuBenchConfig(subscribers=40, baseline_subscribers=4).baseline_count == 4
    for bad in ({"subscribers": 0}, {"seconds": 0}, {"workers": 0}, {"tail_seconds": 6.0}):
        with pytest.raises(ValueError, match="must"):
            SfuBenchConfig(**bad)


def test_subscribers_are_spread_evenly_over_workers() -> None:
    tokens = [f"t{i}" for i in range(7)]
    chunks = _split(tokens, 3)
    assert [len(chunk) for chunk in chunks] == [3, 2, 2]
    assert [t for chunk in chunks for t in chunk] == tokens


def test_delivered_ratio_sums_over_subscribers() -> None:
    reports = [
        SubscriberReport(expected=600, matched=600, counted=600, latencies_ms=[]),
        SubscriberReport(expected=600, matched=594, counted=596, latencies_ms=[]),
    ]
    assert delivered_ratio(reports) == pytest.approx(1194 / 1200)


def test_messages_round_trip_with_binary_digests() -> None:
    request = ReportRequest(
        departures=[(b"\x00\xff" * 8, 12.5)], window_start=1.0, window_end=2.0, tail=1.0
    )
    assert decode_to_worker(encode(request)) == request
    report = WorkerReport(
        subscribers=[SubscriberReport(expected=1, matched=1, counted=1, latencies_ms=[0.5])],
        unstamped=0,
    )
    assert decode_from_worker(encode(report)) == report
    assert encode(WorkerFailed(reason="x")).endswith(b"\n")


async def test_a_server_that_does_not_start_is_one_clear_line(tmp_path: Path) -> None:
    command = (sys.executable, "-c", "import sys; sys.stderr.write('boom: no luck\\n')")
    server = LocalServer(tmp_path / "server", {"media": {"forwarding": "encoded"}}, command=command)
    with pytest.raises(BenchFailed, match="the server did not start: boom: no luck"):
        await server.start()
    await server.stop()  # safe again
    text = (tmp_path / "server" / "careline.toml").read_text()
    assert 'forwarding = "encoded"' in text
    assert "secret = " in text


def test_bad_flags_are_one_line_and_exit_2(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["bench", "sfu", "--subscribers", "0"]) == 2
    assert capsys.readouterr().err == "careline: bench sfu: --subscribers must be within 1..256\n"


@pytest.mark.slow
@pytest.mark.usefixtures("loopback")
async def test_subscribers_that_never_get_frames_fail_in_one_line(tmp_path: Path) -> None:
    config = SfuBenchConfig(
        subscribers=1,
        seconds=1.0,
        baseline=False,
        width=320,
        height=240,
        bitrate=300_000,
        clip_seconds=4.0,
        keyframe_interval=30,
        clip_cache=tmp_path / "clips",
        warmup_frames=10**6,
        warmup_timeout=2.0,
    )
    with pytest.raises(BenchFailed, match=r"worker 0: subscribers never got frames: 0 of 1"):
        await run_sfu_bench(config)


@pytest.mark.slow
def test_the_benchmark_runs_end_to_end(tmp_path: Path) -> None:
    command = [sys.executable, "-m", "careline.server", "bench", "sfu", "--json"]
    command += ["--subscribers", "2", "--seconds", "3", "--baseline-subscribers", "1"]
    command += ["--width", "320", "--height", "240", "--bitrate-kbps", "300"]
    command += ["--clip-cache", str(tmp_path / "clips")]
    done = subprocess.run(command, capture_output=True, text=True, timeout=100, check=False)
    assert done.returncode == 0, done.stderr[-2000:]
    (line,) = done.stdout.splitlines()  # exactly one JSON object on stdout
    result = json.loads(line)
    assert set(result) >= REQUIRED_KEYS
    assert result["subscribers"] == 2
    assert result["baseline_subscribers"] == 1
    assert result["codec"] == "vp8"
    assert result["media"] == "video"
    assert result["frames_sent"] > 60
    assert result["delivered_ratio"] > 0.9
    assert 0 < result["latency_ms_p50"] <= result["latency_ms_p95"] < 500
    assert result["unstamped_frames"] == 0
    assert result["cpu_pct_per_stream"] > 0
    assert result["baseline_cpu_pct_per_stream"] > 0
    assert result["baseline_ratio"] > 1
    assert result["loadgen_cpu_pct"] > 0
    assert result["rss_kb_after"] > 0
