"""Paired statistics (nnunetv2_resunet.evaluation.paired): a hand-computed case, scipy's own functions, Holm."""

import math

import numpy as np
import pytest
from scipy import stats

from nnunetv2_resunet.evaluation.paired import MIN_CASES, bootstrap_interval, holm, paired_difference


def test_hand_computed_case():
    """Six cases, the reference better in each by a different amount: no negative rank, so the exact two-sided
    Wilcoxon p is 2 / 2**6 (the all-positive sign pattern and its mirror)."""
    reference = [0.90, 0.85, 0.80, 0.95, 0.70, 0.60, math.nan]
    model = [0.89, 0.83, 0.77, 0.91, 0.65, 0.54, 0.50]  # the last case is undefined for the reference: left out
    result = paired_difference(reference, model, higher_is_better=True)
    assert result.n == 6
    assert result.mean_diff == pytest.approx((0.01 + 0.02 + 0.03 + 0.04 + 0.05 + 0.06) / 6)
    assert (result.wins, result.ties, result.losses) == (6, 0, 0)
    assert result.p_wilcoxon == pytest.approx(2 / 2 ** 6)
    assert 0.01 <= result.ci_low < result.mean_diff < result.ci_high <= 0.06
    assert result.note == "" and result.tested

    # HD95: lower is better, so the same numbers are six losses of the reference, and the same p-value.
    hd95 = paired_difference(reference, model, higher_is_better=False)
    assert (hd95.wins, hd95.ties, hd95.losses) == (0, 0, 6)
    assert hd95.p_wilcoxon == result.p_wilcoxon and hd95.mean_diff == result.mean_diff


def test_constant_differences_have_a_point_interval():
    result = paired_difference([0.5] * 8, [0.25] * 8, higher_is_better=True)
    assert (result.ci_low, result.ci_high) == (0.25, 0.25)


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_agrees_with_scipy(seed):
    rng = np.random.default_rng(seed)
    reference = rng.uniform(0.5, 1.0, 15)
    model = reference - rng.normal(0.02, 0.05, 15)
    model[3] = reference[3]  # a tie: dropped by Wilcoxon's zero method, counted as a tie here
    result = paired_difference(reference, model, higher_is_better=True)
    diffs = reference - model
    assert result.p_wilcoxon == pytest.approx(stats.wilcoxon(diffs, zero_method="wilcox").pvalue)
    assert result.mean_diff == pytest.approx(diffs.mean())
    assert result.ties == 1 and result.wins == int(np.sum(diffs > 0)) and result.losses == int(np.sum(diffs < 0))
    # The same percentile bootstrap as scipy's, up to the resampling noise of 10,000 resamples.
    scipy_ci = stats.bootstrap((diffs,), np.mean, n_resamples=10_000, method="percentile",
                               rng=np.random.default_rng(99)).confidence_interval
    width = scipy_ci.high - scipy_ci.low
    assert result.ci_low == pytest.approx(scipy_ci.low, abs=0.1 * width)
    assert result.ci_high == pytest.approx(scipy_ci.high, abs=0.1 * width)


def test_the_interval_is_reproducible():
    diffs = np.random.default_rng(5).normal(0, 1, 12)
    assert bootstrap_interval(diffs) == bootstrap_interval(diffs)
    assert bootstrap_interval(diffs, seed=1) != bootstrap_interval(diffs)


def test_too_few_cases_or_no_difference_get_no_p_value():
    few = paired_difference([0.9, 0.8, 0.7, 0.6, 0.5], [0.1, 0.2, 0.3, 0.4, 0.45], higher_is_better=True)
    assert few.n == MIN_CASES - 1 and math.isnan(few.p_wilcoxon) and not few.tested
    assert few.note == "only 5 cases, a test needs at least 6"
    assert few.wins == 5 and few.mean_diff == pytest.approx((0.8 + 0.6 + 0.4 + 0.2 + 0.05) / 5)
    same = paired_difference([0.7] * 9, [0.7] * 9, higher_is_better=False)
    assert math.isnan(same.p_wilcoxon) and same.note == "all differences are zero" and same.ties == 9
    none = paired_difference([math.nan] * 7, [0.5] * 7, higher_is_better=True)
    assert none.n == 0 and math.isnan(none.mean_diff) and none.note == "no case with both values defined"


def test_holm_by_hand():
    # Sorted: 0.01 x 3 = 0.03; 0.03 x 2 = 0.06; 0.04 x 1 = 0.04, lifted to 0.06 (monotone). NaN is not counted.
    adjusted = holm([0.01, 0.04, 0.03, math.nan])
    assert adjusted[:3] == pytest.approx([0.03, 0.06, 0.06]) and math.isnan(adjusted[3])
    assert holm([0.6, 0.7]) == [1.0, 1.0]  # capped at 1
