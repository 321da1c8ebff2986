"""The package's one percentile definition (linear between order statistics) and the median's interval."""

from __future__ import annotations

import pytest

from speedlab import stats


def test_percentile_is_linear_between_order_statistics():
    values = [4.0, 1.0, 3.0, 2.0]
    assert stats.percentile(values, 50) == 2.5  # the median
    assert stats.percentile(values, 0) == 1.0 and stats.percentile(values, 100) == 4.0
    assert stats.percentile(values, 90) == pytest.approx(3.7)
    with pytest.raises(ValueError):
        stats.percentile([], 50)


def test_a_percentile_beyond_the_samples_is_flagged():
    assert stats.meaningful(100, 99) and not stats.meaningful(70, 99) and stats.meaningful(20, 95)


def test_every_user_of_percentiles_shares_the_definition():
    from speedlab import monitor, timing

    samples = [float(i) for i in range(1, 71)]
    assert timing.summarise(samples, first_call_ms=0.0).p99_ms == stats.percentile(samples, 99)
    assert monitor._percentile(samples, 0.95) == stats.percentile(samples, 95)
