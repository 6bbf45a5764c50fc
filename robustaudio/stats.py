"""Confidence intervals, per-class means and detection rates: the statistics every layer reports with (numpy,
scipy only). Proportions over independent clips get Wilson score intervals; other statistics a bootstrap that
resamples the unit that repeats: clips, scenes, or clusters such as voices (widened when the clusters are few)."""

from __future__ import annotations

import math
from collections.abc import Callable

import numpy as np
from numpy.typing import ArrayLike
from scipy import stats


def wilson_interval(successes: int, n: int, confidence: float = 0.95) -> tuple[float, float]:
    """Wilson score interval of a proportion ``successes / n`` (``n`` independent trials)."""
    z = float(stats.norm.ppf(0.5 + confidence / 2))
    p = successes / n
    centre = (p + z * z / (2 * n)) / (1 + z * z / n)
    half = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / (1 + z * z / n)
    return max(0.0, min(p, centre - half)), min(1.0, max(p, centre + half))  # p̂ inside despite rounding at 0 and 1


def mean_with_ci(values: ArrayLike, confidence: float = 0.95, n_resamples: int = 2000,
                 seed: int = 0) -> tuple[float, float, float]:
    """Mean of ``values`` and its interval: for 0/1 values (correctness per clip: a proportion) the Wilson
    score interval, which keeps close to its coverage for a few dozen clips and proportions near 0 or 1
    (a percentile bootstrap says [0, 0] for 0 of 20 correct, and covered 66% of the time at 19 of 20);
    for other values the percentile bootstrap (``n_resamples``, ``seed``).

    Returns ``(mean, low, high)``; ``(nan, nan, nan)`` for no values; a zero-width interval when
    non-binary values are all equal (the bootstrap distribution is then degenerate).
    """
    x = np.asarray(values, dtype=float)
    x = x[np.isfinite(x)]
    if x.size == 0:
        return float("nan"), float("nan"), float("nan")
    mean = float(x.mean())
    if np.all((x == 0) | (x == 1)):
        low, high = wilson_interval(int(x.sum()), x.size, confidence)
        return mean, low, high
    if np.all(x == x[0]):
        return mean, mean, mean
    result = stats.bootstrap((x,), np.mean, confidence_level=confidence, n_resamples=n_resamples,
                             method="percentile", random_state=np.random.default_rng(seed))
    return mean, float(result.confidence_interval.low), float(result.confidence_interval.high)


def per_class_mean(values: ArrayLike, classes: ArrayLike) -> dict[str, float]:
    """Mean of ``values`` within each class name in ``classes`` (same length)."""
    values = np.asarray(values, dtype=float)
    classes = np.asarray(classes)
    return {str(c): float(values[classes == c].mean()) for c in sorted(set(classes.tolist()))}


def _f1(labels: np.ndarray, fired: np.ndarray) -> np.ndarray:
    """F1 = 2TP / (2TP + FP + FN) along the last axis (NaN where there is no positive and no detection)."""
    tp = np.sum(fired & labels, axis=-1)
    denominator = 2 * tp + np.sum(fired != labels, axis=-1)
    return np.where(denominator > 0, 2 * tp / np.maximum(denominator, 1), np.nan)


def detection_metrics(labels: ArrayLike, fired: ArrayLike, seed: int = 0, n_resamples: int = 2000) -> dict:
    """TPR, FPR, precision and F1 of binary decisions, with 95% intervals (Wilson for the rates, the percentile
    bootstrap over scenes for F1, which covered 87-94% at 24-40 scenes and 94% at 200 in simulations; BCa did 95-96%
    but fails on resamples where F1 is undefined).

    Args:
        labels, fired: ``[N]`` 0/1 truth and decisions (scenes).
    Returns: ``{"tpr", "fpr", "f1": {"value", "ci95", "n"}, "precision", "tp", "fp", "fn", "tn"}``;
        the F1 interval resamples scenes (pairs of label and decision), ignoring resamples where F1
        is undefined.
    """
    labels = np.asarray(labels, dtype=bool)
    fired = np.asarray(fired, dtype=bool)

    def estimate(values: np.ndarray) -> dict:
        mean, low, high = mean_with_ci(np.asarray(values, dtype=float), seed=seed, n_resamples=n_resamples)
        return {"value": mean, "ci95": [low, high], "n": int(len(values))}

    f1 = float(_f1(labels, fired)) if len(labels) else float("nan")
    low = high = f1
    if len(labels) > 1 and np.isfinite(f1):
        index = np.random.default_rng(seed).integers(0, len(labels), (n_resamples, len(labels)))
        low, high = (float(v) for v in np.nanpercentile(_f1(labels[index], fired[index]), [2.5, 97.5]))
    tp, fp = int(np.sum(fired & labels)), int(np.sum(fired & ~labels))
    return {"tpr": estimate(fired[labels]), "fpr": estimate(fired[~labels]),
            "f1": {"value": f1, "ci95": [low, high], "n": int(len(labels))},
            "precision": tp / (tp + fp) if tp + fp else float("nan"),
            "tp": tp, "fp": fp, "fn": int(np.sum(~fired & labels)), "tn": int(np.sum(~fired & ~labels))}


def f1_from_counts(values: np.ndarray) -> float:
    """F1 = 2TP / (2TP + FP + FN) pooled over rows ``[N, 2]`` of (label, fired); NaN with no
    positive and no detection. The statistic for :func:`clustered_bootstrap` on detection rows."""
    values = np.asarray(values, dtype=bool).reshape(-1, 2)
    return float(_f1(values[:, 0], values[:, 1]))


def rate_of(values: np.ndarray) -> float:
    """Mean of 0/1 ``values`` ``[N]`` (a TPR or FPR), NaN if empty."""
    values = np.asarray(values, dtype=float)
    return float(values.mean()) if values.size else float("nan")


def few_clusters_widening(clusters: int, level: float = 0.95) -> float:
    """How much to widen a percentile-bootstrap interval over ``clusters`` resampled clusters: the bootstrap
    spreads like a normal with the plug-in variance, too narrow for few clusters, so the factor is Student's t
    with k − 1 degrees of freedom over the normal, times sqrt(k / (k − 1)) (about 1.58 for 5 clusters, 1.29
    for 8, 1.10 for 20, 1.04 for 42). Simulated coverage of a voice-clustered rate's 95% interval, 300 data
    sets each: 0.85-0.87 plain and 0.93 widened for 5 voices, 0.85-0.87 and 0.90-0.92 for 8, 0.88-0.93 and
    0.91-0.95 for 20."""
    if clusters < 2:
        return 1.0
    tail = 0.5 + level / 2
    return float(stats.t.ppf(tail, clusters - 1) / stats.norm.ppf(tail) * np.sqrt(clusters / (clusters - 1)))


def clustered_bootstrap(values: ArrayLike, clusters: ArrayLike, statistic: Callable[[np.ndarray], float],
                        n_resamples: int = 2000, seed: int = 0, level: float = 0.95,
                        bounds: tuple[float, float] | None = None, widen: bool = True) -> dict:
    """A percentile-bootstrap interval that resamples clusters (voices), not rows (scenes), widened for few
    clusters (:func:`few_clusters_widening`).

    Each resample draws as many clusters as there are, uniformly with replacement, stacks the rows
    of the clusters drawn (a cluster drawn twice counts twice) and evaluates ``statistic`` on them;
    the interval is the ``(1 ± level) / 2`` percentiles of the finite resampled values, each end moved
    away from the estimate by the widening factor (and kept within ``bounds``, e.g. ``(0, 1)`` for a rate
    or F1). For F1 use :func:`f1_from_counts` on (label, fired) rows: the counts are pooled within each
    resample, F1 is not averaged over clusters. One cluster gives no interval worth the name: it is the
    estimate alone (``clusters`` says so).

    Args:
        values: ``[N, ...]`` rows (any array with a first axis).
        clusters: ``[N]`` the cluster of each row (any hashable labels).
        statistic: rows ``[n, ...]`` -> float.
        n_resamples, seed, level: resamples, the generator's seed, the coverage.
        bounds: the statistic's range, to keep the widened interval in.
        widen: ``False`` gives the plain percentiles (factor 1).
    Returns: a dict with ``value`` (``statistic(values)``), ``ci95`` (``[low, high]``, the ``level``
    interval whatever ``level``), ``clusters`` (k), ``n`` (N), ``resamples`` (the finite ones) and
    ``widening`` (the factor applied).
    """
    values = np.asarray(values)
    labels = np.asarray(clusters)
    if len(values) != len(labels):
        raise ValueError(f"{len(values)} values for {len(labels)} cluster labels: give one label per row.")
    if len(values) == 0:
        return {"value": float("nan"), "ci95": [float("nan"), float("nan")], "clusters": 0, "n": 0, "resamples": 0}
    names, index = np.unique(labels, return_inverse=True)
    members = [np.flatnonzero(index == k) for k in range(len(names))]
    value = float(statistic(values))
    rng = np.random.default_rng(seed)
    draws = rng.integers(0, len(members), (n_resamples, len(members)))
    resampled = np.array([statistic(values[np.concatenate([members[k] for k in row])]) for row in draws],
                         dtype=float)
    finite = resampled[np.isfinite(resampled)]
    tail = (1 - level) / 2 * 100
    low, high = (float(v) for v in np.percentile(finite, [tail, 100 - tail])) if finite.size else (value, value)
    widening = few_clusters_widening(len(members), level) if widen else 1.0
    if np.isfinite(value):
        low, high = value - (value - low) * widening, value + (high - value) * widening
        if bounds is not None:
            low, high = max(low, bounds[0]), min(high, bounds[1])
    return {"value": value, "ci95": [low, high], "clusters": int(len(members)), "n": int(len(values)),
            "resamples": int(finite.size), "widening": widening}
