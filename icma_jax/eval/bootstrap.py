"""Paired bootstrap over test examples: how sure a difference between two systems' corpus metrics is.

Both systems scored the same Q examples. Each resample draws Q examples with replacement (as counts per
example), the same draws for both systems, and recomputes each corpus metric from its per-example
statistics (`eval.example_stats`); the interval is the percentile interval of the resampled differences.
"""

from __future__ import annotations

import dataclasses

import numpy as np

from icma_jax.eval.example_stats import MetricStats


@dataclasses.dataclass(frozen=True)
class Difference:
    """`b - a` on all examples and its bootstrap interval at `level`."""

    value: float
    low: float
    high: float
    level: float


def resample_counts(n: int, resamples: int = 2000, seed: int = 0) -> np.ndarray:
    """Counts `resamples x Q` (Q = n): how often each example is drawn in each resample (every row sums to n)."""
    if n < 1 or resamples < 1:
        raise ValueError(f"bootstrap needs at least one example and one resample, got n={n}, resamples={resamples}")
    draws = np.random.default_rng(seed).integers(0, n, size=(resamples, n))
    return np.stack([np.bincount(row, minlength=n) for row in draws]).astype(np.float64)


def paired_difference(a: MetricStats, b: MetricStats, counts: np.ndarray, level: float = 0.95) -> Difference:
    """Metric of `b` minus metric of `a`, with the percentile interval over the resamples `counts`
    (`resamples x Q`, from `resample_counts`)."""
    if a.values_QxF.shape[0] != b.values_QxF.shape[0] or counts.shape[1] != a.values_QxF.shape[0]:
        raise ValueError(f"paired bootstrap needs the same examples: {a.values_QxF.shape[0]} and "
                         f"{b.values_QxF.shape[0]} rows, resamples over {counts.shape[1]}")
    if not 0.0 < level < 1.0:
        raise ValueError(f"level must be in (0, 1), got {level}")
    diffs = b.combine(counts @ b.values_QxF) - a.combine(counts @ a.values_QxF)
    diffs = diffs[np.isfinite(diffs)]  # a resample with no countable row (e.g. no valid molecule) has none
    tail = 100.0 * (1.0 - level) / 2.0
    low, high = (np.percentile(diffs, [tail, 100.0 - tail]) if len(diffs) else (np.nan, np.nan))
    return Difference(b.value() - a.value(), float(low), float(high), level)
