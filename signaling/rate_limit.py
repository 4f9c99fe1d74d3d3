"""Token buckets per key (a sender's sub): a steady rate with a burst, on an injectable clock.

Not thread-safe; meant for one event loop. Buckets are kept for at most `max_keys` keys: the
least recently used are forgotten first (a forgotten key starts again with a full bucket, which
only ever errs on the side of letting a sender through). Limits hold per process: with N nodes,
a sender spread over all of them gets up to N times the rate.
"""

from __future__ import annotations

import math
import time
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass

from careline.signaling.errors import RateLimited


@dataclass(slots=True)
class _Bucket:
    tokens: float
    stamp: float


class RateLimiter:
    """Allows `rate` events per second per key on average, and bursts of up to `burst`."""

    def __init__(
        self,
        rate: float,
        burst: int,
        *,
        code: str = "rate_limited",
        clock: Callable[[], float] = time.monotonic,
        max_keys: int = 100_000,
    ) -> None:
        if rate <= 0 or burst < 1:
            raise ValueError("rate must be positive and burst at least 1")
        self._rate = rate
        self._burst = float(burst)
        self._code = code
        self._clock = clock
        self._max_keys = max_keys
        self._buckets: OrderedDict[str, _Bucket] = OrderedDict()

    def __len__(self) -> int:
        return len(self._buckets)

    def try_take(self, key: str, cost: float = 1.0) -> float:
        """Take `cost` tokens from `key`'s bucket; 0.0 if done, else seconds until it could."""
        now = self._clock()
        buckets = self._buckets
        bucket = buckets.get(key)
        if bucket is None:
            bucket = buckets[key] = _Bucket(self._burst, now)
            while len(buckets) > self._max_keys:
                buckets.popitem(last=False)
        else:
            buckets.move_to_end(key)
            elapsed = now - bucket.stamp
            if elapsed > 0.0:
                bucket.tokens = min(self._burst, bucket.tokens + elapsed * self._rate)
            bucket.stamp = now
        if bucket.tokens >= cost:
            bucket.tokens -= cost
            return 0.0
        return (cost - bucket.tokens) / self._rate

    def take(self, key: str, cost: float = 1.0) -> None:
        """Take `cost` tokens or raise RateLimited (its message says when to retry)."""
        wait = self.try_take(key, cost)
        if wait > 0:
            raise RateLimited(
                f"too many requests; retry in {math.ceil(wait * 10) / 10:.1f} s", code=self._code
            )
