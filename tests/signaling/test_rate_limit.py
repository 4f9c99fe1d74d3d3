"""Token buckets per sender on a fake clock."""

from __future__ import annotations

import pytest

from careline.signaling.errors import RateLimited
from careline.signaling.rate_limit import RateLimiter


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def test_a_burst_then_the_steady_rate() -> None:
    clock = Clock()
    limiter = RateLimiter(2.0, 3, code="thread.rate_limited", clock=clock)
    for _ in range(3):
        limiter.take("p-1")
    with pytest.raises(RateLimited) as caught:
        limiter.take("p-1")
    assert caught.value.code == "thread.rate_limited"
    assert "retry in 0.5 s" in caught.value.message
    clock.now += 0.5
    limiter.take("p-1")
    assert limiter.try_take("p-1") == pytest.approx(0.5)
    clock.now += 100
    for _ in range(3):
        limiter.take("p-1")  # refilled to the burst, no further
    assert limiter.try_take("p-1") > 0


def test_senders_do_not_share_buckets() -> None:
    clock = Clock()
    limiter = RateLimiter(1.0, 1, clock=clock)
    limiter.take("noisy")
    with pytest.raises(RateLimited):
        limiter.take("noisy")
    limiter.take("calm")


def test_a_clock_going_back_does_not_mint_tokens() -> None:
    clock = Clock()
    limiter = RateLimiter(1.0, 1, clock=clock)
    limiter.take("p")
    clock.now -= 50
    assert limiter.try_take("p") > 0


def test_keys_are_bounded_and_the_oldest_forgotten() -> None:
    clock = Clock()
    limiter = RateLimiter(1.0, 1, clock=clock, max_keys=3)
    for key in ("a", "b", "c", "d"):
        limiter.take(key)
    assert len(limiter) == 3
    limiter.take("a")  # forgotten, so it starts full again
    with pytest.raises(RateLimited):
        limiter.take("d")


def test_bad_parameters_are_refused() -> None:
    with pytest.raises(ValueError, match="rate"):
        RateLimiter(0, 1)
    with pytest.raises(ValueError, match="burst"):
        RateLimiter(1, 0)
