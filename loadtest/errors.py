"""Errors of the load tester; each carries a stable code for reports."""

from __future__ import annotations


class LoadtestError(Exception):
    """Root of every error the load tester raises on purpose."""

    code: str = "loadtest.error"

    def __init__(self, message: str, *, code: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        if code is not None:
            self.code = code


class AiortcInternalsError(LoadtestError, RuntimeError):
    """aiortc or aioice no longer has the private seam a media tool patches: re-read its source."""

    code = "loadtest.aiortc_internals"


class ClipError(LoadtestError):
    """A synthetic clip could not be encoded with the properties the media tools rely on."""

    code = "loadtest.clip"


class BlockingCallError(LoadtestError, RuntimeError):
    """A blocking function was called on a running event loop (use asyncio.to_thread)."""

    code = "loadtest.blocking_call"


class BenchFailed(LoadtestError):
    """A benchmark could not measure what it set out to (server down, no frames): one line."""

    code = "loadtest.bench_failed"
