"""Segmentation metrics of one mask pair: Dice and a fast HD95 identical to medpy's, and the raw per-class numbers.

Everything here returns numbers. :mod:`.conventions` turns the raw numbers into what the report averages,
:mod:`.case_metrics` reads a case from disk, and the report (:mod:`.report`) formats.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
from scipy.ndimage import binary_erosion, distance_transform_edt, generate_binary_structure


def _check_same_shape(pred: np.ndarray, ref: np.ndarray) -> None:
    if pred.shape != ref.shape:
        raise ValueError(f"prediction and reference shapes differ: {pred.shape} vs {ref.shape}")


def dice(pred: np.ndarray, ref: np.ndarray, ignore: np.ndarray | None = None) -> float:
    """Dice coefficient of two binary masks, as nnU-Net's ``compute_metrics`` computes it.

    Args:
        pred: predicted mask, any shape; non-zero is foreground.
        ref: reference mask, same shape as ``pred``.
        ignore: optional mask of voxels to leave out (nnU-Net's ignore label), same shape.

    Returns:
        ``2 TP / (2 TP + FP + FN)``, or NaN when both masks are empty (outside ``ignore``).
    """
    pred = np.asarray(pred, dtype=bool)
    ref = np.asarray(ref, dtype=bool)
    _check_same_shape(pred, ref)
    if ignore is not None:
        keep = ~np.asarray(ignore, dtype=bool)
        _check_same_shape(pred, keep)
        pred = pred & keep
        ref = ref & keep
    tp = int(np.count_nonzero(pred & ref))
    denominator = int(np.count_nonzero(pred)) + int(np.count_nonzero(ref))
    if denominator == 0:
        return math.nan
    return 2.0 * tp / denominator


def _normalize_spacing(spacing: float | Sequence[float] | None, ndim: int) -> tuple[float, ...] | None:
    if spacing is None:
        return None
    values = (float(spacing),) * ndim if np.isscalar(spacing) else tuple(float(s) for s in spacing)
    if len(values) != ndim:
        raise ValueError(f"spacing needs one value per array axis ({ndim}), got {spacing}")
    if not all(s > 0 and math.isfinite(s) for s in values):
        raise ValueError(f"spacing must be positive and finite, got {spacing}")
    return values


def _joint_bounding_box(a: np.ndarray, b: np.ndarray) -> tuple[slice, ...]:
    """Smallest box holding every foreground voxel of ``a`` and ``b`` (both assumed non-empty)."""
    union = a | b
    box = []
    for axis in range(union.ndim):
        other_axes = tuple(i for i in range(union.ndim) if i != axis)
        occupied = np.flatnonzero(union.any(axis=other_axes))
        box.append(slice(int(occupied[0]), int(occupied[-1]) + 1))
    return tuple(box)


def _border(mask: np.ndarray, connectivity: int) -> np.ndarray:
    """Foreground voxels that one erosion removes: medpy's surface definition.

    ``binary_erosion`` uses ``border_value=0``, so voxels on the array's edge count as border.
    """
    structure = generate_binary_structure(mask.ndim, connectivity)
    return mask ^ binary_erosion(mask, structure=structure, iterations=1)


def hd95_multi(
    pred: np.ndarray,
    ref: np.ndarray,
    spacings: Sequence[float | Sequence[float] | None],
    connectivity: int = 1,
) -> list[float]:
    """HD95 of one mask pair under several spacings, sharing the cropping and the surface extraction.

    Args:
        pred: predicted mask, any number of dimensions; non-zero is foreground.
        ref: reference mask, same shape as ``pred``.
        spacings: each entry is ``None`` (voxel units), one float for all axes, or one float per axis.
        connectivity: neighbourhood for the surface, passed to ``generate_binary_structure`` (medpy's default 1).

    Returns:
        One HD95 per entry of ``spacings``; NaN for every entry if either mask is empty.
    """
    pred = np.asarray(pred, dtype=bool)
    ref = np.asarray(ref, dtype=bool)
    _check_same_shape(pred, ref)
    if pred.ndim == 0:
        raise ValueError("masks need at least one dimension, got 0-d arrays")
    samplings = [_normalize_spacing(s, pred.ndim) for s in spacings]
    if not pred.any() or not ref.any():
        return [math.nan] * len(samplings)

    # Exactness of the crop: every surface voxel of either mask lies inside the joint bounding box, so each nearest
    # surface voxel (the EDT's target) is inside it; and everything outside the box is background, which is what
    # binary_erosion's border_value=0 assumes outside the array, so the surfaces are unchanged too.
    box = _joint_bounding_box(pred, ref)
    pred_border = _border(pred[box], connectivity)
    ref_border = _border(ref[box], connectivity)
    results = []
    for sampling in samplings:
        pred_to_ref = distance_transform_edt(~ref_border, sampling=sampling)[pred_border]
        ref_to_pred = distance_transform_edt(~pred_border, sampling=sampling)[ref_border]
        results.append(float(np.percentile(np.hstack((pred_to_ref, ref_to_pred)), 95)))
    return results


def hd95(
    pred: np.ndarray,
    ref: np.ndarray,
    spacing: float | Sequence[float] | None = None,
    connectivity: int = 1,
) -> float:
    """95th percentile of the symmetric surface distance; equals ``medpy.metric.binary.hd95``.

    The result is identical to ``medpy.metric.binary.hd95(pred, ref, voxelspacing=spacing)`` (same surface
    definition, same distance transform, same percentile) but both masks are first cropped to their joint bounding
    box, which makes it many times faster on large, mostly empty volumes.

    Args:
        pred: predicted mask, any number of dimensions; non-zero is foreground.
        ref: reference mask, same shape as ``pred``.
        spacing: ``None`` for voxel units, one float for all axes, or one float per array axis (in array order,
            i.e. (z, y, x) for a SimpleITK array).
        connectivity: neighbourhood for the surface, as in medpy (default 1).

    Returns:
        HD95 in the units of ``spacing``. NaN if either mask is empty (medpy raises ``RuntimeError`` there); the
        conventions (:mod:`.conventions`) decide what is reported in that case.
    """
    return hd95_multi(pred, ref, [spacing], connectivity)[0]


@dataclass(frozen=True)
class ClassMetrics:
    """Convention-independent numbers for one case and one label or region.

    Attributes:
        dice: nnU-Net's Dice (NaN when both masks are empty).
        hd95: HD95 in mm (NaN when either mask is empty or for regions, where it is not computed).
        hd95_voxel: HD95 in voxel units (NaN likewise).
        n_pred: foreground voxels in the prediction.
        n_ref: foreground voxels in the reference.
    """

    dice: float
    hd95: float
    hd95_voxel: float
    n_pred: int
    n_ref: int

    @property
    def pred_empty(self) -> bool:
        return self.n_pred == 0

    @property
    def ref_empty(self) -> bool:
        return self.n_ref == 0


def class_metrics(
    pred: np.ndarray,
    ref: np.ndarray,
    spacing: Sequence[float] | None,
    ignore: np.ndarray | None = None,
    with_hd95: bool = True,
) -> ClassMetrics:
    """All raw numbers for one binary mask pair.

    Args:
        pred: predicted mask.
        ref: reference mask, same shape.
        spacing: voxel spacing per array axis in mm, or ``None`` (then ``hd95`` equals ``hd95_voxel``).
        ignore: voxels to leave out of every number (nnU-Net's ignore label).
        with_hd95: compute HD95 (labels) or leave it NaN (regions, Dice only).

    Returns:
        The :class:`ClassMetrics` of the pair.
    """
    pred = np.asarray(pred, dtype=bool)
    ref = np.asarray(ref, dtype=bool)
    if ignore is not None:
        keep = ~np.asarray(ignore, dtype=bool)
        pred = pred & keep
        ref = ref & keep
    hd_mm, hd_voxel = hd95_multi(pred, ref, [spacing, None]) if with_hd95 else (math.nan, math.nan)
    return ClassMetrics(
        dice=dice(pred, ref),
        hd95=hd_mm,
        hd95_voxel=hd_voxel,
        n_pred=int(np.count_nonzero(pred)),
        n_ref=int(np.count_nonzero(ref)),
    )
