"""One case on disk: read prediction and reference, check they share a grid, and return the raw numbers of every
label and region (:class:`~.metrics.ClassMetrics`)."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import SimpleITK as sitk

from nnunetv2_resunet.evaluation.metrics import ClassMetrics, class_metrics

LabelOrRegion = int | tuple[int, ...]


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
