"""Process-wide logging: one stderr handler, levels from settings, noisy libraries quietened."""

from __future__ import annotations

import logging
import sys

_QUIET = ("aioice", "aiortc", "aiohttp.access", "engineio", "socketio")


def configure_logging(level: str) -> None:
    """Log to stderr at `level`; third-party chatter only from WARNING up."""
    logging.basicConfig(
        level=level.upper(),
        stream=sys.stderr,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
        force=True,
    )
    for name in _QUIET:
        logging.getLogger(name).setLevel(max(logging.WARNING, logging.getLogger().level))
