"""Aggregate scores the way the field reports them (Agarwal et al. 2021, "Deep RL at the edge of the statistical
precipice", the rliable library): point estimates of the mean and the interquartile mean (IQM), with stratified
bootstrap percentile confidence intervals. Plain NumPy, the same estimators as rliable's `get_interval_estimates`
(docs/aggregation.md).

Scores are passed per task: `scores_by_task[i]` holds task i's scores, one per run (seed); tasks may have
different numbers of runs. A statistic reduces the pooled scores of all tasks along the last axis:
`statistic(x, axis=-1)`, as `mean`, `iqm` and NumPy's reductions do.
"""

from __future__ import annotations

import inspect

import numpy as np


def mean(values, axis=None):
    """Arithmetic mean (a float for 1-D input, an array when `axis` leaves dimensions)."""
    result = np.mean(np.asarray(values, np.float64), axis=axis)
    return float(result) if np.ndim(result) == 0 else result


def iqm(values, axis=None):
    """Interquartile mean: drop floor(25% of n) values from each end, average the rest (scipy.stats.trim_mean
    with 0.25, as rliable computes it). `axis=None` flattens."""
    values = np.asarray(values, np.float64)
    if axis is None:
        values, axis = values.ravel(), -1
    values = np.sort(values, axis=axis)
    n = values.shape[axis]
    if n == 0:
        raise ValueError("iqm of no values")
    cut = int(0.25 * n)
    result = np.take(values, np.arange(cut, n - cut), axis=axis).mean(axis=axis)
    return float(result) if np.ndim(result) == 0 else result


def _reduce(statistic, samples: np.ndarray) -> np.ndarray:
    """statistic over the last axis of a (reps, n) array; a statistic without an `axis` argument is applied to
    each row."""
    try:
        takes_axis = "axis" in inspect.signature(statistic).parameters
    except (TypeError, ValueError):  # some builtins have no signature
        takes_axis = False
    if takes_axis:
        return np.asarray(statistic(samples, axis=-1), np.float64).reshape(len(samples))
    return np.array([statistic(row) for row in samples], np.float64)


def _strata(scores_by_task) -> list[np.ndarray]:
    strata = [np.asarray(s, np.float64).ravel() for s in scores_by_task]
    if not strata or any(len(s) == 0 for s in strata):
        raise ValueError("bootstrap_ci needs at least one task, and at least one score in every task")
    return strata


def stratified_resamples(scores_by_task, reps: int = 2000, seed: int = 0) -> np.ndarray:
    """(reps, total runs) array: in each replicate, every task's runs drawn with replacement from that task alone
    (the task keeps its count), tasks concatenated in the given order."""
    rng = np.random.default_rng(seed)
    return np.concatenate([s[rng.integers(0, len(s), size=(reps, len(s)))] for s in _strata(scores_by_task)],
                          axis=1)


def bootstrap_ci(scores_by_task, statistic=mean, reps: int = 2000, level: float = 0.95,
                 seed: int = 0) -> tuple[float, float, float]:
    """(point estimate, low, high): the statistic of all tasks' scores pooled, and its stratified bootstrap
    percentile interval at `level` (rliable's StratifiedBootstrap: runs resampled with replacement within each
    task independently; the percentiles of the `reps` replicates' statistics, linearly interpolated as
    np.percentile does). One task is the ordinary bootstrap over its runs. Deterministic given `seed`."""
    strata = _strata(scores_by_task)
    point = float(_reduce(statistic, np.concatenate(strata)[None])[0])
    replicates = _reduce(statistic, stratified_resamples(strata, reps, seed))
    low, high = np.percentile(replicates, [50 * (1 - level), 50 * (1 + level)])
    return point, float(low), float(high)


def bootstrap_mean_band(values, reps: int = 2000, level: float = 0.95,
                        seed: int = 0) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """For a (runs, points) array (e.g. seeds x evaluation steps): the mean over runs at each point and the
    bootstrap percentile interval of that mean, resampling runs (whole curves) with replacement. The same
    resamples as `bootstrap_ci` on one task, computed as resample counts times values so memory stays
    (reps, points)."""
    values = np.asarray(values, np.float64)
    if values.ndim != 2 or len(values) == 0:
        raise ValueError("bootstrap_mean_band takes a non-empty (runs, points) array")
    n = len(values)
    rng = np.random.default_rng(seed)
    picks = rng.integers(0, n, size=(reps, n))
    counts = np.zeros((reps, n))
    np.add.at(counts, (np.arange(reps)[:, None], picks), 1.0)
    replicates = counts @ values / n
    low, high = np.percentile(replicates, [50 * (1 - level), 50 * (1 + level)], axis=0)
    return values.mean(axis=0), low, high
