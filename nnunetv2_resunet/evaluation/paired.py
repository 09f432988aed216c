"""Paired statistics of two models on the same cases: mean difference, bootstrap interval, Wilcoxon test, Holm.

Plain numbers in, plain numbers out (the report turns them into tables). A difference is always *reference minus
model*, and a win is a case where the reference is better: higher Dice, lower HD95.

* the confidence interval is the percentile bootstrap of the mean difference over cases (``N_RESAMPLES`` resamples
  of the cases with replacement, from a generator with a fixed seed, so a report is reproducible);
* the p-value is scipy's two-sided Wilcoxon signed-rank test on the differences (zero differences dropped,
  Wilcoxon's own treatment; scipy chooses the exact or the normal-approximation distribution);
* a pair with fewer than ``MIN_CASES`` cases gets no p-value: with 5 cases the smallest two-sided exact p is
  2 / 2**5 = 0.0625, so no difference could ever be distinguished; a pair whose differences are all zero gets none
  either (there is nothing to test). Either is said in ``note``.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

MIN_CASES = 6
N_RESAMPLES = 10_000
SEED = 0
TIE_TOLERANCE = 1e-12


@dataclass(frozen=True)
class PairedResult:
    """Reference minus model over the cases where both values are defined.

    Attributes:
        n: number of cases that entered (both values finite).
        mean_diff: mean of the differences (NaN when ``n`` is 0).
        ci_low, ci_high: 95 % percentile-bootstrap interval of the mean difference (NaN below ``MIN_CASES``).
        p_wilcoxon: two-sided Wilcoxon signed-rank p-value (NaN when not tested; ``note`` says why).
        wins, ties, losses: cases where the reference is better, equal, worse.
        note: empty when tested, else why there is no p-value.
    """

    n: int
    mean_diff: float
    ci_low: float
    ci_high: float
    p_wilcoxon: float
    wins: int
    ties: int
    losses: int
    note: str = ""

    @property
    def tested(self) -> bool:
        return not math.isnan(self.p_wilcoxon)


def differences(reference: Sequence[float], model: Sequence[float]) -> np.ndarray:
    """``reference - model`` for the pairs where both are finite (NaN marks an undefined value)."""
    ref, other = np.asarray(reference, dtype=float), np.asarray(model, dtype=float)
    if ref.shape != other.shape or ref.ndim != 1:
        raise ValueError(f"paired values need two equally long sequences, got shapes {ref.shape} and {other.shape}")
    keep = np.isfinite(ref) & np.isfinite(other)
    return ref[keep] - other[keep]


def bootstrap_interval(diffs: np.ndarray, n_resamples: int = N_RESAMPLES, seed: int = SEED,
                       level: float = 0.95) -> tuple[float, float]:
    """Percentile-bootstrap interval of the mean of ``diffs`` (cases resampled with replacement)."""
    if diffs.size == 0:
        return math.nan, math.nan
    rng = np.random.default_rng(seed)
    means = diffs[rng.integers(0, diffs.size, size=(n_resamples, diffs.size))].mean(axis=1)
    tail = (1.0 - level) / 2 * 100
    low, high = np.percentile(means, [tail, 100 - tail])
    return float(low), float(high)


def paired_difference(reference: Sequence[float], model: Sequence[float], higher_is_better: bool,
                      n_resamples: int = N_RESAMPLES, seed: int = SEED) -> PairedResult:
    """Reference against model on the same cases (``reference[i]`` and ``model[i]`` are one case).

    Args:
        reference, model: one value per case; NaN where the metric is undefined (the pair is left out).
        higher_is_better: True for Dice, False for HD95 (decides what a win is).
    """
    from scipy.stats import wilcoxon  # scipy only where statistics are computed

    diffs = differences(reference, model)
    n = int(diffs.size)
    better = diffs if higher_is_better else -diffs
    wins, losses = int(np.sum(better > TIE_TOLERANCE)), int(np.sum(better < -TIE_TOLERANCE))
    ties = n - wins - losses
    if n == 0:
        return PairedResult(0, math.nan, math.nan, math.nan, math.nan, 0, 0, 0, "no case with both values defined")
    mean = float(diffs.mean())
    if n < MIN_CASES:
        return PairedResult(n, mean, math.nan, math.nan, math.nan, wins, ties, losses,
                            f"only {n} case{'s' if n != 1 else ''}, a test needs at least {MIN_CASES}")
    low, high = bootstrap_interval(diffs, n_resamples, seed)
    if ties == n:
        return PairedResult(n, mean, low, high, math.nan, wins, ties, losses, "all differences are zero")
    p_value = float(wilcoxon(diffs, zero_method="wilcox", alternative="two-sided").pvalue)
    return PairedResult(n, mean, low, high, p_value, wins, ties, losses)


def holm(p_values: Sequence[float]) -> list[float]:
    """Holm's step-down adjustment of a family of p-values; NaN entries (untested) stay NaN and are not counted.

    The i-th smallest of m p-values is multiplied by (m - i), made monotone and capped at 1.
    """
    tested = [(p, i) for i, p in enumerate(p_values) if not math.isnan(p)]
    adjusted = [math.nan] * len(p_values)
    running = 0.0
    m = len(tested)
    for rank, (p, index) in enumerate(sorted(tested)):
        running = max(running, min(1.0, (m - rank) * p))
        adjusted[index] = running
    return adjusted
