"""Statistics shared by every command and script.

One percentile definition for the whole package: linear interpolation between the two closest order statistics
(numpy's default `method="linear"`, type 7 of Hyndman and Fan), so p50 is the median and p100 the maximum. With n
samples, percentiles above 100 * (n - 1) / n draw on the largest sample alone: p99 of 70 samples is almost the
maximum, which `meaningful` says.
"""

from __future__ import annotations

import math
import statistics
from collections.abc import Sequence

import numpy as np


def percentile(values: Sequence[float], q: float) -> float:
    """The q-th percentile (0 <= q <= 100) of `values` (at least one)."""
    if not values:
        raise ValueError("percentile of no values")
    return float(np.percentile(np.asarray(values, dtype=np.float64), q, method="linear"))


def meaningful(n: int, q: float) -> bool:
    """Whether n samples put at least one sample beyond the q-th percentile (else it is just the maximum)."""
    return n > 0 and (100 - q) * n >= 100


def median_interval(values: Sequence[float]) -> tuple[float, float, float]:
    """Median and a distribution-free 95 % confidence interval for it (binomial order statistics; with fewer than
    6 values the interval is the whole range, which is what such a sample honestly supports)."""
    ordered = sorted(values)
    n = len(ordered)
    median = statistics.median(ordered)
    if n < 6:
        return median, ordered[0], ordered[-1]
    half_width = 1.96 * math.sqrt(n) / 2
    low = max(0, math.floor(n / 2 - half_width) - 1)
    high = min(n - 1, math.ceil(n / 2 + half_width))
    return median, ordered[low], ordered[high]
