"""`careline bench chat` runs end to end (a smoke run: the figures are in docs/benchmarks.md)."""

from __future__ import annotations

import asyncio
import json
import sys


async def test_bench_chat_prints_one_json_object() -> None:
    process = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "careline.server",
        "bench",
        "chat",
        "--json",
        "--senders",
        "2",
        "--threads",
        "4",
        "--seconds",
        "0.5",
        "--warmup",
        "0.2",
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    out, err = await asyncio.wait_for(process.communicate(), timeout=60)
    assert process.returncode == 0, err.decode()
    [line] = out.decode().strip().splitlines()
    result = json.loads(line)
    assert result["backend"] == "sqlite"
    assert result["acked"] > 0
    assert result["errors"] == {}
    for key in ("acked_per_s", "ack_ms_p50", "ack_ms_p99", "fanout_ms_p99"):
        assert result[key] > 0
    assert result["missing_deliveries"] == 0
