"""Delivered-ratio and latency accounting: departures matched to arrivals by digest, percentiles."""

from __future__ import annotations

import asyncio

import pytest

from careline.loadtest.concurrency import gather_or_cancel
from careline.loadtest.frame_matching import count_between, match_frames
from careline.loadtest.percentiles import percentile

A, B, C, D = b"a" * 16, b"b" * 16, b"c" * 16, b"d" * 16


def test_every_frame_delivered() -> None:
    departures = [(A, 10.0), (B, 10.033), (C, 10.066)]
    arrivals = [(A, 10.004), (B, 10.038), (C, 10.070)]
    delivery = match_frames(departures, arrivals, tail=1.0)
    assert (delivery.expected, delivery.matched) == (3, 3)
    assert delivery.ratio == 1.0
    assert delivery.latencies == pytest.approx((0.004, 0.005, 0.004))


def test_lost_and_too_late_frames_are_not_delivered() -> None:
    departures = [(A, 10.0), (B, 10.033), (C, 10.066)]
    arrivals = [(A, 10.004), (C, 11.2)]  # B lost, C later than the tail allows
    delivery = match_frames(departures, arrivals, tail=1.0)
    assert (delivery.expected, delivery.matched) == (3, 1)
    assert delivery.ratio == pytest.approx(1 / 3)


def test_a_looping_clip_matches_each_send_to_its_own_arrival() -> None:
    # The clip loops every 4 s: A is sent twice in the window, and was also sent before it.
    departures = [(A, 14.0), (B, 14.5), (A, 18.0)]
    arrivals = [(A, 10.003), (A, 14.006), (B, 14.504), (A, 18.002), (A, 22.001)]
    delivery = match_frames(departures, arrivals, tail=1.0)
    assert delivery.matched == 3
    assert delivery.latencies == pytest.approx((0.006, 0.004, 0.002))


def test_one_arrival_never_counts_for_two_departures() -> None:
    departures = [(A, 10.0), (A, 10.1)]  # a frame sent twice close together (keyframe skip)
    delivery = match_frames(departures, [(A, 10.12)], tail=1.0)
    assert delivery.matched == 1
    assert delivery.latencies == pytest.approx((0.12,))


def test_an_arrival_stamped_a_hair_early_still_counts_but_not_an_older_one() -> None:
    departures = [(A, 10.0)]
    assert match_frames(departures, [(A, 9.999)], tail=1.0).matched == 1
    assert match_frames(departures, [(A, 9.9)], tail=1.0).matched == 0


def test_frames_sent_outside_the_window_are_ignored() -> None:
    arrivals = [(D, 9.5), (A, 10.001), (D, 10.9)]
    delivery = match_frames([(A, 10.0)], arrivals, tail=0.5)
    assert (delivery.expected, delivery.matched) == (1, 1)
    assert delivery.latencies == pytest.approx((0.001,))


def test_nothing_expected_is_a_full_ratio_and_bad_arguments_are_refused() -> None:
    assert match_frames([], [(A, 1.0)], tail=1.0).ratio == 1.0
    with pytest.raises(ValueError, match="tail"):
        match_frames([], [], tail=0)


def test_count_between_is_inclusive() -> None:
    assert count_between([1.0, 2.0, 3.0, 4.0], 2.0, 3.0) == 2


def test_percentiles_interpolate_between_ranks() -> None:
    values = [5.0, 1.0, 4.0, 2.0, 3.0]
    assert percentile(values, 0.0) == 1.0
    assert percentile(values, 0.5) == 3.0
    assert percentile(values, 1.0) == 5.0
    assert percentile(values, 0.95) == pytest.approx(4.8)
    assert percentile([1.0, 2.0], 0.5) == 1.5
    assert percentile([7.0], 0.95) == 7.0
    assert percentile(list(range(1, 101)), 0.95) == pytest.approx(95.05)


@pytest.mark.parametrize(
    ("values", "fraction"), [([], 0.5), ([1.0], -0.1), ([1.0], 1.5), ([float("nan")], 0.5)]
)
def test_bad_percentile_arguments_are_refused(values: list[float], fraction: float) -> None:
    with pytest.raises(ValueError, match=r"percentile|fraction|NaN"):
        percentile(values, fraction)


async def test_gather_or_cancel_keeps_order_and_limit() -> None:
    running = 0
    most = 0

    async def work(item: int) -> int:
        nonlocal running, most
        running += 1
        most = max(most, running)
        await asyncio.sleep(0.01 * (5 - item))
        running -= 1
        return item * 10

    assert await gather_or_cancel(range(5), work, limit=2) == [0, 10, 20, 30, 40]
    assert most == 2
    assert await gather_or_cancel([], work) == []


async def test_gather_or_cancel_raises_the_first_failure_and_cancels_the_rest() -> None:
    cancelled: list[int] = []

    async def work(item: int) -> int:
        if item == 1:
            await asyncio.sleep(0.01)
            raise LookupError("one failed")
        try:
            await asyncio.sleep(10)
        except asyncio.CancelledError:
            cancelled.append(item)
            raise
        return item

    with pytest.raises(LookupError, match="one failed"):
        await gather_or_cancel(range(3), work)
    assert sorted(cancelled) == [0, 2]
