"""Segmentation metrics: Dice, a fast HD95 identical to medpy's, and the two conventions our report uses.

Everything here returns numbers; formatting lives in :mod:`nnunetv2_resunet.report` and plotting in
:mod:`nnunetv2_resunet.plots`.

Raw per-case numbers (:class:`ClassMetrics`) are convention independent. Two conventions turn them into the
(Dice, HD95) pairs that get averaged:

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
import SimpleITK as sitk
from scipy.ndimage import binary_erosion, distance_transform_edt, generate_binary_structure

PHYSICAL = "physical"
TRANSUNET = "transunet"
CONVENTIONS: tuple[str, ...] = (PHYSICAL, TRANSUNET)

#: Units of HD95 under each convention, for labelling outputs.
HD95_UNITS: dict[str, str] = {PHYSICAL: "mm", TRANSUNET: "voxels"}

LabelOrRegion = int | tuple[int, ...]


# ----------------------------------------------------------------------------------------------------------------
# Mask metrics
# ----------------------------------------------------------------------------------------------------------------


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
        conventions in this module decide what is reported in that case.
    """
    return hd95_multi(pred, ref, [spacing], connectivity)[0]


# ----------------------------------------------------------------------------------------------------------------
# Per-class raw numbers and the two conventions
# ----------------------------------------------------------------------------------------------------------------


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


# ----------------------------------------------------------------------------------------------------------------
# Aggregation
# ----------------------------------------------------------------------------------------------------------------


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


# ----------------------------------------------------------------------------------------------------------------
# Cases on disk
# ----------------------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Target:
    """A label or region to evaluate.

    Attributes:
        name: its name in dataset.json.
        value: the label value, or the tuple of label values of a region.
        is_region: Dice only (HD95 is computed for labels only).
    """

    name: str
    value: LabelOrRegion
    is_region: bool = False

    @property
    def value_text(self) -> str:
        """The value as written to CSV: ``3`` or ``1,2,3``."""
        if isinstance(self.value, tuple):
            return ",".join(str(v) for v in self.value)
        return str(self.value)


@dataclass(frozen=True)
class Geometry:
    """Image geometry in SimpleITK order (x, y, z).

    Attributes:
        shape: array shape (z, y, x).
        spacing: voxel size per image axis, (x, y, z).
        origin: physical origin, (x, y, z).
        direction: flattened direction cosine matrix.
    """

    shape: tuple[int, ...]
    spacing: tuple[float, ...]
    origin: tuple[float, ...]
    direction: tuple[float, ...]

    @property
    def array_spacing(self) -> tuple[float, ...]:
        """Spacing in array axis order (z, y, x), the order HD95 needs."""
        return tuple(reversed(self.spacing))


def read_segmentation(path: str) -> tuple[np.ndarray, Geometry]:
    """Read a segmentation with SimpleITK.

    Args:
        path: image file (any format SimpleITK reads, e.g. ``.nii.gz``).

    Returns:
        ``(array, geometry)``; the array is in (z, y, x) order.
    """
    image = sitk.ReadImage(path)
    array = sitk.GetArrayFromImage(image)
    geometry = Geometry(
        shape=tuple(array.shape),
        spacing=tuple(image.GetSpacing()),
        origin=tuple(image.GetOrigin()),
        direction=tuple(image.GetDirection()),
    )
    return array, geometry


def check_geometry(case: str, pred: Geometry, ref: Geometry, tolerance: float = 1e-3) -> None:
    """Raise if the prediction and the reference of a case do not lie on the same grid.

    Args:
        case: case identifier, named in the error.
        pred: geometry of the prediction.
        ref: geometry of the reference.
        tolerance: absolute tolerance for spacing, origin and direction.

    Raises:
        ValueError: naming the case and the first differing property with both values.
    """
    if pred.shape != ref.shape:
        raise ValueError(f"case {case}: prediction shape {pred.shape} != reference shape {ref.shape}")
    for name in ("spacing", "origin", "direction"):
        a, b = getattr(pred, name), getattr(ref, name)
        if len(a) != len(b) or not np.allclose(a, b, rtol=0, atol=tolerance):
            raise ValueError(f"case {case}: prediction {name} {a} != reference {name} {b} (tolerance {tolerance})")


def label_mask(segmentation: np.ndarray, value: LabelOrRegion) -> np.ndarray:
    """Boolean mask of a label (``int``) or a region (tuple of labels)."""
    if isinstance(value, tuple):
        return np.isin(segmentation, value)
    return segmentation == value


def evaluate_case(
    case: str,
    pred_file: str,
    ref_file: str,
    targets: Sequence[Target],
    ignore_label: int | None = None,
    tolerance: float = 1e-3,
) -> list[ClassMetrics]:
    """Raw numbers for every target of one case.

    Args:
        case: case identifier (used in errors).
        pred_file: predicted segmentation.
        ref_file: reference segmentation.
        targets: labels and regions to evaluate.
        ignore_label: nnU-Net's ignore label; its voxels in the reference are left out of every number.
        tolerance: geometry tolerance, see :func:`check_geometry`.

    Returns:
        One :class:`ClassMetrics` per target, in the order of ``targets``.

    Raises:
        ValueError: if the geometries differ, naming the case.
    """
    pred, pred_geometry = read_segmentation(pred_file)
    ref, ref_geometry = read_segmentation(ref_file)
    check_geometry(case, pred_geometry, ref_geometry, tolerance)
    ignore = ref == ignore_label if ignore_label is not None else None
    spacing = ref_geometry.array_spacing
    return [
        class_metrics(
            label_mask(pred, t.value), label_mask(ref, t.value), spacing, ignore=ignore, with_hd95=not t.is_region
        )
        for t in targets
    ]
