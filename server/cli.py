"""The `careline` command: serve, issue development tokens, print the version.

Every ServerError becomes one line on stderr and a non-zero exit code, never a traceback.
"""

from __future__ import annotations

import argparse
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from careline.loadtest.loadtest_command import add_loadtest_parser
from careline.server import __version__
from careline.server.bench_chat import add_chat_parser
from careline.server.bench_hotline_command import add_hotline_parser
from careline.server.bench_sfu_command import add_sfu_parser
from careline.server.datadir import auth_secret
from careline.server.errors import ServerError
from careline.server.logging_setup import configure_logging
from careline.server.settings import Settings, load_settings
from careline.server.tokens import TokenIssuer
from careline.signaling.identity import ORDER_TOKEN_KIND, Role


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="careline", description=__doc__)
    parser.add_argument("--version", action="version", version=f"careline {__version__}")
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    serve = commands.add_parser("serve", help="run the server")
    _common(serve)
    serve.add_argument("--host", help="address to listen on (server.host)")
    serve.add_argument("--port", type=int, help="port to listen on, 0 for any (server.port)")
    serve.add_argument(
        "--log-level", choices=["debug", "info", "warning", "error"], help="server.log_level"
    )
    serve.add_argument(
        "--record-sessions",
        metavar="DIR",
        help="record the scrubbed signalling of every session in DIR (server.record_sessions_dir)",
    )

    token = commands.add_parser("token", help="tokens for development")
    token_commands = token.add_subparsers(dest="token_command", required=True, metavar="ACTION")
    issue = token_commands.add_parser("issue", help="print a signed access token")
    _common(issue)
    issue.add_argument(
        "--role",
        required=True,
        choices=[*(r.value for r in Role), ORDER_TOKEN_KIND],
        help=f"a role, or {ORDER_TOKEN_KIND!r} for an order QR token (--sub is the order id)",
    )
    issue.add_argument("--sub", required=True, help="opaque subject id (never a name)")
    scope = issue.add_mutually_exclusive_group()
    scope.add_argument("--visit", help="scope the token to one visit id")
    scope.add_argument("--thread", help="scope the token to one thread id")
    issue.add_argument("--ttl", type=int, help="lifetime in seconds (auth.default_ttl_seconds)")
    issue.add_argument(
        "--skill",
        action="append",
        default=[],
        help="order tokens only: a skill the call needs, e.g. lang:es (repeatable)",
    )

    bench = commands.add_parser("bench", help="benchmarks (measurements, never timed tests)")
    bench_commands = bench.add_subparsers(dest="bench_command", required=True, metavar="BENCH")
    add_chat_parser(bench_commands)
    add_sfu_parser(bench_commands)
    add_hotline_parser(bench_commands)
    add_loadtest_parser(commands)
    return parser


def _common(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--config", type=Path, help="TOML config file (or $CARELINE_CONFIG)")
    parser.add_argument("--data-dir", help="data directory (server.data_dir)")


def _settings(args: argparse.Namespace) -> Settings:
    overrides: dict[str, Any] = {}
    for flag, key in (
        ("host", "server.host"),
        ("port", "server.port"),
        ("data_dir", "server.data_dir"),
        ("log_level", "server.log_level"),
        ("record_sessions", "server.record_sessions_dir"),
    ):
        value = getattr(args, flag, None)
        if value is not None:
            overrides[key] = value
    return load_settings(args.config, overrides)


def _issue(args: argparse.Namespace) -> int:
    settings = _settings(args)
    if args.role == ORDER_TOKEN_KIND:
        return _issue_order(args, settings)
    if args.skill:
        print("careline: --skill is only for --role order", file=sys.stderr)
        return 2
    issuer = TokenIssuer(
        auth_secret(settings),
        issuer=settings.auth.issuer,
        audience=settings.auth.audience,
        default_ttl=settings.auth.default_ttl_seconds,
        max_ttl=settings.auth.max_ttl_seconds,
    )
    try:
        issued = issuer.issue(
            sub=args.sub,
            role=Role(args.role),
            visit_id=args.visit,
            thread_id=args.thread,
            ttl=args.ttl,
        )
    except ValueError as exc:
        print(f"careline: {exc}", file=sys.stderr)
        return 2
    print(issued.token)
    return 0


def _issue_order(args: argparse.Namespace, settings: Settings) -> int:
    """An order token signed with the order key (what the pharmacy system prints as a QR)."""
    from careline.server.hotline_wiring import order_tokens

    if args.visit or args.thread:
        print("careline: order tokens have no visit or thread scope", file=sys.stderr)
        return 2
    ttl = settings.auth.default_ttl_seconds if args.ttl is None else args.ttl
    try:
        issued = order_tokens(settings, time.time).issue(args.sub, ttl, args.skill)
    except ValueError as exc:
        print(f"careline: {exc}", file=sys.stderr)
        return 2
    print(issued.token)
    return 0


def _serve(args: argparse.Namespace) -> int:
    from careline.server.runner import run

    settings = _settings(args)
    configure_logging(settings.server.log_level)
    run(settings)
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the `careline` console script."""
    args = _parser().parse_args(argv)
    try:
        if args.command == "serve":
            return _serve(args)
        if args.command == "bench":
            return int(args.run_bench(args))
        if args.command == "loadtest":
            return int(args.run_loadtest(args))
        return _issue(args)
    except ServerError as exc:
        print(f"careline: {exc}", file=sys.stderr)
        return exc.exit_code
    except KeyboardInterrupt:
        return 130


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
