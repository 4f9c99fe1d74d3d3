"""The `careline loadtest` subcommands (`run`, `replay`): arguments in, exit code out.

The `careline` CLI (server/cli.py) only mounts these parsers; everything they do is here and
in load_run / session_replay, so the load tester stays usable without the server package.
Every LoadtestError becomes one line on stderr, never a traceback.
"""

from __future__ import annotations

import argparse
import asyncio
import ipaddress
import logging
import sys
from pathlib import Path
from typing import Any

from careline.loadtest.errors import LoadtestError
from careline.loadtest.load_plan import TokenConfig
from careline.loadtest.load_run import RunOptions, exit_code, run_load
from careline.loadtest.run_summary import RunSummary
from careline.loadtest.scenario import load_scenario

EXIT_BAD_INPUT = 2


def add_loadtest_parser(commands: Any) -> None:
    """Add `loadtest run` and `loadtest replay` to the `careline` subcommands."""
    loadtest = commands.add_parser("loadtest", help="load tests against a deployment")
    actions = loadtest.add_subparsers(dest="loadtest_command", required=True, metavar="ACTION")

    run = actions.add_parser("run", help="run a scenario file against a target")
    run.add_argument("scenario", type=Path, help="scenario TOML file (docs/loadtest.md)")
    _common(run)
    run.add_argument("--workers", type=int, default=0, help="worker processes (0: this one)")
    run.add_argument("--seed", type=int, default=1, help="seed of the random choices")
    run.set_defaults(run_loadtest=_run)

    replay = actions.add_parser("replay", help="replay a session recording against a target")
    replay.add_argument(
        "recording", type=Path, help="a recording (careline serve --record-sessions)"
    )
    _common(replay)
    replay.add_argument("--speed", type=float, default=1.0, help="time compression (4: 4x faster)")
    replay.add_argument("--multiply", type=int, default=1, help="copies of every session")
    replay.set_defaults(run_loadtest=_replay)


def _common(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--target", required=True, help="base URL, e.g. http://127.0.0.1:8080")
    tokens = parser.add_mutually_exclusive_group(required=True)
    tokens.add_argument("--secret", help="the target's auth.secret (tokens are signed here)")
    tokens.add_argument("--admin-token", help="an admin token (tokens come from /api/tokens)")
    parser.add_argument("--order-secret", help="the target's order key (hotline traffic)")
    parser.add_argument("--report", type=Path, help="write summary.json and report.html here")
    parser.add_argument("--clip-cache", type=Path, help="where encoded clips are cached")
    parser.add_argument("--server-pid", type=int, help="a local server's pid: report its CPU")
    parser.add_argument("--quiet", action="store_true", help="no live progress display")
    parser.add_argument(
        "--media-address",
        action="append",
        metavar="IP",
        help="gather WebRTC host candidates on this local address (repeatable; default "
        "127.0.0.1, for a target on this machine; give a routable address for a remote target)",
    )


def _tokens(args: argparse.Namespace) -> TokenConfig:
    return TokenConfig(
        secret=args.secret, admin_token=args.admin_token, order_secret=args.order_secret
    )


def _media_addresses(args: argparse.Namespace) -> tuple[str, ...]:
    """--media-address values (IP literals), or loopback; ValueError names a bad one."""
    addresses = tuple(args.media_address or ("127.0.0.1",))
    for address in addresses:
        try:
            ipaddress.ip_address(address)
        except ValueError:
            raise ValueError(f"--media-address {address!r} is not an IP address") from None
    return addresses


def _run(args: argparse.Namespace) -> int:
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    if args.workers < 0:
        print("careline loadtest: --workers must be 0 or more", file=sys.stderr)  # noqa: T201
        return EXIT_BAD_INPUT
    try:
        scenario = load_scenario(args.scenario)
    except LoadtestError as exc:
        print(f"careline loadtest: {args.scenario}: {exc.message}", file=sys.stderr)  # noqa: T201
        return EXIT_BAD_INPUT
    try:
        media = _media_addresses(args)
    except ValueError as exc:
        print(f"careline loadtest: {exc}", file=sys.stderr)  # noqa: T201
        return EXIT_BAD_INPUT
    options = RunOptions(
        target=args.target,
        tokens=_tokens(args),
        workers=args.workers,
        report_dir=args.report,
        clip_cache=args.clip_cache,
        progress=not args.quiet,
        seed=args.seed,
        server_pid=args.server_pid,
        media_addresses=media,
    )
    try:
        summary = asyncio.run(run_load(scenario, options))
    except LoadtestError as exc:
        print(f"careline loadtest: {exc.message}", file=sys.stderr)  # noqa: T201
        return 3
    return _verdict(summary, args.report)


def _replay(args: argparse.Namespace) -> int:
    from careline.loadtest.session_replay import ReplayOptions, replay_recording

    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    if args.speed <= 0 or args.multiply < 1:
        print("careline loadtest: --speed must be > 0, --multiply >= 1", file=sys.stderr)  # noqa: T201
        return EXIT_BAD_INPUT
    try:
        media = _media_addresses(args)
    except ValueError as exc:
        print(f"careline loadtest: {exc}", file=sys.stderr)  # noqa: T201
        return EXIT_BAD_INPUT
    options = ReplayOptions(
        target=args.target,
        tokens=_tokens(args),
        speed=args.speed,
        multiply=args.multiply,
        report_dir=args.report,
        clip_cache=args.clip_cache,
        progress=not args.quiet,
        server_pid=args.server_pid,
        media_addresses=media,
    )
    try:
        summary = asyncio.run(replay_recording(args.recording, options))
    except LoadtestError as exc:
        print(f"careline loadtest: {exc.message}", file=sys.stderr)  # noqa: T201
        return 3
    return _verdict(summary, args.report)


def _verdict(summary: RunSummary, report: Path | None) -> int:
    """Print the one-screen verdict on stdout; the exit code."""
    lines = [f"{summary.scenario}: {'PASSED' if summary.passed else 'FAILED'}"]
    for name, s in summary.latency_ms.items():
        lines.append(
            f"  {name:<16} n={s.count:<6} p50={s.p50:<8g} p90={s.p90:<8g} "
            f"p99={s.p99:<8g} max={s.max:g}"
        )
    for key, value in summary.rates.items():
        if value is not None:
            lines.append(f"  {key:<16} {value:g}")
    if summary.errors:
        lines.append("  errors: " + ", ".join(f"{k}={v}" for k, v in summary.errors.items()))
    if summary.generator_cpu is not None:
        cpu = summary.generator_cpu
        lines.append(f"  generator CPU {cpu.total_pct:g} % of one core (host {cpu.host_pct:g} %)")
    lines.extend(f"  reason: {reason}" for reason in summary.reasons)
    if report is not None:
        lines.append(f"  report: {report / 'report.html'}")
    print("\n".join(lines))  # noqa: T201
    return exit_code(summary)
