"""The report's paired comparison, repeats, empty-prediction marks and training cost, on a fake nnU-Net results tree
whose numbers are known by hand: ResUnet in two seeded repeats against nnU-Net's default, 2 folds of 4 cases."""

import csv
import json
import math

import numpy as np
import pytest
import SimpleITK as sitk
from matplotlib.image import imread

from nnunetv2_resunet.evaluation.report.cli import main

DATASET = "Dataset502_Paired"
SHAPE = (8, 12, 12)
CASES = [f"c{i}" for i in range(8)]
SPLITS = [{"train": CASES[4:], "val": CASES[:4]}, {"train": CASES[:4], "val": CASES[4:]}]
LIVER_VOXELS = 18  # a 2 x 3 x 3 cube
REPEATS = ("ResUnetTrainer_seed0", "ResUnetTrainer_seed1")


def _write(path, array: np.ndarray) -> None:
    sitk.WriteImage(sitk.GetImageFromArray(array.astype(np.uint8)), str(path))


def _reference() -> np.ndarray:
    array = np.zeros(SHAPE, dtype=np.uint8)
    array[1:3, 2:5, 2:5] = 1  # liver, 18 voxels
    array[5:7, 7:10, 7:10] = 2  # spleen
    return array


def _without_liver_voxels(array: np.ndarray, k: int) -> np.ndarray:
    """The prediction with ``k`` liver voxels turned into background: Dice 2 (18 - k) / (36 - k)."""
    array = array.copy()
    liver = np.argwhere(array == 1)
    for z, y, x in liver[:k]:
        array[z, y, x] = 0
    return array


def dice_without(k: int) -> float:
    return 2 * (LIVER_VOXELS - k) / (2 * LIVER_VOXELS - k)


def _predictions(trainer: str, index: int, reference: np.ndarray) -> np.ndarray:
    if trainer == "nnUNetTrainer":  # loses 1 .. 8 liver voxels; misses the spleen entirely in case c0
        prediction = _without_liver_voxels(reference, index + 1)
        if index == 0:
            prediction[prediction == 2] = 0
        return prediction
    if trainer == "ResUnetTrainer_seed1" and index == 7:  # the second repeat loses one liver voxel in c7
        return _without_liver_voxels(reference, 1)
    return reference.copy()


def _training_files(fold_dir, epochs: dict[int, float], rerun: dict[int, float]) -> None:
    (fold_dir / "debug.json").write_text(json.dumps({"num_epochs": "2", "num_iterations_per_epoch": "3",
                                                     "device": "cpu", "batch_size": "4"}))
    for name, logged in (("training_log_2024_1_1_00_00_00.txt", epochs), ("training_log_2024_1_2_00_00_00.txt", rerun)):
        lines = []
        for epoch, seconds in logged.items():
            lines += [f"2024-01-01 00:00:00.000000: Epoch {epoch} ", f"2024-01-01 00:00:01.000000: Epoch time: "
                      f"{seconds} s "]
        (fold_dir / name).write_text("\n".join(lines) + "\n")


@pytest.fixture
def paired_tree(tmp_path, monkeypatch):
    raw, preprocessed, results = tmp_path / "raw", tmp_path / "preprocessed", tmp_path / "results"
    gt = preprocessed / DATASET / "gt_segmentations"
    gt.mkdir(parents=True)
    (preprocessed / DATASET / "splits_final.json").write_text(json.dumps(SPLITS))
    dataset_json = json.dumps({"name": DATASET, "labels": {"background": 0, "liver": 1, "spleen": 2},
                               "file_ending": ".nii.gz", "channel_names": {"0": "CT"}, "numTraining": 8})
    (preprocessed / DATASET / "dataset.json").write_text(dataset_json)
    reference = _reference()
    for case in CASES:
        _write(gt / f"{case}.nii.gz", reference)
    for trainer in (*REPEATS, "nnUNetTrainer"):
        model = results / DATASET / f"{trainer}__nnUNetPlans__2d"
        model.mkdir(parents=True)
        (model / "plans.json").write_text(json.dumps({"configurations": {"2d": {"batch_size": 4}}}))
        for fold, split in enumerate(SPLITS):
            (model / f"fold_{fold}" / "validation").mkdir(parents=True)
            for case in split["val"]:
                _write(model / f"fold_{fold}" / "validation" / f"{case}.nii.gz",
                       _predictions(trainer, CASES.index(case), reference))
    # ResUnet's first repeat, fold 0: two epochs (1.5 s, 2 s), resumed once after epoch 0, which re-logged epoch 1.
    _training_files(results / DATASET / f"{REPEATS[0]}__nnUNetPlans__2d" / "fold_0", {0: 1.5, 1: 2.0}, {1: 2.5})
    for name, folder in (("nnUNet_raw", raw), ("nnUNet_preprocessed", preprocessed), ("nnUNet_results", results)):
        monkeypatch.setenv(name, str(folder))
    return tmp_path


def _report(tmp_path, *extra: str, plots: bool = False) -> tuple[list[dict], dict, str]:
    out = tmp_path / "report"
    main(["-d", DATASET, "-c", "2d", "-tr", *REPEATS, "nnUNetTrainer", "-f", "0", "1", "-np", "1", "-o", str(out),
          "-published", "none", *extra, *([] if plots else ["--no_plots"])])
    with open(out / "paired.csv", newline="") as handle:
        rows = list(csv.DictReader(handle))
    return rows, json.loads((out / "summary.json").read_text()), (out / "report.md").read_text()


def _row(rows: list[dict], reference: str, model: str, name: str, metric: str) -> dict:
    (found,) = [r for r in rows if (r["reference"], r["model"], r["class"], r["metric"]) == (reference, model, name,
                                                                                               metric)]
    return found


def test_paired_table_csv_and_plot_by_hand(paired_tree):
    rows, summary, report = _report(paired_tree, plots=True)
    assert list(rows[0]) == ["reference", "model", "split", "class", "metric", "n", "mean_diff", "ci_low", "ci_high",
                             "p_wilcoxon", "p_holm", "wins", "ties", "losses"]
    nnunet = "nnUNetTrainer__nnUNetPlans__2d"
    # ResUnet's first repeat is perfect: it wins every case's liver by 1 - Dice(k), k = 1 .. 8 (all distinct).
    first = _row(rows, "ResUnetTrainer_seed0__nnUNetPlans__2d", nnunet, "liver", "dice")
    expected = [1 - dice_without(k) for k in range(1, 9)]
    assert (first["split"], int(first["n"])) == ("cv", 8)
    assert float(first["mean_diff"]) == pytest.approx(np.mean(expected))
    assert (first["wins"], first["ties"], first["losses"]) == ("8", "0", "0")
    assert float(first["p_wilcoxon"]) == pytest.approx(2 / 2 ** 8)  # exact: no negative rank among 8
    # Holm over the family of this split, class and metric: repeat 0, repeat 1 and pooled, all p = 2 / 2**8.
    assert float(first["p_holm"]) == pytest.approx(3 * 2 / 2 ** 8)
    assert float(first["ci_low"]) > 0
    second = _row(rows, "ResUnetTrainer_seed1__nnUNetPlans__2d", nnunet, "liver", "dice")
    assert float(second["mean_diff"]) == pytest.approx(np.mean(expected[:7] + [dice_without(1) - dice_without(8)]))
    pooled = _row(rows, "ResUnetTrainer_seed*__nnUNetPlans__2d", nnunet, "liver", "dice")
    assert float(pooled["mean_diff"]) == pytest.approx((float(first["mean_diff"]) + float(second["mean_diff"])) / 2)
    # The spleen: missed once by nnU-Net (Dice 0 there, HD95 undefined and left out); otherwise identical.
    spleen = _row(rows, "ResUnetTrainer_seed0__nnUNetPlans__2d", nnunet, "spleen", "dice")
    assert (spleen["n"], spleen["wins"], spleen["ties"], float(spleen["mean_diff"])) == ("8", "1", "7", 1 / 8)
    spleen_hd = _row(rows, "ResUnetTrainer_seed0__nnUNetPlans__2d", nnunet, "spleen", "hd95")
    assert (spleen_hd["n"], spleen_hd["ties"], spleen_hd["p_wilcoxon"], spleen_hd["p_holm"]) == ("7", "7", "", "")
    # The mean: per case, the average of the class differences.
    mean = _row(rows, "ResUnetTrainer_seed0__nnUNetPlans__2d", nnunet, "mean", "dice")
    assert float(mean["mean_diff"]) == pytest.approx(np.mean([(d + (1.0 if i == 0 else 0.0)) / 2
                                                              for i, d in enumerate(expected)]))

    assert "Reference: **ResUnetTrainer_seed* (2 repeats) nnUNetPlans 2d** (the first ResUnet row" in report
    # The table: the mean Dice difference of each comparison, bold where distinguishable.
    assert f"| {nnunet} vs ResUnetTrainer_seed0__nnUNetPlans__2d | 8 | **+" in report
    assert "| nnUNetTrainer nnUNetPlans 2d, repeats pooled | 8 | **+" in report
    # In words, for the pooled comparison: distinguishable, and beyond the run-to-run spread of ResUnet's mean Dice
    # (the second repeat loses 1 - Dice(1) in one of 8 liver cases; the mean is over 2 classes).
    pooled_words = next(line for line in report.splitlines()
                        if line.startswith("- nnUNetTrainer nnUNetPlans 2d, repeats pooled: mean Dice +"))
    spread = (1 - dice_without(1)) / 8 / 2 * 100
    assert f"): distinguishable; the Dice difference exceeds the run-to-run spread ({spread:.2f} pp)" in pooled_words
    assert "Distinguishable per class: liver Dice +" in pooled_words and "spleen" not in pooled_words
    _assert_png(paired_tree / "report" / "paired_forest_cv.png")
    assert summary["paired"]["reference"] == "ResUnetTrainer_seed*__nnUNetPlans__2d"
    assert any(r["level"] == "pooled" and r["exceeds_spread"] for r in summary["paired"]["rows"])


def test_repeats_spread_empty_predictions_and_training_cost(paired_tree):
    _, summary, report = _report(paired_tree)
    # Repeats: ResUnet's mean Dice per repeat is 100 % and ((7 + Dice(1)) / 8 + 1) / 2.
    second = ((7 + dice_without(1)) / 8 + 1) / 2 * 100
    assert f"| ResUnetTrainer_seed* (2 repeats) nnUNetPlans 2d | cv | mean Dice (%) | 100.00, {second:.2f} |" in report
    (spread,) = summary["paired"]["repeats"]
    assert spread["values"]["mean/dice"]["range_repeats"] == pytest.approx(1 - second / 100)

    # nnU-Net predicted no spleen in c0: counted, and its best (tied) transunet spleen HD95 of 0 is marked.
    nnunet = next(r for r in summary["runs"] if r["trainer"] == "nnUNetTrainer")
    assert nnunet["empty_predictions"] == {"liver": 0, "spleen": 1}
    assert "## Empty predictions where the reference has the class" in report
    assert "| nnUNetTrainer nnUNetPlans 2d (cv) | 8 | 0 | 1 |" in report
    transunet_table = report.split("## Convention `transunet`")[1].split("##")[0]
    nnunet_line = next(line for line in transunet_table.splitlines() if line.startswith("| nnUNetTrainer"))
    assert nnunet_line.rstrip(" |").endswith("**0.00 ± 0.00**†")  # spleen HD95: best, and resting on the miss
    resunet_line = next(line for line in transunet_table.splitlines() if line.startswith("| ResUnetTrainer_seed0"))
    assert "†" not in resunet_line

    # Training cost of the first repeat: 2 x 3 x 4, epoch 1 counted once (its last time, 2.5 s): 4 s.
    cost = next(r for r in summary["runs"] if r["trainer"] == REPEATS[0])["training"]
    assert cost == {"folds": ["0"], "epochs": "2", "iterations_per_epoch": "3", "batch_size": 4,
                    "samples_per_fold": 24, "epochs_timed": 2, "wall_seconds": 4.0, "device": "cpu"}
    assert "| ResUnetTrainer_seed0 nnUNetPlans 2d (cv) | 0 | 2 x 3 x 4 | 24 | 0 min 04 s (2 epochs) | cpu |" in report


def test_reference_is_chosen_by_name(paired_tree, capsys):
    rows, summary, report = _report(paired_tree, "-reference", "nnUNetTrainer__nnUNetPlans__2d")
    flipped = _row(rows, "nnUNetTrainer__nnUNetPlans__2d", "ResUnetTrainer_seed0__nnUNetPlans__2d", "liver", "dice")
    assert float(flipped["mean_diff"]) < 0 and (flipped["wins"], flipped["losses"]) == ("0", "8")
    assert "chosen with -reference nnUNetTrainer__nnUNetPlans__2d" in report
    assert main(["-d", DATASET, "-c", "2d", "-tr", *REPEATS, "nnUNetTrainer", "-f", "0", "1", "-np", "1", "-o",
                 str(paired_tree / "refused"), "-reference", "TransUNetTrainer", "--no_plots"]) == 1
    error = capsys.readouterr().err
    assert "-reference TransUNetTrainer matches no row of the report; rows: " in error
    assert "nnUNetTrainer__nnUNetPlans__2d" in error


def _assert_png(path) -> None:
    image = imread(path)
    assert image.ndim == 3 and image.shape[0] > 100 and image.std() > 0 and not math.isnan(image.std())
