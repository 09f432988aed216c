"""Tests for nnUNetv2_resunet_report: -pred/-gt folders and a fake nnU-Net results tree, checked number by number."""

import csv
import json
import math
import os
import shutil
import subprocess
import sys

import numpy as np
import pytest
import SimpleITK as sitk
from matplotlib.image import imread

from nnunetv2_resunet.evaluation.published import detect_published_dataset, published_for
from nnunetv2_resunet.evaluation.report.cli import main

SPACING_XYZ = (1.0, 1.0, 3.0)  # SimpleITK order; the array's z axis has 3 mm voxels
SHAPE = (8, 12, 12)
PLOTS = [
    f"{m}_{kind}_{c}.png" for m in ("dice", "hd95") for kind in ("per_class", "box") for c in ("physical", "transunet")
]


def _write(path, array: np.ndarray, spacing=SPACING_XYZ) -> None:
    image = sitk.GetImageFromArray(array.astype(np.uint8))
    image.SetSpacing(spacing)
    sitk.WriteImage(image, str(path))


def _dataset_json(name: str) -> dict:
    return {
        "name": name,
        "labels": {"background": 0, "liver": 1, "spleen": 2},
        "file_ending": ".nii.gz",
        "channel_names": {"0": "CT"},
        "numTraining": 3,
    }


def _cube(value: int, z: int, y: int = 2) -> np.ndarray:
    array = np.zeros(SHAPE, dtype=np.uint8)
    array[z : z + 2, y : y + 3, 2:5] = value
    return array


def _reference_and_prediction() -> dict[str, tuple[np.ndarray, np.ndarray]]:
    """Three cases with hand-checkable numbers.

    case_a: both labels identical -> Dice 1, HD95 0.
    case_b: liver is one voxel, shifted by 2 slices (6 mm) -> Dice 0, HD95 6 mm / 2 voxels; spleen missed entirely.
    case_c: liver identical; spleen predicted although absent from the reference.
    """
    ref_a = _cube(1, 0) + _cube(2, 4, y=7)
    ref_b = np.zeros(SHAPE, dtype=np.uint8)
    ref_b[2, 5, 5] = 1
    ref_b[5:7, 8:10, 8:10] = 2
    pred_b = np.zeros(SHAPE, dtype=np.uint8)
    pred_b[4, 5, 5] = 1
    ref_c = _cube(1, 1)
    pred_c = ref_c + _cube(2, 5, y=7)
    return {"case_a": (ref_a, ref_a.copy()), "case_b": (ref_b, pred_b), "case_c": (ref_c, pred_c)}


@pytest.fixture
def folders(tmp_path):
    gt, pred = tmp_path / "labelsTs", tmp_path / "predictions"
    gt.mkdir()
    pred.mkdir()
    for case, (ref, prediction) in _reference_and_prediction().items():
        _write(gt / f"{case}.nii.gz", ref)
        _write(pred / f"{case}.nii.gz", prediction)
    (pred / "dataset.json").write_text(json.dumps(_dataset_json("Dataset123_Synapse")))
    return pred, gt, tmp_path / "out"


def _read_csv(path) -> list[dict]:
    with open(path, newline="") as handle:
        return list(csv.DictReader(handle))


def _row(rows: list[dict], case: str, name: str, **match) -> dict:
    found = [r for r in rows if r["case"] == case and r["class"] == name and all(r[k] == v for k, v in match.items())]
    assert len(found) == 1, (case, name, match, found)
    return found[0]


def _assert_png(path) -> None:
    assert os.path.getsize(path) > 1000
    image = imread(path)
    assert image.ndim == 3 and image.shape[0] > 100 and image.shape[1] > 100
    assert image.std() > 0  # not a blank canvas


def test_pred_gt_mode_hand_checked_numbers(folders) -> None:
    pred, gt, out = folders
    main(["-pred", str(pred), "-gt", str(gt), "-o", str(out), "-np", "1"])

    rows = _read_csv(out / "per_case.csv")
    assert len(rows) == 6
    a_liver = _row(rows, "case_a", "liver")
    assert (float(a_liver["dice"]), float(a_liver["hd95"]), float(a_liver["hd95_voxel"])) == (1.0, 0.0, 0.0)
    b_liver = _row(rows, "case_b", "liver")
    assert (float(b_liver["dice"]), float(b_liver["hd95"]), float(b_liver["hd95_voxel"])) == (0.0, 6.0, 2.0)
    assert b_liver["label"] == "1" and b_liver["trainer"] == "predictions" and b_liver["kind"] == "label"
    b_spleen = _row(rows, "case_b", "spleen")
    assert (b_spleen["pred_empty"], b_spleen["ref_empty"], b_spleen["n_pred"], b_spleen["n_ref"]) == (
        "1",
        "0",
        "0",
        "8",
    )
    assert float(b_spleen["dice"]) == 0.0 and math.isnan(float(b_spleen["hd95"]))
    c_spleen = _row(rows, "case_c", "spleen")
    assert (c_spleen["pred_empty"], c_spleen["ref_empty"]) == ("0", "1")

    summary = json.loads((out / "summary.json").read_text())
    (run,) = summary["runs"]
    physical, transunet = run["conventions"]["physical"], run["conventions"]["transunet"]
    assert physical["classes"]["liver"]["dice"]["mean"] == pytest.approx(2 / 3)
    assert physical["classes"]["liver"]["hd95"]["mean"] == pytest.approx(2.0)  # mean of 0, 6, 0 mm
    assert physical["classes"]["spleen"]["dice"]["mean"] == pytest.approx(1 / 3)
    assert physical["classes"]["spleen"]["hd95"] == {"mean": 0.0, "std": None, "n": 1}  # only case_a defined
    assert physical["classes"]["spleen"]["hd95_undefined"] == 2
    assert physical["mean"]["dice"]["mean"] == pytest.approx(0.5)
    assert transunet["classes"]["liver"]["hd95"]["mean"] == pytest.approx(2 / 3)  # 0, 2, 0 voxels
    assert transunet["classes"]["spleen"]["dice"]["mean"] == pytest.approx(2 / 3)  # 1, 0 (missed), 1 (pred only)
    assert transunet["classes"]["spleen"]["hd95"]["mean"] == 0.0
    assert transunet["mean"]["dice"]["mean"] == pytest.approx(2 / 3)
    assert transunet["mean"]["hd95"]["mean"] == pytest.approx(1 / 3)
    assert summary["published"]["dataset"].startswith("Synapse")

    report = (out / "report.md").read_text()
    assert "## Convention `physical` (HD95 in mm)" in report
    assert "## Convention `transunet` (HD95 in voxels)" in report
    assert "Published figures (not produced by this run)" in report
    assert "| TransUNet | 77.48 | 31.69 | Chen et al., TransUNet, arXiv:2102.04306 (2021), Synapse and ACDC tables |" \
        in report
    assert "| ResUnet | 84.42 | 13.03 | Master's thesis (ResUnet) |" in report
    assert "| predictions | 3 | 50.00 ± 50.00 |" in report  # physical mean Dice; per-case spread of 1, 0, 0.5
    for plot in PLOTS:
        _assert_png(out / plot)


def test_both_conventions_can_be_recomputed_from_the_csv(folders) -> None:
    from nnunetv2_resunet.evaluation.conventions import convention_scores

    pred, gt, out = folders
    main(["-pred", str(pred), "-gt", str(gt), "-o", str(out), "-np", "1", "--no_plots"])
    rows = _read_csv(out / "per_case.csv")
    summary = json.loads((out / "summary.json").read_text())
    for convention in ("physical", "transunet"):
        for name in ("liver", "spleen"):
            scores = [
                convention_scores(
                    float(r["dice"]),
                    float(r["hd95"]),
                    float(r["hd95_voxel"]),
                    r["pred_empty"] == "1",
                    r["ref_empty"] == "1",
                    convention,
                )
                for r in rows
                if r["class"] == name
            ]
            expected = np.nanmean([s[0] for s in scores])
            assert summary["runs"][0]["conventions"][convention]["classes"][name]["dice"]["mean"] == expected


def test_missing_prediction_is_an_error_naming_the_case(folders, capsys) -> None:
    pred, gt, out = folders
    os.remove(pred / "case_b.nii.gz")
    assert main(["-pred", str(pred), "-gt", str(gt), "-o", str(out), "-np", "1"]) == 1
    error = capsys.readouterr().err
    assert "case case_b: no prediction case_b.nii.gz" in error and "--allow_missing" in error
    assert not (out / "report.md").exists()


def test_allow_missing_lists_the_case(folders) -> None:
    pred, gt, out = folders
    os.remove(pred / "case_b.nii.gz")
    main(["-pred", str(pred), "-gt", str(gt), "-o", str(out), "-np", "1", "--allow_missing", "--no_plots"])
    summary = json.loads((out / "summary.json").read_text())
    assert [m["case"] for m in summary["missing"]] == ["case_b"]
    assert summary["runs"][0]["n_cases"] == 2
    assert "case case_b: no prediction" in (out / "report.md").read_text()
    assert {r["case"] for r in _read_csv(out / "per_case.csv")} == {"case_a", "case_c"}


def test_geometry_mismatch_is_an_error_naming_the_case(folders, capsys) -> None:
    pred, gt, out = folders
    ref, _ = _reference_and_prediction()["case_c"]
    _write(pred / "case_c.nii.gz", ref, spacing=(1.0, 1.0, 2.5))
    assert main(["-pred", str(pred), "-gt", str(gt), "-o", str(out), "-np", "2"]) == 1
    error = capsys.readouterr().err
    assert "case case_c: prediction spacing (1.0, 1.0, 2.5) != reference spacing (1.0, 1.0, 3.0)" in error


def test_published_dataset_detection_and_table() -> None:
    assert detect_published_dataset("Dataset002_Synapse") == "synapse"
    assert detect_published_dataset("Dataset017_BTCV") == "synapse"
    assert detect_published_dataset("Dataset027_ACDC") == "acdc"
    assert detect_published_dataset("Dataset640_AVT") == "avt"
    assert detect_published_dataset("Dataset004_Hippocampus") is None
    assert detect_published_dataset("Dataset100_Navtest") is None
    assert [(p.method, p.dice, p.hd95) for p in published_for("avt")] == [
        ("ResUnet", 87.11, 4.44),
        ("DAE-Former", 85.02, None),
    ]
    with pytest.raises(ValueError, match="'kits'"):
        published_for("kits")


# ---------------------------------------------------------------------------------------------------------------
# A fake nnU-Net results tree with two trainers, run through the console command
# ---------------------------------------------------------------------------------------------------------------

DATASET = "Dataset501_ACDC"
SPLITS = [{"train": ["c2", "c3"], "val": ["c0", "c1"]}, {"train": ["c0", "c1"], "val": ["c2", "c3"]}]


def _fake_tree(root) -> dict[str, str]:
    raw, preprocessed, results = root / "raw", root / "preprocessed", root / "results"
    gt = preprocessed / DATASET / "gt_segmentations"
    gt.mkdir(parents=True)
    (preprocessed / DATASET / "splits_final.json").write_text(json.dumps(SPLITS))
    dataset_json = json.dumps(_dataset_json(DATASET))
    (preprocessed / DATASET / "dataset.json").write_text(dataset_json)
    references = {f"c{i}": _cube(1, i % 3) + _cube(2, 5, y=7) for i in range(4)}
    for case, ref in references.items():
        _write(gt / f"{case}.nii.gz", ref)
    for trainer in ("ResUnetTrainer", "nnUNetTrainer"):
        trainer_dir = results / DATASET / f"{trainer}__nnUNetPlans__2d"
        trainer_dir.mkdir(parents=True)
        (trainer_dir / "dataset.json").write_text(dataset_json)
        for fold, split in enumerate(SPLITS):
            validation = trainer_dir / f"fold_{fold}" / "validation"
            validation.mkdir(parents=True)
            for case in split["val"]:
                prediction = references[case].copy()
                if trainer == "nnUNetTrainer" and case == "c1":
                    prediction[prediction == 1] = 0
                    prediction[(references[case] == 1)[[-1, 0, 1, 2, 3, 4, 5, 6]]] = 1  # liver one slice lower
                _write(validation / f"{case}.nii.gz", prediction)
    test_gt = raw / DATASET / "labelsTs"
    test_gt.mkdir(parents=True)
    _write(test_gt / "t0.nii.gz", references["c0"])
    test_pred = root / "test_pred"
    test_pred.mkdir()
    _write(test_pred / "t0.nii.gz", references["c0"])
    env = dict(os.environ)
    env.update(nnUNet_raw=str(raw), nnUNet_preprocessed=str(preprocessed), nnUNet_results=str(results))
    return env


def _command() -> list[str]:
    script = shutil.which("nnUNetv2_resunet_report", path=os.path.dirname(sys.executable))
    assert script is not None, "install the package: nnUNetv2_resunet_report is not next to this python"
    return [script]


def test_console_command_on_fake_nnunet_results(tmp_path) -> None:
    env = _fake_tree(tmp_path)
    out = tmp_path / "report"
    command = _command() + ["-d", "501", "-c", "2d", "-tr", "ResUnetTrainer", "nnUNetTrainer", "-f", "0", "1"]
    command += ["-test_pred", f"ResUnetTrainer={tmp_path / 'test_pred'}", "-np", "2", "-o", str(out)]
    completed = subprocess.run(command, env=env, capture_output=True, text=True, cwd=tmp_path, timeout=300)
    assert completed.returncode == 0, completed.stderr

    rows = _read_csv(out / "per_case.csv")
    assert len(rows) == 2 * 4 * 2 + 2  # trainers x cases x classes + test case x classes
    worse = _row(rows, "c1", "liver", trainer="nnUNetTrainer")
    assert worse["fold"] == "0" and worse["configuration"] == "2d" and worse["plans"] == "nnUNetPlans"
    assert float(worse["dice"]) == pytest.approx(0.5)  # 2 slices, 1 shared
    assert (float(worse["hd95"]), float(worse["hd95_voxel"])) == (3.0, 1.0)
    assert float(_row(rows, "c1", "liver", trainer="ResUnetTrainer")["dice"]) == 1.0
    assert _row(rows, "t0", "spleen", trainer="ResUnetTrainer")["split"] == "test"

    summary = json.loads((out / "summary.json").read_text())
    by_label = {r["label"]: r for r in summary["runs"]}
    assert set(by_label) == {"ResUnetTrainer nnUNetPlans 2d (cv)", "nnUNetTrainer nnUNetPlans 2d (cv)",
                             "ResUnetTrainer nnUNetPlans 2d (test)"}
    nnunet = by_label["nnUNetTrainer nnUNetPlans 2d (cv)"]
    assert nnunet["folds"] == ["0", "1"] and nnunet["n_cases"] == 4
    liver = nnunet["conventions"]["physical"]["classes"]["liver"]
    assert liver["dice"]["mean"] == pytest.approx(3.5 / 4)
    assert liver["hd95"]["mean"] == pytest.approx(0.75)
    assert nnunet["conventions"]["transunet"]["classes"]["liver"]["hd95"]["mean"] == pytest.approx(0.25)
    assert nnunet["per_fold_mean"]["0"]["physical"]["dice"] == pytest.approx((0.75 + 1.0) / 2)
    assert by_label["ResUnetTrainer nnUNetPlans 2d (cv)"]["conventions"]["physical"]["mean"]["dice"]["mean"] == 1.0
    assert summary["published"]["dataset"] == "ACDC"

    report = (out / "report.md").read_text()
    assert "| ResUnetTrainer nnUNetPlans 2d (cv) | 4 | **100.00 ± 0.00** |" in report
    assert "| nnUNetTrainer nnUNetPlans 2d (cv) | 4 | 93.75 ± 12.50 |" in report
    # best is marked within a split only
    assert "| ResUnetTrainer nnUNetPlans 2d (test) | 1 | 100.00 | 0.00 |" in report
    bold_cells = sum(line.count("**") // 2 for line in report.splitlines() if line.startswith("| "))
    assert bold_cells == 2 * (6 + 2)  # per convention: ResUnet's 6 cells, nnU-Net's 2 tied spleen cells
    assert ("| PVT-EMCAD-B2 | 92.12 | – | Rahman et al., EMCAD, CVPR 2024 (arXiv:2405.06880), Synapse and ACDC "
            "tables |") in report
    for plot in PLOTS:
        _assert_png(out / plot)


def test_identifiers_name_one_model_each(tmp_path) -> None:
    """nnU-Net's 3d_fullres default beside a 2d-only trainer: -c 2d 3d_fullres would ask for ResUnet in 3d too."""
    env = _fake_tree(tmp_path)
    results = tmp_path / "results" / DATASET
    shutil.copytree(results / "nnUNetTrainer__nnUNetPlans__2d", results / "nnUNetTrainer__nnUNetPlans__3d_fullres")
    out = tmp_path / "report"
    command = _command() + ["-d", DATASET, "-tr", "ResUnetTrainer__nnUNetPlans__2d",
                            "nnUNetTrainer__nnUNetPlans__3d_fullres", "-f", "0", "1", "-o", str(out), "--no_plots"]
    completed = subprocess.run(command, env=env, capture_output=True, text=True, cwd=tmp_path, timeout=300)
    assert completed.returncode == 0, completed.stderr
    summary = json.loads((out / "summary.json").read_text())
    assert {r["label"] for r in summary["runs"]} == {"ResUnetTrainer nnUNetPlans 2d (cv)",
                                                     "nnUNetTrainer nnUNetPlans 3d_fullres (cv)"}
    product = _command() + ["-d", DATASET, "-tr", "ResUnetTrainer", "-c", "2d", "3d_fullres", "-o", str(out)]
    completed = subprocess.run(product, env=env, capture_output=True, text=True, cwd=tmp_path, timeout=300)
    assert completed.returncode == 1
    assert "no results folder for ResUnetTrainer nnUNetPlans 3d_fullres" in completed.stderr


def test_console_command_missing_validation_case_names_it(tmp_path) -> None:
    env = _fake_tree(tmp_path)
    os.remove(tmp_path / "results" / DATASET / "nnUNetTrainer__nnUNetPlans__2d" / "fold_1" / "validation" / "c3.nii.gz")
    command = _command() + ["-d", DATASET, "-c", "2d", "-tr", "nnUNetTrainer", "-f", "0", "1", "-o", str(tmp_path)]
    completed = subprocess.run(command, env=env, capture_output=True, text=True, cwd=tmp_path, timeout=300)
    assert completed.returncode == 1
    assert "nnUNetTrainer nnUNetPlans 2d (cv) fold 1 case c3: no prediction c3.nii.gz" in completed.stderr


def test_regions_and_ignore_label_from_dataset_json(tmp_path) -> None:
    from nnunetv2_resunet.evaluation.report.cases import targets_from_dataset_json

    brats_like = {
        "labels": {"background": 0, "whole tumor": [1, 2, 3], "tumor core": [2, 3], "enhancing tumor": 3, "ignore": 4},
        "regions_class_order": [1, 2, 3],
        "file_ending": ".nii.gz",
    }
    targets, ignore = targets_from_dataset_json(brats_like)
    assert ignore == 4
    assert [(t.name, t.value, t.is_region) for t in targets] == [
        ("label 1", 1, False),
        ("label 2", 2, False),
        ("enhancing tumor", 3, False),
        ("whole tumor", (1, 2, 3), True),
        ("tumor core", (2, 3), True),
    ]

    gt, pred, out = tmp_path / "gt", tmp_path / "pred", tmp_path / "out"
    gt.mkdir()
    pred.mkdir()
    ref = np.zeros(SHAPE, dtype=np.uint8)
    ref[2:4, 2:6, 2:6] = 1
    ref[4:6, 2:6, 2:6] = 2
    ref[0, 0, :] = 4  # ignored voxels: the prediction's voxels there must not count
    prediction = ref.copy()
    prediction[ref == 2] = 1  # core predicted as label 1: whole tumor perfect, tumor core missed
    prediction[0, 0, :] = 3
    _write(gt / "x.nii.gz", ref)
    _write(pred / "x.nii.gz", prediction)
    (pred / "dataset.json").write_text(json.dumps(brats_like))
    main(["-pred", str(pred), "-gt", str(gt), "-o", str(out), "-np", "1", "--no_plots"])
    rows = _read_csv(out / "per_case.csv")
    whole = _row(rows, "x", "whole tumor")
    assert (whole["kind"], whole["label"], float(whole["dice"])) == ("region", "1,2,3", 1.0)
    assert math.isnan(float(whole["hd95"]))  # HD95 for labels only
    assert float(_row(rows, "x", "tumor core")["dice"]) == 0.0
    enhancing = _row(rows, "x", "enhancing tumor")
    assert (enhancing["n_pred"], enhancing["n_ref"], enhancing["pred_empty"]) == ("0", "0", "1")  # ignored voxels
    report = (out / "report.md").read_text()
    assert "## Dice for regions (convention `physical`)" in report
    assert "| pred | 1 | 100.00 | 0.00 |" in report


def test_fold_all_and_reports_beside_what_they_evaluate(tmp_path, monkeypatch) -> None:
    """nnU-Net's fold ``all`` (trained and validated on every case, said so in the report), and without ``-o`` the
    report goes into the dataset's results folder (``-d``) or the prediction folder (``--pred``), never into the
    current folder."""
    env = _fake_tree(tmp_path)
    for variable in ("nnUNet_raw", "nnUNet_preprocessed", "nnUNet_results"):
        monkeypatch.setenv(variable, env[variable])
    trainer_dir = tmp_path / "results" / DATASET / "ResUnetTrainer__nnUNetPlans__2d"
    fold_all = trainer_dir / "fold_all" / "validation"
    fold_all.mkdir(parents=True)
    for prediction in trainer_dir.glob("fold_[01]/validation/*.nii.gz"):
        shutil.copy(prediction, fold_all)
    (tmp_path / "elsewhere").mkdir()
    monkeypatch.chdir(tmp_path / "elsewhere")
    main(["-d", DATASET, "-c", "2d", "-tr", "ResUnetTrainer", "-f", "all", "-np", "1", "--no-plots"])
    out = tmp_path / "results" / DATASET / "resunet_report"
    (run,) = json.loads((out / "summary.json").read_text())["runs"]
    assert (run["folds"], run["n_cases"]) == (["all"], 4)
    assert "Fold `all`: nnU-Net trained it on every case and validated it on the same cases" in \
        (out / "report.md").read_text()
    test_pred = tmp_path / "test_pred"
    main(["--pred", str(test_pred), "--gt", str(tmp_path / "raw" / DATASET / "labelsTs"), "--dataset-json",
          str(trainer_dir / "dataset.json"), "-np", "1", "--no-plots"])
    assert (test_pred / "resunet_report" / "report.md").is_file()
    assert list((tmp_path / "elsewhere").iterdir()) == []
    with pytest.raises(SystemExit):
        main(["-d", DATASET, "-c", "2d", "-tr", "ResUnetTrainer", "-f", "al"])
