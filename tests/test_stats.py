"""wsrl.stats: IQM and stratified bootstrap confidence intervals, against values worked out by hand, by
enumerating every resample, by scipy, and by rliable itself."""

import itertools

import numpy as np
import pytest

from wsrl import stats


def exact_distribution(scores_by_task, statistic):
    """Every stratified resample (each task's runs drawn with replacement from that task), all equally likely:
    the statistic's exact bootstrap distribution as an array of equally weighted values."""
    per_task = [list(itertools.product(s, repeat=len(s))) for s in scores_by_task]
    return np.array([statistic(np.concatenate(combo)) for combo in itertools.product(*per_task)])


def is_quantile(value, distribution, q, slack=0.01):
    """`value` is a q-quantile of the equally weighted `distribution` (up to `slack` of probability)."""
    return np.mean(distribution < value) <= q + slack and np.mean(distribution <= value) >= q - slack


def test_iqm_hand_worked_on_eight_values():
    values = [7, 1, 100, 3, 5, 2, 8, 4]
    # sorted 1 2 3 4 5 7 8 100; floor(0.25 * 8) = 2 dropped from each end: (3 + 4 + 5 + 7) / 4
    assert stats.iqm(values) == pytest.approx(4.75)
    scipy_stats = pytest.importorskip("scipy.stats")
    assert stats.iqm(values) == pytest.approx(scipy_stats.trim_mean(values, 0.25))
    assert stats.iqm([[1, 2, 3, 4, 5, 6, 7, 8], values], axis=-1).tolist() == pytest.approx([4.5, 4.75])
    assert stats.iqm([10, 1, 2, 3, 4]) == pytest.approx(3.0)  # floor(1.25) = 1 dropped from each end
    assert stats.mean([1, 2, 6]) == pytest.approx(3.0)


def test_equal_scores_give_a_zero_width_interval():
    for statistic in (stats.mean, stats.iqm):
        assert stats.bootstrap_ci([[7.5] * 4, [7.5] * 2], statistic) == (7.5, 7.5, 7.5)


def test_two_seeds():
    a, b = 20.0, 60.0
    # the bootstrap mean is a, (a + b) / 2 or b with probabilities 1/4, 1/2, 1/4
    assert stats.bootstrap_ci([[a, b]], stats.mean) == (40.0, a, b)
    assert stats.bootstrap_ci([[a, b]], stats.mean, level=0.4) == (40.0, 40.0, 40.0)  # 30th and 70th percentiles


@pytest.mark.parametrize("scores_by_task, statistic", [
    ([[1.0, 2.0, 4.0, 8.0]], stats.mean),  # one task: the ordinary bootstrap over seeds
    ([[0.0, 10.0], [1.0, 2.0, 6.0]], stats.iqm),  # ragged tasks
    ([[0.0, 10.0], [1.0, 2.0, 6.0]], stats.mean),
])
def test_interval_ends_are_quantiles_of_the_exact_bootstrap_distribution(scores_by_task, statistic):
    exact = exact_distribution(scores_by_task, statistic)
    point, low, high = stats.bootstrap_ci(scores_by_task, statistic, reps=20000)
    assert point == pytest.approx(statistic(np.concatenate(scores_by_task)))
    assert is_quantile(low, exact, 0.025) and is_quantile(high, exact, 0.975)
    _, low80, high80 = stats.bootstrap_ci(scores_by_task, statistic, reps=20000, level=0.8)
    assert is_quantile(low80, exact, 0.1) and is_quantile(high80, exact, 0.9)


def test_stratification_keeps_each_tasks_count():
    first, second = [0.0, 1.0, 2.0], [1000.0, 1001.0]

    def from_second(x, axis=-1):
        return np.sum(np.asarray(x) >= 1000, axis=axis)

    assert stats.bootstrap_ci([first, second], from_second) == (2.0, 2.0, 2.0)
    samples = stats.stratified_resamples([first, second], reps=500)
    assert samples.shape == (500, 5)
    assert set(np.unique(samples[:, :3])) <= set(first) and set(np.unique(samples[:, 3:])) <= set(second)


def test_statistics_without_an_axis_argument_and_determinism():
    scores = [[3.0, 9.0, 4.0, 1.0], [2.0, 8.0]]
    with_axis = stats.bootstrap_ci(scores, np.median)
    assert stats.bootstrap_ci(scores, lambda x: float(np.median(x))) == pytest.approx(with_axis)
    spread = [np.random.default_rng(2).normal(size=10)]  # many distinct resample means: the seed shows
    assert stats.bootstrap_ci(spread, seed=3) == stats.bootstrap_ci(spread, seed=3)
    assert stats.bootstrap_ci(spread, seed=3) != stats.bootstrap_ci(spread, seed=4)
    with pytest.raises(ValueError):
        stats.bootstrap_ci([[1.0], []])


def test_single_task_mean_matches_scipy_percentile_bootstrap():
    scipy_stats = pytest.importorskip("scipy.stats")
    values = np.random.default_rng(1).normal(50.0, 10.0, size=12)
    _, low, high = stats.bootstrap_ci([values], stats.mean, reps=20000)
    reference = scipy_stats.bootstrap((values,), np.mean, n_resamples=20000, method="percentile",
                                      confidence_level=0.95, rng=np.random.default_rng(0)).confidence_interval
    # the standard error of the mean is about 2.9: the two Monte-Carlo estimates agree to a few hundredths of it
    assert low == pytest.approx(reference.low, abs=0.15) and high == pytest.approx(reference.high, abs=0.15)


def test_rliable_reference_value():
    """Measured with rliable 1.2.0 (pandas < 3) on scores={'a': np.array([[10, 20, 30], [40, 50, 60]]).T}
    (3 runs x 2 tasks), get_interval_estimates with reps=20000: IQM 35.0 [27.5, 42.5], mean 35.0 [28.33, 41.67]."""
    tasks = list(np.array([[10, 20, 30], [40, 50, 60]]))
    point, low, high = stats.bootstrap_ci(tasks, stats.iqm, reps=20000)
    assert point == 35.0 and low == pytest.approx(27.5, abs=0.5) and high == pytest.approx(42.5, abs=0.5)
    point, low, high = stats.bootstrap_ci(tasks, stats.mean, reps=20000)
    assert point == 35.0 and low == pytest.approx(28.33, abs=0.5) and high == pytest.approx(41.67, abs=0.5)


def test_band_is_the_interval_of_the_mean_at_each_point():
    curves = np.array([[10.0, 0.0], [20.0, 5.0], [60.0, 7.0]])  # 3 seeds x 2 evaluation steps
    mean, low, high = stats.bootstrap_mean_band(curves)
    assert mean.tolist() == pytest.approx([30.0, 4.0])
    for column in range(2):
        _, lo, hi = stats.bootstrap_ci([curves[:, column]], stats.mean)  # the same resamples of the seeds
        assert (low[column], high[column]) == pytest.approx((lo, hi))
