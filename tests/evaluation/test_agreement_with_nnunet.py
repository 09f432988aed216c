"""The report's Dice is nnU-Net's: on a realistic set of predictions (overlapping blobs, a class absent from both, an
empty prediction, a class predicted where there is none, region-based labels, an ignore label) every per-case,
per-class Dice in ``per_case.csv`` equals, exactly, what nnU-Net's own ``compute_metrics_on_folder`` computes from the
same files with the labels or regions its LabelManager evaluates (as ``compute_metrics_on_folder2`` chooses them)."""

from __future__ import annotations

import csv
import json
import math

import numpy as np
import pytest
import SimpleITK as sitk
from nnunetv2.evaluation.evaluate_predictions import compute_metrics_on_folder
from nnunetv2.imageio.simpleitk_reader_writer import SimpleITKIO
from nnunetv2.utilities.label_handling.label_handling import LabelManager

from nnunetv2_resunet.evaluation.report.cli import main

SHAPE = (6, 24, 24)
PLAIN = {"background": 0, "liver": 1, "spleen": 2, "kidney": 3}
REGIONS = {"background": 0, "whole tumor": [1, 2, 3], "tumor core": [2, 3], "enhancing tumor": 3, "ignore": 4}


def blobs(rng: np.random.Generator, labels: list[int]) -> np.ndarray:
    """A segmentation with one random ellipsoid per label (later labels drawn over earlier ones)."""
    zz, yy, xx = np.mgrid[: SHAPE[0], : SHAPE[1], : SHAPE[2]]
    segmentation = np.zeros(SHAPE, dtype=np.uint8)
    for label in labels:
        cz, cy, cx = rng.uniform(1, SHAPE[0] - 1), rng.uniform(5, SHAPE[1] - 5), rng.uniform(5, SHAPE[2] - 5)
        rz, ry, rx = rng.uniform(1, 3), rng.uniform(2, 7), rng.uniform(2, 7)
        segmentation[((zz - cz) / rz) ** 2 + ((yy - cy) / ry) ** 2 + ((xx - cx) / rx) ** 2 <= 1] = label
    return segmentation


def perturbed(rng: np.random.Generator, reference: np.ndarray, flip: float) -> np.ndarray:
    """The reference with a fraction ``flip`` of its voxels given a random label of ``0..max``."""
    prediction = reference.copy()
    changed = rng.random(SHAPE) < flip
    prediction[changed] = rng.integers(0, max(int(reference.max()), 1) + 1, size=int(changed.sum()))
    return prediction


def plain_cases(rng: np.random.Generator) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    cases = {}
    for i in range(3):  # overlapping, imperfect predictions of all three organs
        reference = blobs(rng, [1, 2, 3])
        cases[f"typical_{i}"] = (reference, perturbed(rng, reference, 0.05))
    reference = blobs(rng, [1, 2])  # kidney absent from reference and prediction: NaN for nnU-Net
    cases["absent_class"] = (reference, perturbed(rng, reference, 0.02) % 3)
    cases["empty_prediction"] = (blobs(rng, [1, 2, 3]), np.zeros(SHAPE, dtype=np.uint8))
    reference = blobs(rng, [1])  # spleen and kidney predicted where there are none: Dice 0
    cases["false_positives"] = (reference, blobs(rng, [1, 2, 3]))
    return cases


def region_cases(rng: np.random.Generator) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    cases = {}
    for i in range(3):
        reference = blobs(rng, [1, 2, 3])
        reference[rng.random(SHAPE) < 0.1] = 4  # unlabelled voxels: nnU-Net leaves them out of every count
        prediction = perturbed(rng, np.where(reference == 4, rng.integers(0, 4, SHAPE), reference), 0.05) % 4
        cases[f"sparse_{i}"] = (reference, prediction.astype(np.uint8))
    reference = blobs(rng, [1, 2])
    reference[0] = 4
    cases["no_enhancing"] = (reference, np.where(reference == 4, 3, reference).astype(np.uint8))
    cases["empty_prediction"] = (blobs(rng, [1, 2, 3]), np.zeros(SHAPE, dtype=np.uint8))
    return cases


def write(folder, cases: dict, which: int) -> None:
    folder.mkdir()
    for case, arrays in cases.items():
        image = sitk.GetImageFromArray(arrays[which])
        image.SetSpacing((0.8, 0.8, 2.5))
        sitk.WriteImage(image, str(folder / f"{case}.nii.gz"))


@pytest.mark.parametrize("labels, make_cases", [(PLAIN, plain_cases), (REGIONS, region_cases)],
                         ids=["labels", "regions"])
def test_per_case_dice_equals_nnunets_compute_metrics_on_folder(tmp_path, labels, make_cases):
    dataset_json = {"labels": labels, "file_ending": ".nii.gz", "channel_names": {"0": "CT"}, "numTraining": 1}
    if any(isinstance(value, list) for value in labels.values()):
        dataset_json["regions_class_order"] = [1, 2, 3]
    cases = make_cases(np.random.default_rng(2026))
    gt, pred = tmp_path / "gt", tmp_path / "pred"
    write(gt, cases, 0)
    write(pred, cases, 1)
    (pred / "dataset.json").write_text(json.dumps(dataset_json))

    main(["-pred", str(pred), "-gt", str(gt), "-o", str(tmp_path / "out"), "-np", "1", "--no_plots"])
    with open(tmp_path / "out" / "per_case.csv", newline="") as f:
        ours = {(r["case"], r["label"]): float(r["dice"]) for r in csv.DictReader(f)}

    manager = LabelManager(dataset_json["labels"], dataset_json.get("regions_class_order"))
    evaluated = manager.foreground_regions if manager.has_regions else manager.foreground_labels
    theirs = compute_metrics_on_folder(str(gt), str(pred), None, SimpleITKIO(), ".nii.gz", evaluated,
                                       manager.ignore_label, num_processes=1)
    compared = 0
    for case in theirs["metric_per_case"]:
        name = case["reference_file"].rsplit("/", 1)[1].removesuffix(".nii.gz")
        for key, metrics in case["metrics"].items():
            values = tuple(key) if isinstance(key, (tuple, list)) else (key,)
            ours_dice = ours[(name, ",".join(str(int(v)) for v in values))]
            if math.isnan(metrics["Dice"]):
                assert math.isnan(ours_dice), (name, key, ours_dice)
            else:
                assert ours_dice == metrics["Dice"], (name, key, ours_dice, metrics["Dice"])
            compared += 1
    assert compared == len(cases) * len(evaluated)
    # The set is realistic: it has NaN (nothing to find, nothing found), zeros and values in between.
    dice = list(ours.values())
    assert any(math.isnan(d) for d in dice) and 0.0 in dice and any(0.5 < d < 1.0 for d in dice)
