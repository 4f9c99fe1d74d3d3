"""What every traffic generator of a load run shares: the target, tokens, metrics and the clock.

One per process. `stopping` is set when the run must end early (Ctrl-C, a fatal error); the
generators check it between steps and `sleep_until` returns False once it is set, so every
generator winds down within a step.
"""

from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass, field
from typing import Any

import aiohttp

from careline.loadtest.errors import LoadtestError
from careline.loadtest.load_metrics import LoadMetrics
from careline.loadtest.token_source import TokenSource


class HttpError(LoadtestError):
    """The target answered an HTTP call with an error; `code` is its error code."""


@dataclass
class TrafficContext:
    """Shared by the generators of one process. `ends_at` is when new work stops (monotonic)."""

    url: str
    http: aiohttp.ClientSession
    tokens: TokenSource
    metrics: LoadMetrics
    run_id: str
    ends_at: float
    stopping: asyncio.Event = field(default_factory=asyncio.Event)

    def remaining(self) -> float:
        """Seconds until the run ends (0 when stopping)."""
        if self.stopping.is_set():
            return 0.0
        return max(0.0, self.ends_at - time.monotonic())

    async def sleep_until(self, moment: float) -> bool:
        """Sleep until monotonic `moment`; False if the run stopped meanwhile."""
        delay = moment - time.monotonic()
        if self.stopping.is_set():
            return False
        if delay > 0:
            try:
                async with asyncio.timeout(delay):
                    await self.stopping.wait()
            except TimeoutError:
                return True
            return False
        return True

    async def post(
        self, path: str, token: str, body: Any = None, *, raw: bytes | None = None
    ) -> Any:
        """POST JSON (or raw bytes) to the target; the decoded reply, or HttpError with its code."""
        headers = {"Authorization": f"Bearer {token}"}
        if raw is not None:
            request = self.http.post(self.url + path, data=raw, headers=headers)
        else:
            request = self.http.post(self.url + path, json=body or {}, headers=headers)
        async with request as response:
            data = await response.json(content_type=None)
            if response.status >= 300:
                code = "http_" + str(response.status)
                if isinstance(data, dict) and isinstance(data.get("error"), dict):
                    code = str(data["error"].get("code", code))
                raise HttpError(f"POST {path.split('/')[2]} answered {response.status}", code=code)
            return data
