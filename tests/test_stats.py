"""Intervals a reader trusts: a proportion's interval keeps its coverage on a few dozen clips and near 0 or 1, and
never collapses to a point (robustaudio.stats)."""

import numpy as np
import pytest

from robustaudio.stats import mean_with_ci, wilson_interval


def test_none_of_twenty_is_not_certainly_zero():
    """0 of 20 correct: the percentile bootstrap said [0, 0]; the exact (Clopper-Pearson) upper bound is 0.168."""
    mean, low, high = mean_with_ci(np.zeros(20))
    assert mean == low == 0.0 and 0.13 < high < 0.20
    mean, low, high = mean_with_ci(np.ones(20))
    assert mean == high == 1.0 and 0.80 < low < 0.87
    assert mean_with_ci([1.0])[1:] == pytest.approx((0.2065, 1.0), abs=1e-3)  # one clip says little


@pytest.mark.parametrize("n, p", [(20, 0.95), (20, 0.8), (10, 0.5), (50, 0.98), (200, 0.1)])
def test_a_proportions_interval_covers_the_truth_about_95_percent_of_the_time(n, p):
    """Simulated coverage (1000 draws each; binomial standard error 0.007). The percentile bootstrap covered 0.66 at
    n = 20, p = 0.95."""
    rng = np.random.default_rng(0)
    covered = [low <= p <= high for low, high in (mean_with_ci(rng.random(n) < p)[1:] for _ in range(1000))]
    assert np.mean(covered) >= 0.92


def test_wilson_matches_its_closed_form_and_other_values_keep_the_bootstrap():
    low, high = wilson_interval(7, 10)
    assert (low, high) == pytest.approx((0.3968, 0.8922), abs=1e-4)  # textbook values for 7 of 10
    assert type(low) is float and type(high) is float  # not np.float64, which prints as "np.float64(0.39...)"
    values = np.array([0.2, 0.5, 0.9, 0.4, 0.7])
    mean, low, high = mean_with_ci(values, seed=3)
    assert mean == pytest.approx(0.54) and low < mean < high and (low, high) == mean_with_ci(values, seed=3)[1:]


@pytest.mark.parametrize("n", range(1, 60))
def test_the_interval_holds_the_estimate_at_zero_and_one(n):
    """Rounding put the Wilson bound a hair past 0 of n (the figure's error bar then failed: negative yerr)."""
    for k in (0, n):
        low, high = wilson_interval(k, n)
        assert low <= k / n <= high
