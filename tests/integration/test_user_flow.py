"""The user's flow through nnU-Net's real CLI: plan and preprocess, train, resume, validate, predict, compare.

Runs on CPU on the small synthetic dataset of ``nnunet_workspace.py``, with short-run subclasses of our trainers written
into an ``nnUNet_extTrainer`` folder the way a user's own trainer would be.
"""

import csv
import json
from pathlib import Path

import numpy as np
import pytest
import SimpleITK as sitk
import torch
from nnunet_workspace import SYNTHETIC_ID, SYNTHETIC_LABELS, SYNTHETIC_NAME, result_of


@pytest.fixture(scope="module")
def trained_resunet(trained_models):
    return result_of(trained_models, "ResUnetTrainer")


@pytest.fixture(scope="module")
def trained_default(trained_models):
    """nnU-Net's default, for comparisons."""
    return result_of(trained_models, "nnUNetTrainer")


def test_training_writes_checkpoint_and_validation(trained_resunet):
    checkpoint = torch.load(trained_resunet / "checkpoint_final.pth", map_location="cpu", weights_only=False)
    assert checkpoint["trainer_name"] == "ResUnetTrainer_short"
    # The network nnU-Net trained is ResUnet v1.0: its layer2 decoder stage preserves 384 channels.
    assert checkpoint["network_weights"]["decoder.stages.1.convs.1.0.weight"].shape[0] == 384
    summary = json.loads((trained_resunet / "validation" / "summary.json").read_text())
    assert set(summary["mean"]) == {"1", "2"}
    for metrics in summary["mean"].values():
        assert 0.0 <= metrics["Dice"] <= 1.0


def test_predict_with_trained_resunet(nnunet_workspace, trained_resunet, tmp_path):
    images = nnunet_workspace.raw / SYNTHETIC_NAME / "imagesTs"
    nnunet_workspace.run("nnUNetv2_predict", "-i", images, "-o", tmp_path, "-d", SYNTHETIC_ID, "-c", "2d",
                         "-tr", "ResUnetTrainer_short", "-f", "0", "-device", "cpu", "--disable_progress_bar",
                         "-npp", "1", "-nps", "1")  # nnU-Net's worker processes (one each: 2 images), as users run it
    for image_file in sorted(images.glob("*_0000.nii.gz")):
        prediction_file = tmp_path / image_file.name.replace("_0000.nii.gz", ".nii.gz")
        assert prediction_file.is_file(), f"no prediction for {image_file.name}"
        image, prediction = sitk.ReadImage(str(image_file)), sitk.ReadImage(str(prediction_file))
        assert prediction.GetSize() == image.GetSize()
        assert np.allclose(prediction.GetSpacing(), image.GetSpacing())
        labels = np.unique(sitk.GetArrayFromImage(prediction))
        assert set(labels.tolist()) <= set(SYNTHETIC_LABELS.values())


def test_validation_only(nnunet_workspace, trained_resunet):
    """--val rebuilds the network, loads checkpoint_final.pth into it (a strict load) and validates again. (--c, which
    goes through the same load, is run on a training killed mid-way in tests/studies/test_study_local.py: resuming a
    finished run here would only repeat this validation.)"""
    summary_file = trained_resunet / "validation" / "summary.json"
    summary_file.unlink()
    nnunet_workspace.run("nnUNetv2_train", SYNTHETIC_ID, "2d", "0", "-tr", "ResUnetTrainer_short",
                         "-device", "cpu", "--val")
    assert summary_file.is_file()


def test_find_best_configuration_next_to_nnunet_default(nnunet_workspace, trained_resunet, trained_default):
    nnunet_workspace.run("nnUNetv2_find_best_configuration", SYNTHETIC_ID, "-c", "2d", "-f", "0",
                         "-tr", "ResUnetTrainer_short", "nnUNetTrainer_short", "--disable_ensembling")
    info = json.loads((nnunet_workspace.results / SYNTHETIC_NAME / "inference_information.json").read_text())
    # Keys are nnU-Net's TRAINER__PLANS__CONFIGURATION identifiers, values the cross-validation foreground Dice.
    assert {key.split("__")[0] for key in info["all_results"]} == {"ResUnetTrainer_short", "nnUNetTrainer_short"}
    assert all(0.0 <= dice <= 1.0 for dice in info["all_results"].values())


def test_report_collates_ours_beside_nnunet_default(nnunet_workspace, trained_resunet, trained_default, tmp_path):
    """Step 4 of the user flow on real nnU-Net outputs: the report reads both trainers' cross-validation folders."""
    nnunet_workspace.run("nnUNetv2_resunet_report", "-d", SYNTHETIC_ID, "-c", "2d", "-f", "0", "-np", "1",
                         "-tr", "ResUnetTrainer_short", "nnUNetTrainer_short", "-o", tmp_path, "--no_plots")
    with open(tmp_path / "per_case.csv", newline="") as f:
        rows = list(csv.DictReader(f))
    validation_cases = {p.name.removesuffix(".nii.gz") for p in (trained_resunet / "validation").glob("*.nii.gz")}
    assert validation_cases
    for trainer in ("ResUnetTrainer_short", "nnUNetTrainer_short"):
        mine = [r for r in rows if r["trainer"] == trainer]
        assert {r["case"] for r in mine} == validation_cases
        assert {r["class"] for r in mine} == {"disk", "square"}
    # The report's Dice for a case agrees with nnU-Net's own validation summary of the same predictions.
    summary = json.loads((trained_resunet / "validation" / "summary.json").read_text())
    for case in summary["metric_per_case"]:
        name = Path(case["prediction_file"]).name.removesuffix(".nii.gz")
        for label, metrics in case["metrics"].items():
            row = next(r for r in rows if r["trainer"] == "ResUnetTrainer_short" and r["case"] == name
                       and int(r["label"]) == int(label))
            assert float(row["dice"]) == pytest.approx(metrics["Dice"], nan_ok=True)
    assert "ResUnetTrainer_short" in (tmp_path / "report.md").read_text()


def test_3d_configuration_is_refused_with_a_clear_error(nnunet_workspace):
    result = nnunet_workspace.run("nnUNetv2_train", SYNTHETIC_ID, "3d_fullres", "0", "-tr", "ResUnetTrainer",
                                  "-device", "cpu", check=False)
    assert result.returncode != 0
    assert "ResUnetTrainer trains a 2D network" in result.stderr
    assert "-c 2d" in result.stderr


def test_imagenet_variant_refuses_scratch_and_trains_from_the_published_file(nnunet_workspace, published_file,
                                                                             tmp_path):
    """v0.2 is v0.1 + ImageNet weights: without them it stops and names the command that writes them; with the
    file that command writes from torchvision's resnet34 release, nnU-Net's -pretrained_weights starts it."""
    name = nnunet_workspace.add_short_trainer("ResUnetTrainer_v0_2")
    args = ("nnUNetv2_train", SYNTHETIC_ID, "2d", "1", "-tr", name, "-device", "cpu")
    missing = nnunet_workspace.run(*args, check=False)
    assert missing.returncode != 0
    assert "trains from ImageNet weights" in missing.stderr and "nnUNetv2_resunet_init_weights" in missing.stderr

    init_file = tmp_path / "v0_2_init.pth"
    nnunet_workspace.run("nnUNetv2_resunet_init_weights", "-d", SYNTHETIC_ID, "-tr", name,
                         "-i", published_file("resnet34"), "-o", init_file)
    initial = torch.load(init_file, map_location="cpu", weights_only=False)
    assert initial["init_info"]["format"] == "torchvision ResNet"
    released = torch.load(published_file("resnet34"), map_location="cpu", weights_only=True)
    torch.testing.assert_close(initial["network_weights"]["encoder.layer4.2.conv2.weight"],
                               released["layer4.2.conv2.weight"])
    nnunet_workspace.run(*args, "-pretrained_weights", str(init_file), env={**nnunet_workspace.env,
                                                                              "nnUNet_n_proc_DA": "0"})
    log = "".join(p.read_text() for p in nnunet_workspace.output_folder(name, 1).glob("training_log_*.txt"))
    assert "loaded before training by nnUNetv2_train's -pretrained_weights" in log
