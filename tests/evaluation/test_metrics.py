"""Tests for the evaluation metrics: HD95 against medpy, Dice, both conventions, aggregation, case I/O."""

import math

import numpy as np
import pytest
import SimpleITK as sitk
from medpy.metric.binary import dc as medpy_dc
from medpy.metric.binary import hd95 as medpy_hd95

from nnunetv2_resunet.evaluation.case_metrics import Target, evaluate_case
from nnunetv2_resunet.evaluation.conventions import (
    PHYSICAL,
    TRANSUNET,
    convention_scores,
    mean_over_classes,
    scores_for,
    summarize,
)
from nnunetv2_resunet.evaluation.metrics import ClassMetrics, class_metrics, dice, hd95, hd95_multi


def _random_pair(rng: np.random.Generator, ndim: int, max_size: int = 16) -> tuple[np.ndarray, np.ndarray]:
    shape = tuple(int(s) for s in rng.integers(1, max_size, size=ndim))
    pred = rng.random(shape) < rng.uniform(0.02, 0.6)
    ref = rng.random(shape) < rng.uniform(0.02, 0.6)
    # guarantee non-empty masks: medpy raises on empty ones
    pred.flat[rng.integers(pred.size)] = True
    ref.flat[rng.integers(ref.size)] = True
    return pred, ref


@pytest.mark.parametrize("ndim", [1, 2, 3])
@pytest.mark.parametrize("with_spacing", [False, True])
def test_hd95_equals_medpy_on_random_masks(ndim: int, with_spacing: bool) -> None:
    rng = np.random.default_rng(100 * ndim + with_spacing)
    for _ in range(150):
        pred, ref = _random_pair(rng, ndim)
        spacing = tuple(rng.uniform(0.2, 5.0, size=ndim)) if with_spacing else None
        assert hd95(pred, ref, spacing=spacing) == medpy_hd95(pred, ref, voxelspacing=spacing)


def test_hd95_equals_medpy_on_blobs_in_a_larger_volume() -> None:
    """Small objects in a big, mostly empty volume: the case the crop is for."""
    rng = np.random.default_rng(7)
    z, y, x = np.ogrid[:30, :64, :64]
    for _ in range(10):
        centre = rng.uniform([5, 10, 10], [25, 54, 54])
        radii = rng.uniform(2, 9, size=3)
        ref = ((z - centre[0]) / radii[0]) ** 2 + ((y - centre[1]) / radii[1]) ** 2 + ((x - centre[2]) / radii[2]) ** 2
        pred = ref + rng.normal(0, 0.3, size=ref.shape) < 1.0
        ref = ref < 1.0
        spacing = (2.5, 0.7, 0.9)
        assert hd95(pred, ref, spacing=spacing) == medpy_hd95(pred, ref, voxelspacing=spacing)
        assert hd95(pred, ref) == medpy_hd95(pred, ref)


@pytest.mark.parametrize("spacing", [None, (3.0, 0.5, 1.5)])
def test_hd95_masks_touching_the_array_edge(spacing) -> None:
    """Voxels on the array edge are surface voxels (binary_erosion's border_value=0), as in medpy."""
    ref = np.zeros((6, 10, 12), dtype=bool)
    ref[:, :4, :] = True  # touches five of the six faces
    pred = np.zeros_like(ref)
    pred[2:, 2:9, 5:] = True
    assert hd95(pred, ref, spacing) == medpy_hd95(pred, ref, voxelspacing=spacing)
    full = np.ones((5, 7, 9), dtype=bool)
    corner = np.zeros_like(full)
    corner[0, 0, 0] = True
    assert hd95(full, corner, spacing) == medpy_hd95(full, corner, voxelspacing=spacing)


def test_hd95_one_voxel_masks() -> None:
    pred = np.zeros((9, 9, 9), dtype=bool)
    ref = np.zeros_like(pred)
    pred[1, 2, 3] = True
    ref[1, 2, 3] = True
    assert hd95(pred, ref) == 0.0 == medpy_hd95(pred, ref)
    ref[1, 2, 3] = False
    ref[4, 6, 3] = True  # 3 and 4 voxels away along z and y
    assert hd95(pred, ref) == 5.0 == medpy_hd95(pred, ref)
    assert hd95(pred, ref, spacing=(2.0, 1.0, 7.0)) == medpy_hd95(pred, ref, voxelspacing=(2.0, 1.0, 7.0))
    assert hd95(pred, ref, spacing=(2.0, 1.0, 7.0)) == pytest.approx(math.hypot(6.0, 4.0))


def test_hd95_far_apart_masks() -> None:
    pred = np.zeros((4, 200, 300), dtype=bool)
    ref = np.zeros_like(pred)
    pred[1:3, 5:10, 5:12] = True
    ref[0:2, 180:195, 250:290] = True
    for spacing in (None, (5.0, 0.8, 0.8), 2.0):
        assert hd95(pred, ref, spacing) == medpy_hd95(pred, ref, voxelspacing=spacing)


def test_hd95_is_symmetric_and_a_shift_gives_the_shift() -> None:
    ref = np.zeros((20, 20), dtype=bool)
    ref[5:12, 5:12] = True
    pred = np.roll(ref, 3, axis=1)
    assert hd95(pred, ref) == hd95(ref, pred) == 3.0
    assert hd95(pred, ref, spacing=(1.0, 0.5)) == 1.5


def test_hd95_empty_masks_give_nan() -> None:
    empty = np.zeros((5, 5), dtype=bool)
    full = np.ones((5, 5), dtype=bool)
    assert math.isnan(hd95(empty, full))
    assert math.isnan(hd95(full, empty))
    assert math.isnan(hd95(empty, empty, spacing=(1.0, 2.0)))
    with pytest.raises(RuntimeError):  # what medpy does instead
        medpy_hd95(empty, full)


def test_hd95_multi_matches_single_calls() -> None:
    pred, ref = _random_pair(np.random.default_rng(3), 3)
    spacings = [None, (1.0, 2.0, 3.0), 0.5]
    assert hd95_multi(pred, ref, spacings) == [hd95(pred, ref, s) for s in spacings]


def test_hd95_rejects_bad_input() -> None:
    a = np.ones((3, 3), dtype=bool)
    with pytest.raises(ValueError, match=r"\(3, 3\) vs \(3, 4\)"):
        hd95(a, np.ones((3, 4), dtype=bool))
    with pytest.raises(ValueError, match=r"one value per array axis \(2\), got \(1.0, 1.0, 1.0\)"):
        hd95(a, a, spacing=(1.0, 1.0, 1.0))
    with pytest.raises(ValueError, match="positive"):
        hd95(a, a, spacing=(1.0, 0.0))


def test_dice_matches_medpy_and_nnunet_empty_rule() -> None:
    rng = np.random.default_rng(5)
    for _ in range(50):
        pred, ref = _random_pair(rng, 3)
        assert dice(pred, ref) == pytest.approx(medpy_dc(pred, ref), abs=1e-12)
    empty = np.zeros((4, 4), dtype=bool)
    one = empty.copy()
    one[0, 0] = True
    assert math.isnan(dice(empty, empty))
    assert dice(one, empty) == 0.0
    assert dice(empty, one) == 0.0
    ignore = one.copy()
    assert math.isnan(dice(one, one, ignore=ignore))  # the only voxel is ignored


def _metrics(pred: np.ndarray, ref: np.ndarray) -> ClassMetrics:
    return class_metrics(pred, ref, spacing=(2.0, 1.0))


def test_conventions_edge_cases_exact_numbers() -> None:
    empty = np.zeros((10, 10), dtype=bool)
    ref = empty.copy()
    ref[2:5, 2:5] = True
    pred = np.roll(ref, 2, axis=0)  # shifted by 2 voxels along the axis with spacing 2 mm

    both = _metrics(pred, ref)
    assert both.dice == pytest.approx(2 * 3 / 18)
    assert (both.hd95, both.hd95_voxel) == (4.0, 2.0)
    assert scores_for(both, PHYSICAL) == (pytest.approx(1 / 3), 4.0)
    assert scores_for(both, TRANSUNET) == (pytest.approx(1 / 3), 2.0)

    missed = _metrics(empty, ref)  # prediction empty, reference not
    assert missed.pred_empty and not missed.ref_empty
    dice_value, hd = scores_for(missed, PHYSICAL)
    assert dice_value == 0.0 and math.isnan(hd)
    assert scores_for(missed, TRANSUNET) == (0.0, 0.0)

    false_positive = _metrics(pred, empty)  # prediction non-empty, reference empty
    dice_value, hd = scores_for(false_positive, PHYSICAL)
    assert dice_value == 0.0 and math.isnan(hd)
    assert scores_for(false_positive, TRANSUNET) == (1.0, 0.0)

    absent = _metrics(empty, empty)  # class absent from both
    dice_value, hd = scores_for(absent, PHYSICAL)
    assert math.isnan(dice_value) and math.isnan(hd)
    assert scores_for(absent, TRANSUNET) == (0.0, 0.0)


def test_convention_scores_rejects_unknown_convention() -> None:
    with pytest.raises(ValueError, match="'mm'"):
        convention_scores(1.0, 0.0, 0.0, False, False, "mm")


def test_summarize_and_mean_over_classes() -> None:
    stat = summarize([1.0, math.nan, 3.0])
    assert (stat.mean, stat.n) == (2.0, 2)
    assert stat.std == pytest.approx(math.sqrt(2.0))
    assert math.isnan(summarize([math.nan]).mean)
    assert math.isnan(summarize([4.0]).std)
    combined = mean_over_classes([summarize([1.0, 0.0]), summarize([0.5, 0.5])], [0.75, 0.25])
    assert combined.mean == pytest.approx(0.5)
    assert combined.std == pytest.approx(math.sqrt(0.125))
    assert combined.n == 2


def _write(path, array: np.ndarray, spacing=(1.0, 1.0, 3.0), origin=(0.0, 0.0, 0.0)) -> str:
    image = sitk.GetImageFromArray(array.astype(np.uint8))
    image.SetSpacing(spacing)
    image.SetOrigin(origin)
    sitk.WriteImage(image, str(path))
    return str(path)


def test_evaluate_case_uses_spacing_in_array_order(tmp_path) -> None:
    ref = np.zeros((8, 10, 12), dtype=np.uint8)
    ref[2:5, 3:7, 3:7] = 1
    ref[5:7, 3:7, 3:7] = 2
    pred = ref.copy()
    pred[pred == 1] = 0
    pred[3:6, 3:7, 3:7] = 1  # label 1 shifted by one slice along z (3 mm)
    targets = [Target("a", 1), Target("b", 2), Target("ab", (1, 2), is_region=True)]
    result = evaluate_case("c1", _write(tmp_path / "p.nii.gz", pred), _write(tmp_path / "r.nii.gz", ref), targets)
    assert result[0].hd95 == medpy_hd95(pred == 1, ref == 1, voxelspacing=(3.0, 1.0, 1.0)) == 3.0
    assert result[0].hd95_voxel == 1.0
    assert result[0].dice == pytest.approx(2 * 32 / 96)
    assert math.isnan(result[2].hd95) and result[2].dice == pytest.approx(2 * 64 / (64 + 80))


def test_evaluate_case_geometry_mismatch_names_the_case(tmp_path) -> None:
    array = np.ones((4, 5, 6), dtype=np.uint8)
    ref = _write(tmp_path / "r.nii.gz", array)
    with pytest.raises(ValueError, match=r"case liver_7: prediction spacing \(1.0, 1.0, 2.0\)"):
        evaluate_case("liver_7", _write(tmp_path / "p.nii.gz", array, spacing=(1.0, 1.0, 2.0)), ref, [Target("a", 1)])
    with pytest.raises(ValueError, match="case liver_8: prediction origin"):
        evaluate_case("liver_8", _write(tmp_path / "q.nii.gz", array, origin=(0, 0, 1)), ref, [Target("a", 1)])
    with pytest.raises(ValueError, match=r"case liver_9: prediction shape \(4, 5, 7\)"):
        evaluate_case("liver_9", _write(tmp_path / "s.nii.gz", np.ones((4, 5, 7))), ref, [Target("a", 1)])
