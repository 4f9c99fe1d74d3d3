"""`careline bench sfu`: the SFU benchmark's flags, and printing its result.

The benchmark itself (careline.loadtest.bench_sfu) starts its own `careline serve` children, so
it measures this installation on this machine. `--json` prints exactly one JSON object on
stdout; logs go to stderr. A failure is one line on stderr and exit code 1.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
from collections.abc import Callable, Coroutine
from pathlib import Path
from typing import Any, TypeVar

from careline.loadtest.bench_sfu import SfuBenchConfig, format_table, run_sfu_bench
from careline.loadtest.errors import BenchFailed
from careline.server.logging_setup import configure_logging
from careline.signaling.visit_schemas import MAX_INVITEES

_T = TypeVar("_T")


def add_sfu_parser(bench_commands: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """`careline bench sfu` and its flags (sets `run_bench` for the CLI to call)."""
    sfu = bench_commands.add_parser(
        "sfu",
        help="server CPU, delivery and added latency per forwarded video stream",
        description=(
            "One publisher and N subscribers through a throwaway local server, then the same "
            "shape through aiortc's decode-and-encode MediaRelay as a baseline."
        ),
    )
    sfu.add_argument("--subscribers", type=int, default=40, help="subscribers (default 40)")
    sfu.add_argument("--seconds", type=float, default=20.0, help="measured window (default 20)")
    sfu.add_argument("--codec", choices=["vp8", "h264"], default="vp8")
    sfu.add_argument("--workers", type=int, help="subscriber processes (default: 20 per worker)")
    sfu.add_argument(
        "--baseline-subscribers",
        type=int,
        help="subscribers of the transcoding baseline (default: min(subscribers, 10))",
    )
    sfu.add_argument("--no-baseline", action="store_true", help="skip the transcoding baseline")
    sfu.add_argument("--audio", action="store_true", help="publish Opus audio too")
    sfu.add_argument("--width", type=int, default=640)
    sfu.add_argument("--height", type=int, default=480)
    sfu.add_argument("--bitrate-kbps", type=int, default=600, help="clip bitrate (default 600)")
    sfu.add_argument("--clip-cache", type=Path, help="clip cache (~/.cache/careline/clips)")
    sfu.add_argument("--json", action="store_true", help="print one JSON object")
    sfu.set_defaults(run_bench=run_sfu)


def run_sfu(args: argparse.Namespace) -> int:
    """Run `careline bench sfu` and print its result."""
    if not 1 <= args.subscribers <= MAX_INVITEES:
        return _usage(f"--subscribers must be within 1..{MAX_INVITEES}")
    if args.baseline_subscribers is not None and not (
        1 <= args.baseline_subscribers <= MAX_INVITEES
    ):
        return _usage(f"--baseline-subscribers must be within 1..{MAX_INVITEES}")
    try:
        config = SfuBenchConfig(
            subscribers=args.subscribers,
            seconds=args.seconds,
            codec=args.codec,
            workers=args.workers,
            baseline=not args.no_baseline,
            baseline_subscribers=args.baseline_subscribers,
            audio=args.audio,
            width=args.width,
            height=args.height,
            bitrate=args.bitrate_kbps * 1000,
            clip_cache=args.clip_cache,
        )
    except ValueError as exc:
        return _usage(str(exc))
    configure_logging("info")  # progress on stderr; stdout carries only the result
    try:
        result = _run(lambda: run_sfu_bench(config)).to_json()
    except BenchFailed as exc:
        sys.stderr.write(f"careline: bench sfu: {exc.message}\n")
        return 1
    if args.json:
        sys.stdout.write(json.dumps(result) + "\n")
    else:
        sys.stdout.write(format_table(result))
    return 0


def _usage(message: str) -> int:
    sys.stderr.write(f"careline: bench sfu: {message}\n")
    return 2


def _run(main: Callable[[], Coroutine[Any, Any, _T]]) -> _T:
    """Run on uvloop when it is installed, as `careline serve` does."""
    try:
        import uvloop
    except ImportError:  # pragma: no cover - uvloop is a dependency on POSIX
        return asyncio.run(main())
    return uvloop.run(main())
