"""Errors of the composition root. The CLI maps each to one line on stderr and an exit code."""

from __future__ import annotations


class ServerError(Exception):
    """Root of server/ errors; `code` is stable, `exit_code` is what `careline` exits with."""

    code: str = "server_error"
    exit_code: int = 1


class SettingsError(ServerError):
    """A setting is unknown or has a bad value; the message names the key and its source."""

    code = "bad_setting"
    exit_code = 2


class StartupError(ServerError):
    """The server cannot start: port in use, data dir not writable, store unreachable."""

    code = "startup_failed"
    exit_code = 1
