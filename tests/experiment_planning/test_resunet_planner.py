"""nnUNetv2_resunet_plan on a small synthetic dataset, through the real command line, next to nnU-Net's default plan."""

import json
import os
import subprocess
from pathlib import Path

import numpy as np
import pytest
import SimpleITK as sitk
from nnunet_workspace import console_script

from nnunetv2_resunet.architectures.configs.ladder import LADDER
from nnunetv2_resunet.architectures.resunet import ResUnet
from nnunetv2_resunet.benchmarking.calibration import calibrate_reference
from nnunetv2_resunet.experiment_planning.resunet_planner import (
    PLANS_IDENTIFIER,
    RESUNET_REFERENCE_VAL_2D,
    resunet_feature_map_size,
)

DATASET_ID = 951
DATASET_NAME = f"Dataset{DATASET_ID}_ResUnetPlanTest"
N_CASES, SLICES, EDGE = 6, 20, 64


def write_dataset(raw: str) -> None:
    """6 CT-like volumes of 20 x 64 x 64 voxels (3 mm slices, 1 mm in-plane) with two foreground labels."""
    folder = os.path.join(raw, DATASET_NAME)
    os.makedirs(os.path.join(folder, "imagesTr"))
    os.makedirs(os.path.join(folder, "labelsTr"))
    rng = np.random.default_rng(0)
    yy, xx = np.mgrid[:EDGE, :EDGE]
    for case in range(N_CASES):
        label = np.zeros((SLICES, EDGE, EDGE), dtype=np.uint8)
        cy, cx = rng.integers(20, 44, size=2)
        label[:, (yy - cy) ** 2 + (xx - cx) ** 2 < 100] = 1
        label[:, (yy - cy) ** 2 + (xx - cx) ** 2 < 25] = 2
        image = (rng.normal(0, 20, label.shape) + 100 * label).astype(np.float32)
        for array, path in ((image, f"imagesTr/case_{case:03d}_0000.nii.gz"),
                            (label, f"labelsTr/case_{case:03d}.nii.gz")):
            itk = sitk.GetImageFromArray(array)
            itk.SetSpacing((1.0, 1.0, 3.0))
            sitk.WriteImage(itk, os.path.join(folder, path))
    with open(os.path.join(folder, "dataset.json"), "w") as f:
        json.dump({"channel_names": {"0": "CT"}, "labels": {"background": 0, "organ": 1, "core": 2},
                   "numTraining": N_CASES, "file_ending": ".nii.gz"}, f)


def run_command(command: str, args: list[str], env: dict) -> str:
    """Run an installed console command (ours or nnU-Net's); return its stdout."""
    completed = subprocess.run([*console_script(command), *args], env=env, capture_output=True, text=True,
                               timeout=600)
    assert completed.returncode == 0, completed.stdout[-3000:] + completed.stderr[-3000:]
    return completed.stdout


@pytest.fixture(scope="module")
def planned(tmp_path_factory):
    """The dataset planned by nnU-Net (nnUNetPlans), by us at 8 GB (preprocessed) and by us at a tiny target."""
    root = tmp_path_factory.mktemp("nnunet")
    env = dict(os.environ)
    for name in ("nnUNet_raw", "nnUNet_preprocessed", "nnUNet_results"):
        env[name] = str(root / name)
        os.makedirs(env[name])
    write_dataset(env["nnUNet_raw"])
    out_default = run_command("nnUNetv2_resunet_plan", ["-d", str(DATASET_ID), "-np", "1", "-npfp", "1"], env)
    out_small = run_command("nnUNetv2_resunet_plan", ["-d", str(DATASET_ID), "-gpu_memory_target", "0.05", "--no_pp",
                                  "-overwrite_plans_name", "nnUNetResUnetPlans_small"], env)
    run_command("nnUNetv2_plan_experiment", ["-d", str(DATASET_ID)], env)
    folder = root / "nnUNet_preprocessed" / DATASET_NAME
    return {"folder": folder, "env": env, "out_default": out_default, "out_small": out_small}


def load_2d(folder, plans_identifier: str):
    from nnunetv2.utilities.plans_handling.plans_handler import PlansManager

    return PlansManager(str(folder / f"{plans_identifier}.json")).get_configuration("2d")


@pytest.mark.integration
def test_plans_file_is_valid_and_follows_nnunet_rules(planned):
    config = load_2d(planned["folder"], PLANS_IDENTIFIER)
    assert config.batch_size >= 2
    assert len(config.patch_size) == 2
    # The patch covers the median image (64 x 64) when the memory allows it, as nnU-Net's does.
    assert list(config.patch_size) == [EDGE, EDGE]
    # At most 5% of the dataset per batch (nnU-Net rounds): 6 cases x 20 slices of 64 x 64.
    assert config.batch_size <= round(0.05 * N_CASES * SLICES)
    assert config.data_identifier == "nnUNetPlans_2d"
    with open(planned["folder"] / f"{PLANS_IDENTIFIER}.json") as f:
        assert json.load(f)["experiment_planner_used"] == "nnUNetResUnetPlanner"
    assert "Train with: nnUNetv2_train 951 2d FOLD -p nnUNetResUnetPlans -tr ResUnetTrainer" in planned["out_default"]


@pytest.mark.integration
def test_2d_data_is_preprocessed(planned):
    data_folder = planned["folder"] / "nnUNetPlans_2d"
    assert data_folder.is_dir() and len(list(data_folder.iterdir())) >= N_CASES


@pytest.mark.integration
def test_small_target_plans_less_than_nnunet_default(planned):
    ours = load_2d(planned["folder"], "nnUNetResUnetPlans_small")
    default = load_2d(planned["folder"], "nnUNetPlans")
    assert ours.batch_size >= 2
    smaller_batch = ours.batch_size < default.batch_size
    smaller_patch = np.prod(ours.patch_size) < np.prod(default.patch_size)
    assert smaller_batch or smaller_patch, (ours.patch_size, ours.batch_size, default.patch_size, default.batch_size)
    assert "nnUNetv2_preprocess -d 951 -plans_name nnUNetResUnetPlans_small -c 2d" in planned["out_small"]


@pytest.mark.integration
def test_resunet_trainer_builds_from_the_plans(planned, monkeypatch):
    """The planned patch goes through the network nnU-Net's trainer builds (via the benchmark's trainer setup)."""
    import torch

    from nnunetv2_resunet.benchmarking.trainer_steps import build_trainer
    from nnunetv2_resunet.experiment_planning.synthetic_plans import dataset_plans

    monkeypatch.setenv("nnUNet_preprocessed", planned["env"]["nnUNet_preprocessed"])
    plans, dataset_json = dataset_plans(str(DATASET_ID), PLANS_IDENTIFIER)
    trainer = build_trainer("ResUnetTrainer", plans, dataset_json, "2d", torch.device("cpu"))
    outputs = trainer.network(torch.zeros((1, 1, *trainer.configuration_manager.patch_size)))
    assert len(outputs) == len(trainer._get_deep_supervision_scales())


SYNAPSE_LIKE = "Dataset991_SynapseLike"


@pytest.fixture
def synapse_like(tmp_path, monkeypatch):
    """A Synapse-like CT dataset as nnU-Net's planner sees it: its dataset.json and fingerprint only (30 volumes of
    148 x 512 x 512 at 3 x 0.76 x 0.76 mm, 13 organs)."""
    for variable in ("nnUNet_raw", "nnUNet_preprocessed", "nnUNet_results"):
        (tmp_path / variable / SYNAPSE_LIKE).mkdir(parents=True)
        monkeypatch.setenv(variable, str(tmp_path / variable))
    labels = {"background": 0, **{f"organ_{i}": i for i in range(1, 14)}}
    (tmp_path / "nnUNet_raw" / SYNAPSE_LIKE / "dataset.json").write_text(json.dumps(
        {"channel_names": {"0": "CT"}, "labels": labels, "numTraining": 30, "file_ending": ".nii.gz", "dataset": {}}))
    (tmp_path / "nnUNet_preprocessed" / SYNAPSE_LIKE / "dataset_fingerprint.json").write_text(json.dumps(
        {"spacings": [[3.0, 0.76, 0.76]] * 30, "shapes_after_crop": [[148, 512, 512]] * 30,
         "median_relative_size_after_cropping": 1.0}))


def plan_2d(planner_class, gpu_memory_gb: float) -> tuple[list[int], int]:
    """The 2d patch and batch size a planner plans for the Synapse-like dataset, as plan_experiment asks for them."""
    planner = planner_class(SYNAPSE_LIKE, gpu_memory_gb)
    plan = planner.get_plans_for_configuration([0.76, 0.76], [512, 512], "nnUNetPlans_2d", 148 * 512 * 512 * 30, {})
    return [int(edge) for edge in plan["patch_size"]], int(plan["batch_size"])


@pytest.mark.parametrize("gpu_memory_gb, nnunet, resunet", [(8, 12, 7), (24, 36, 21)])
def test_same_target_gives_resunet_a_smaller_batch_than_nnunets_planner(synapse_like, gpu_memory_gb, nnunet,
                                                                       resunet):
    """At the same GPU memory target, nnU-Net's planner (sized for PlainConvUNet) and ours differ on a 512 x 512 CT
    plan: ResUnet's larger feature maps get the smaller batch. The figures are the ones docs/benchmark.md states."""
    from nnunetv2.experiment_planning.experiment_planners.default_experiment_planner import ExperimentPlanner

    from nnunetv2_resunet.experiment_planning.resunet_planner import nnUNetResUnetPlanner

    assert plan_2d(ExperimentPlanner, gpu_memory_gb) == ([512, 512], nnunet)
    assert plan_2d(nnUNetResUnetPlanner, gpu_memory_gb) == ([512, 512], resunet)
    documented = " ".join((Path(__file__).parents[2] / "docs" / "benchmark.md").read_text().split())
    assert "nnU-Net plans batch 12 for 8 GB; ResUnet v1.0 gets batch 7 for 8 GB and 21 for 24 GB" in documented


def test_a_target_too_small_for_the_full_patch_shrinks_resunets_patch_only(synapse_like):
    """nnU-Net keeps batch 2 as its floor; where ResUnet's 512 x 512 patch does not fit twice, its patch shrinks while
    nnU-Net's planner still plans the whole slice."""
    from nnunetv2.experiment_planning.experiment_planners.default_experiment_planner import ExperimentPlanner

    from nnunetv2_resunet.experiment_planning.resunet_planner import nnUNetResUnetPlanner

    assert plan_2d(ExperimentPlanner, 2) == ([512, 512], 3)
    patch, batch = plan_2d(nnUNetResUnetPlanner, 2)
    assert batch == 2 and patch[0] <= 512 and patch[1] < 512, patch


def test_estimate_is_the_network_feature_map_size():
    network = ResUnet(1, 3, LADDER["v1_0"], deep_supervision=True)
    assert resunet_feature_map_size(LADDER["v1_0"], (96, 128), 1, 3) == network.compute_conv_feature_map_size((96, 128))


def test_reference_matches_its_calibration():
    """The hard-coded reference is nnU-Net's scaled by the measured saved-activation bytes per element."""
    measured = calibrate_reference((128, 128))
    assert abs(measured / RESUNET_REFERENCE_VAL_2D - 1) < 0.05, measured


def test_resenc_preset_batch_follows_nnunets_planner(tmp_path, monkeypatch):
    """The constants behind synthetic ResEnc plans are nnU-Net's own planners' (read from instances), and at
    512 x 512 (Synapse's slices) the preset rule gives M the default's batch of 12 and L about three times that."""
    from nnunetv2.experiment_planning.experiment_planners.residual_unets import residual_encoder_unet_planners

    from nnunetv2_resunet.experiment_planning.synthetic_plans import (
        MIN_BATCH,
        REFERENCE_BATCH_2D,
        RESENC_REFERENCE_VAL_2D,
        preset_batch_size,
    )

    raw, preprocessed = tmp_path / "raw" / "Dataset998_Preset", tmp_path / "preprocessed" / "Dataset998_Preset"
    (raw / "imagesTr").mkdir(parents=True)
    (raw / "labelsTr").mkdir()
    (raw / "dataset.json").write_text(json.dumps({"channel_names": {"0": "CT"}, "labels": {"background": 0, "a": 1},
                                                  "numTraining": 0, "file_ending": ".nii.gz"}))
    preprocessed.mkdir(parents=True)
    (preprocessed / "dataset_fingerprint.json").write_text("{}")
    monkeypatch.setenv("nnUNet_raw", str(raw.parent))
    monkeypatch.setenv("nnUNet_preprocessed", str(preprocessed.parent))
    for preset in ("M", "L", "XL"):
        planner = getattr(residual_encoder_unet_planners, f"nnUNetPlannerResEnc{preset}")("Dataset998_Preset")
        plans = f"nnUNetResEncUNet{preset}Plans"
        assert plans == planner.plans_identifier
        reference = planner.UNet_reference_val_2d * planner.UNet_vram_target_GB / planner.UNet_reference_val_corresp_GB
        assert RESENC_REFERENCE_VAL_2D[plans] == reference
        assert (planner.UNet_reference_val_corresp_bs_2d, planner.UNet_min_batch_size) == (REFERENCE_BATCH_2D,
                                                                                         MIN_BATCH)
    assert preset_batch_size("nnUNetResEncUNetMPlans", (512, 512)) == 12
    assert 30 <= preset_batch_size("nnUNetResEncUNetLPlans", (512, 512)) <= 40
    assert preset_batch_size("nnUNetPlans", (512, 512)) is None
