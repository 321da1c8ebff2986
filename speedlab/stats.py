"""Statistics shared by every command and script: percentiles, the median's interval, the ratio of two medians and
its interval, and the two-sample test behind `speedlab compare`.

- **Percentiles**: one definition for the whole package, linear interpolation between the two closest order
  statistics (numpy's default `method="linear"`, type 7 of Hyndman and Fan), so p50 is the median and p100 the
  maximum. With n samples, a percentile above 100 * (n - 1) / n draws on the largest sample alone (p99 of 70 samples
  is almost the maximum): `meaningful` says so, and `summary` lists such percentiles under `too_few_for`.
- **The median's interval**: distribution-free, from the binomial order statistics (scipy's binomial quantiles).
- **A ratio of medians** (B / A) and its 95 % interval: a percentile bootstrap of the two samples resampled apart
  (`scipy.stats.bootstrap`, fixed seed, so the same data gives the same interval). Applied to per-process medians
  it is the test `compare` draws its verdict from; the Mann-Whitney U p-value (`scipy.stats.mannwhitneyu`) is
  reported beside it.
"""

from __future__ import annotations

import statistics
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np


def _scipy():
    """scipy.stats, imported on first use: it takes a second to import, which every command would pay otherwise."""
    from scipy import stats

    return stats


SUMMARY_PERCENTILES = (50, 90, 95, 99)
CONFIDENCE = 0.95
BOOTSTRAP_RESAMPLES = 2000
# Above this many values a side is thinned (every k-th of the sorted values, which keeps its quantiles) before
# bootstrapping: the interval of a median of 10,000 calls is as tight as the timer allows long before that.
BOOTSTRAP_MAX_VALUES = 2000


def median(values: Sequence[float]) -> float:
    """The median (p50): the middle value, or the mean of the two middle ones."""
    if len(values) == 0:
        raise ValueError("median of no values")
    return float(statistics.median(values))


def percentile(values: Sequence[float], q: float) -> float:
    """The q-th percentile (0 <= q <= 100) of `values` (at least one)."""
    if len(values) == 0:
        raise ValueError("percentile of no values")
    return float(np.percentile(np.asarray(values, dtype=np.float64), q, method="linear"))


def meaningful(n: int, q: float) -> bool:
    """Whether n samples put at least one sample beyond the q-th percentile (else it is just the maximum)."""
    return n > 0 and (100 - q) * n >= 100


def summary(values: Sequence[float]) -> dict[str, float | int | list[str]]:
    """n, p50, p90, p95, p99 and max, and `too_few_for`: the percentiles these few samples cannot resolve."""
    out: dict[str, float | int | list[str]] = {"n": len(values)}
    for q in SUMMARY_PERCENTILES:
        out[f"p{q}"] = percentile(values, q)
    out["max"] = float(np.max(values))
    out["too_few_for"] = [f"p{q}" for q in SUMMARY_PERCENTILES if not meaningful(len(values), q)]
    return out


def median_interval(values: Sequence[float], confidence: float = CONFIDENCE) -> tuple[float, float, float]:
    """Median and a distribution-free confidence interval for it: the order statistics whose ranks a
    Binomial(n, 1/2) puts around the middle. With fewer than 6 values the interval is the whole range, which is
    what such a sample honestly supports."""
    ordered = np.sort(np.asarray(values, dtype=np.float64))
    n = len(ordered)
    mid = median(ordered)
    if n < 6:
        return mid, float(ordered[0]), float(ordered[-1])
    tail = (1 - confidence) / 2
    low = int(_scipy().binom.ppf(tail, n, 0.5)) - 1
    high = int(_scipy().binom.ppf(1 - tail, n, 0.5))
    return mid, float(ordered[max(0, low)]), float(ordered[min(n - 1, high)])


@dataclass(frozen=True)
class Ratio:
    """median(b) / median(a) with its bootstrap interval, and the Mann-Whitney U p-value of a against b (None
    when either side has a single value: nothing to rank)."""

    ratio: float
    low: float
    high: float
    p_value: float | None
    n_a: int
    n_b: int


def _thinned(values: np.ndarray) -> np.ndarray:
    if len(values) <= BOOTSTRAP_MAX_VALUES:
        return values
    step = int(np.ceil(len(values) / BOOTSTRAP_MAX_VALUES))
    return np.sort(values)[::step]


def ratio_of_medians(a: Sequence[float], b: Sequence[float], confidence: float = CONFIDENCE,
                     seed: int = 0) -> Ratio:  # fmt: skip
    """B / A of the medians, with a percentile-bootstrap interval (each side resampled on its own). A side with
    one value contributes that value exactly: the interval then holds only the other side's uncertainty."""
    xa, xb = np.asarray(a, dtype=np.float64), np.asarray(b, dtype=np.float64)
    if len(xa) == 0 or len(xb) == 0:
        raise ValueError("a ratio of medians needs at least one value on each side")
    point = median(xb) / median(xa)
    p_value = None
    if len(xa) > 1 and len(xb) > 1:
        p_value = float(_scipy().mannwhitneyu(xa, xb, alternative="two-sided").pvalue)
    if len(xa) == 1 and len(xb) == 1:
        return Ratio(point, point, point, p_value, 1, 1)
    sa, sb = _thinned(xa), _thinned(xb)
    if np.ptp(sa) == 0 and np.ptp(sb) == 0:  # nothing varies: the bootstrap has no spread to find
        return Ratio(point, point, point, p_value, len(xa), len(xb))

    def stat(x: np.ndarray, y: np.ndarray, axis: int = -1) -> np.ndarray:
        return np.median(y, axis=axis) / np.median(x, axis=axis)

    samples = [s if len(s) > 1 else np.repeat(s, 2) for s in (sa, sb)]  # scipy needs two values per sample
    result = _scipy().bootstrap(samples, stat, n_resamples=BOOTSTRAP_RESAMPLES, confidence_level=confidence,
                                   method="percentile", vectorized=True, rng=np.random.default_rng(seed))  # fmt: skip
    low, high = result.confidence_interval
    return Ratio(point, float(min(low, point)), float(max(high, point)), p_value, len(xa), len(xb))
