"""Bootstrap confidence intervals and per-class means: the statistics every layer reports with (numpy, scipy only)."""

from __future__ import annotations

import numpy as np
from scipy import stats


def mean_with_ci(values, confidence: float = 0.95, n_resamples: int = 2000,
                 seed: int = 0) -> tuple[float, float, float]:
    """Mean of ``values`` (e.g. 0/1 correctness per clip) and its percentile-bootstrap interval.

    Returns ``(mean, low, high)``; ``(nan, nan, nan)`` for no values, and a zero-width interval
    when all values are equal (the bootstrap distribution is then degenerate).
    """
    x = np.asarray(values, dtype=float)
    x = x[np.isfinite(x)]
    if x.size == 0:
        return float("nan"), float("nan"), float("nan")
    mean = float(x.mean())
    if np.all(x == x[0]):
        return mean, mean, mean
    result = stats.bootstrap((x,), np.mean, confidence_level=confidence, n_resamples=n_resamples,
                             method="percentile", random_state=np.random.default_rng(seed))
    return mean, float(result.confidence_interval.low), float(result.confidence_interval.high)


def per_class_mean(values, classes) -> dict[str, float]:
    """Mean of ``values`` within each class name in ``classes`` (same length)."""
    values = np.asarray(values, dtype=float)
    classes = np.asarray(classes)
    return {str(c): float(values[classes == c].mean()) for c in sorted(set(classes.tolist()))}
