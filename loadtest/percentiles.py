"""Percentiles of measured samples (latencies), by linear interpolation between closest ranks."""

from __future__ import annotations

import math
from collections.abc import Sequence


def percentile(values: Sequence[float], fraction: float) -> float:
    """The `fraction` (0..1) percentile of `values`: p50 is `percentile(v, 0.5)`.

    Linear interpolation between the two closest ranks (numpy's default, "linear"): the
    minimum at 0, the maximum at 1, the median of an even count halfway between the middle
    two. ValueError for no values, a fraction outside 0..1 or a NaN among the values.
    """
    if not values:
        raise ValueError("a percentile of no values")
    if not 0.0 <= fraction <= 1.0:
        raise ValueError(f"fraction must be within 0..1, got {fraction}")
    ordered = sorted(values)
    if any(math.isnan(value) for value in ordered):
        raise ValueError("NaN among the values")
    position = fraction * (len(ordered) - 1)
    low = math.floor(position)
    high = min(low + 1, len(ordered) - 1)
    weight = position - low
    return ordered[low] + (ordered[high] - ordered[low]) * weight
