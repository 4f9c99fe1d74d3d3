"""One log line per change of a background loop's state (working, failing), not per attempt.

A loop that retries something every quarter second (a sweep, a heartbeat, a subscription) would
write a line per attempt while Redis is away. `OutageLog` writes one warning when the first
attempt fails and one line when an attempt succeeds again (with how long and how many attempts
the outage took), and counts the failures for metrics. No personal data: callers pass a short
reason such as an error code or an exception class name.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable


class OutageLog:
    """The state of one loop's dependency as seen by its attempts.

    Concurrency: called from the loop's own task only (plain attributes, no locks).
    """

    def __init__(
        self,
        log: logging.Logger,
        what: str,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._log = log
        self._what = what
        self._clock = clock
        self._since: float | None = None
        self._attempts = 0
        self.failures = 0

    @property
    def failing(self) -> bool:
        """Whether the last attempt failed."""
        return self._since is not None

    def failed(self, reason: str) -> None:
        """An attempt failed; logged only if the previous one worked."""
        self.failures += 1
        self._attempts += 1
        if self._since is None:
            self._since = self._clock()
            self._log.warning(
                "%s failing (%s); retrying quietly until it works", self._what, reason
            )

    def ok(self) -> bool:
        """An attempt worked; logged only if the previous one failed. True on a recovery."""
        if self._since is None:
            return False
        lasted, attempts = self._clock() - self._since, self._attempts
        self._since, self._attempts = None, 0
        self._log.warning(
            "%s working again after %.1f s (%d failed attempts)", self._what, lasted, attempts
        )
        return True
