"""The two conventions that turn raw per-case numbers into the (Dice, HD95) pairs that get averaged, and the
averaging itself.

Raw per-case numbers (:class:`~.metrics.ClassMetrics`) are convention independent:

* ``physical``: HD95 in mm from the image spacing; Dice as nnU-Net computes it (NaN when the class is absent from
  both prediction and reference); HD95 is NaN whenever either mask is empty (it is undefined then); averaged with
  ``nanmean``, so NaNs are left out.
* ``transunet``: the protocol of TransUNet and the papers that compare against it: HD95 in voxel units (no
  spacing); both masks non-empty -> (dice, hd95), prediction non-empty and reference empty -> (1, 0), otherwise
  (0, 0); averaged per class over cases, then over classes.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from nnunetv2_resunet.evaluation.metrics import ClassMetrics

PHYSICAL = "physical"
TRANSUNET = "transunet"
CONVENTIONS: tuple[str, ...] = (PHYSICAL, TRANSUNET)

#: Units of HD95 under each convention, for labelling outputs.
HD95_UNITS: dict[str, str] = {PHYSICAL: "mm", TRANSUNET: "voxels"}


def convention_scores(
    dice_value: float, hd95_mm: float, hd95_voxel: float, pred_empty: bool, ref_empty: bool, convention: str
) -> tuple[float, float]:
    """The (Dice, HD95) pair a convention reports for one case and class.

    Takes the raw numbers (as stored in ``per_case.csv``) so that both conventions can be recomputed from the CSV.

    Args:
        dice_value: raw Dice (NaN when both masks are empty).
        hd95_mm: raw HD95 in mm.
        hd95_voxel: raw HD95 in voxels.
        pred_empty: the prediction has no voxel of this class.
        ref_empty: the reference has no voxel of this class.
        convention: ``"physical"`` or ``"transunet"``.

    Returns:
        ``(dice, hd95)``; under ``physical`` either may be NaN (left out of the means).
    """
    if convention == PHYSICAL:
        return dice_value, hd95_mm
    if convention == TRANSUNET:
        if not pred_empty and not ref_empty:
            return dice_value, hd95_voxel
        if not pred_empty and ref_empty:
            return 1.0, 0.0
        return 0.0, 0.0
    raise ValueError(f"unknown convention {convention!r}; expected one of {CONVENTIONS}")


def scores_for(metrics: ClassMetrics, convention: str) -> tuple[float, float]:
    """:func:`convention_scores` for a :class:`ClassMetrics`."""
    return convention_scores(
        metrics.dice, metrics.hd95, metrics.hd95_voxel, metrics.pred_empty, metrics.ref_empty, convention
    )


@dataclass(frozen=True)
class Stat:
    """Mean and spread of one metric over cases.

    Attributes:
        mean: mean over cases (``nanmean``: NaN values left out).
        std: sample standard deviation over the same values (ddof=1); NaN with fewer than two values.
        n: number of values that entered (non-NaN).
    """

    mean: float
    std: float
    n: int


def summarize(values: Sequence[float]) -> Stat:
    """Mean, sample standard deviation and count of the non-NaN entries of ``values``."""
    array = np.asarray(values, dtype=float)
    finite = array[~np.isnan(array)]
    if finite.size == 0:
        return Stat(math.nan, math.nan, 0)
    std = float(np.std(finite, ddof=1)) if finite.size > 1 else math.nan
    return Stat(float(np.mean(finite)), std, int(finite.size))


def mean_over_classes(per_class: Sequence[Stat], per_case_class_means: Sequence[float]) -> Stat:
    """The "mean" column: mean over classes of the per-class means, spread over cases.

    Args:
        per_class: per-class statistics (their means are averaged, as nnU-Net's ``foreground_mean`` and the
            papers do).
        per_case_class_means: for each case, the mean over classes of that case's values; their standard
            deviation is the spread reported beside the mean.

    Returns:
        ``Stat(mean of class means, std over cases, number of cases)``. The mean is NaN if any class mean is NaN.
    """
    class_means = [s.mean for s in per_class]
    mean = float(np.mean(class_means)) if class_means else math.nan
    spread = summarize(per_case_class_means)
    return Stat(mean, spread.std, spread.n)
