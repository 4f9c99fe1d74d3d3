"""`careline bench hotline`: the hotline benchmark's flags, and printing its result.

The benchmark (careline.loadtest.bench_hotline) starts its own `careline serve` child on this
machine. `--json` prints exactly one JSON object on stdout; progress goes to stderr. A failure
is one line on stderr and exit code 1.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys

from careline.loadtest.bench_hotline import (
    HotlineBenchConfig,
    HotlineBenchResult,
    format_table,
    run_hotline_bench,
)
from careline.loadtest.errors import BenchFailed
from careline.server.logging_setup import configure_logging


def add_hotline_parser(
    bench_commands: argparse._SubParsersAction[argparse.ArgumentParser],
) -> None:
    """`careline bench hotline` and its flags (sets `run_bench` for the CLI to call)."""
    hotline = bench_commands.add_parser(
        "hotline",
        help="hotline dispatch latency: kiosks calling at a steady rate, simulated pharmacists",
    )
    hotline.add_argument("--kiosks", type=int, default=500, help="kiosks (default 500)")
    hotline.add_argument("--pharmacists", type=int, default=50, help="pharmacists (default 50)")
    hotline.add_argument("--rate", type=float, default=50.0, help="calls per second (default 50)")
    hotline.add_argument("--seconds", type=float, default=20.0, help="measured window (default 20)")
    hotline.add_argument("--warmup", type=float, default=3.0, help="seconds before measuring")
    hotline.add_argument(
        "--talk", type=float, default=0.2, help="seconds a pharmacist talks (default 0.2)"
    )
    hotline.add_argument("--json", action="store_true", help="print one JSON object")
    hotline.set_defaults(run_bench=run_hotline)


def run_hotline(args: argparse.Namespace) -> int:
    """Run `careline bench hotline` and print its result."""
    try:
        config = HotlineBenchConfig(
            kiosks=args.kiosks,
            pharmacists=args.pharmacists,
            rate=args.rate,
            seconds=args.seconds,
            warmup_seconds=args.warmup,
            talk_seconds=args.talk,
        )
    except ValueError as exc:
        sys.stderr.write(f"careline: bench hotline: {exc}\n")
        return 2
    configure_logging("info")
    try:
        result = _run(config).to_json()
    except BenchFailed as exc:
        sys.stderr.write(f"careline: bench hotline: {exc.message}\n")
        return 1
    if args.json:
        sys.stdout.write(json.dumps(result) + "\n")
    else:
        sys.stdout.write(format_table(result))
    return 0


def _run(config: HotlineBenchConfig) -> HotlineBenchResult:
    """Run on uvloop when it is installed, as `careline serve` does."""
    try:
        import uvloop
    except ImportError:  # pragma: no cover - uvloop is a dependency on POSIX
        return asyncio.run(run_hotline_bench(config))
    return uvloop.run(run_hotline_bench(config))
