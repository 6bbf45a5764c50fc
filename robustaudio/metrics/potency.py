"""Minimal-ε statistics ("potency", thesis ch. 10): from per-clip minimal budgets to a curve.

A clip is robust at budget ε exactly when its minimal ε is larger, so one minimal-ε search per
clip gives the whole robust-accuracy curve, and the budget at which accuracy falls to chance.
"""

from __future__ import annotations

import numpy as np
from numpy.typing import ArrayLike
from scipy import stats


def accuracy_from_minimal_eps(minimal: np.ndarray, n_clips: int) -> tuple[np.ndarray, np.ndarray]:
    """Robust accuracy as a step function of ε.

    Args:
        minimal: minimal ε of each clean-correct clip (``inf`` where none was found).
        n_clips: all clips, clean errors included (they count as wrong at every ε).
    Returns:
        ``(eps, accuracy)``: at ``eps[j]`` (ascending, finite) accuracy drops to ``accuracy[j]``;
        for ε below ``eps[0]`` accuracy is ``len(minimal) / n_clips``.
    """
    finite = np.sort(minimal[np.isfinite(minimal)])
    # at ε = finite[j] the clips with minimal ε <= finite[j] are fooled (a tie counts as fooled)
    survivors = len(minimal) - np.searchsorted(finite, finite, side="right")
    return finite, survivors / max(n_clips, 1)


def eps_at_chance(minimal: np.ndarray, n_clips: int, chance: float) -> float | None:
    """Smallest ε at which robust accuracy is at or below ``chance``; None if never reached."""
    if len(minimal) / max(n_clips, 1) <= chance:
        return 0.0
    eps, accuracy = accuracy_from_minimal_eps(minimal, n_clips)
    below = np.nonzero(accuracy <= chance)[0]
    return float(eps[below[0]]) if below.size else None


def median_with_ci(values: ArrayLike, confidence: float = 0.95, n_resamples: int = 2000,
                   seed: int = 0) -> tuple[float, float, float]:
    """Median and percentile-bootstrap interval; ``inf`` values (not found) count as largest."""
    x = np.asarray(values, dtype=float)
    x = x[~np.isnan(x)]
    if x.size == 0:
        return float("nan"), float("nan"), float("nan")
    median = float(np.median(x))
    if np.all(x == x[0]) or x.size < 2:
        return median, median, median
    # medians of resamples of a set with infs: map to ranks, bootstrap, map back (keeps inf exact)
    order = np.sort(x)
    ranks = np.arange(x.size, dtype=float)
    result = stats.bootstrap((ranks,), np.median, confidence_level=confidence, n_resamples=n_resamples,
                             method="percentile", random_state=np.random.default_rng(seed))
    low = order[int(np.floor(result.confidence_interval.low))]
    high = order[int(np.ceil(result.confidence_interval.high))]
    return median, float(low), float(high)
