"""The transformer baselines through nnU-Net's real CLI on CPU (1 epoch of 2 iterations, then prediction): the three
papers' models from their published weights (``nnUNetv2_resunet_init_weights`` on synthetic files in the released
formats, then ``nnUNetv2_train -pretrained_weights``). The runs are independent and run two at a time
(``NnUNetWorkspace.concurrently``); each test checks its own. Their short trainers write only checkpoint_final.pth,
without AdamW's moments (``nnunet_workspace.LIGHT_CHECKPOINTS``): TransUNet's would be 2.5 GB for a two-step check.
ResUnet's decoder on PVTv2-B2 (EMCAD's encoder, ResUnet's decoder, both run here or in test_user_flow.py) goes through
its real ``initialize()`` and a training step in tests/training/test_ddp.py; the log of a run from
scratch is checked in tests/integration/test_family_training.py."""

import json
from dataclasses import dataclass
from functools import partial
from pathlib import Path

import numpy as np
import pytest
import SimpleITK as sitk
import torch
from nnunet_workspace import SYNTHETIC_ID, SYNTHETIC_LABELS, SYNTHETIC_NAME, result_of

# Trainer -> the published file its encoder starts from (None: from scratch).
RUNS = {"TransUNetTrainer": "r50_vit_b16", "SwinUnetTrainer": "swin_tiny", "EMCADTrainer": "pvt_v2_b2"}


def training_log(folder) -> str:
    return "".join(p.read_text() for p in folder.glob("training_log_*.txt"))


def planned_patch_size(workspace) -> list[int]:
    plans = json.loads((workspace.preprocessed / SYNTHETIC_NAME / "nnUNetPlans.json").read_text())
    return plans["configurations"]["2d"]["patch_size"]


@dataclass
class Run:
    output: Path  # the fold folder
    init_file: Path | None  # what -pretrained_weights got; None: from scratch
    init_stdout: str
    predictions: Path


def init_train_predict(workspace, published_file, trainer: str, folder: Path) -> Run:
    """One trainer's commands as a user types them: the init command (from a published file), nnUNetv2_train,
    nnUNetv2_predict."""
    folder.mkdir(parents=True)
    extra_args: tuple[str, ...] = ()
    init_file, init_stdout = None, ""
    if RUNS[trainer] is not None:
        workspace.add_short_trainer(trainer, light_checkpoints=True)  # the init command builds its network
        init_file = folder / "init.pth"
        init_stdout = workspace.run("nnUNetv2_resunet_init_weights", "-d", SYNTHETIC_ID, "-c", "2d",
                                    "-tr", f"{trainer}_short", "-i", published_file(RUNS[trainer]),
                                    "-o", init_file).stdout
        extra_args = ("-pretrained_weights", str(init_file))
    output = workspace.train(trainer, extra_args=extra_args, light_checkpoints=True)
    predictions = folder / "predictions"
    workspace.run("nnUNetv2_predict", "-i", workspace.raw / SYNTHETIC_NAME / "imagesTs", "-o", predictions,
                  "-d", SYNTHETIC_ID, "-c", "2d", "-tr", f"{trainer}_short", "-f", "0", "-device", "cpu",
                  "--disable_progress_bar",
                  "-npp", "0", "-nps", "0")  # nnU-Net's sequential mode: no worker processes for 2 images
    return Run(output, init_file, init_stdout, predictions)


@pytest.fixture(scope="module")
def runs(nnunet_workspace, published_file, tmp_path_factory):
    for kind in {k for k in RUNS.values() if k}:
        published_file(kind)  # written once, here, not by two jobs at once
    folder = tmp_path_factory.mktemp("transformer_runs")
    return nnunet_workspace.concurrently({
        trainer: partial(init_train_predict, nnunet_workspace, published_file, trainer, folder / trainer)
        for trainer in RUNS})


@pytest.mark.parametrize("trainer", list(RUNS))
def test_short_training_run_and_prediction(nnunet_workspace, runs, trainer):
    run = result_of(runs, trainer)
    output, init_file = run.output, run.init_file
    if init_file is not None:
        assert "network tensors set from the file" in run.init_stdout

    # Only the final checkpoint was written; mmap: read only the tensors looked at (TransUNet's weights: 420 MB).
    assert sorted(p.name for p in output.glob("*.pth")) == ["checkpoint_final.pth"]
    checkpoint = torch.load(output / "checkpoint_final.pth", map_location="cpu", weights_only=False, mmap=True)
    assert checkpoint["trainer_name"] == f"{trainer}_short"
    # The trained network is the config's, sized for the plan (nnUNetv2_predict below rebuilds it from the plan and
    # loads the checkpoint strictly): TransUNet's position embeddings cover the planned patch's 1/16 grid.
    if trainer == "TransUNetTrainer":
        grid = [-(-s // 16) for s in planned_patch_size(nnunet_workspace)]
        assert checkpoint["network_weights"]["encoder.vit.pos_embed"].shape[1] == grid[0] * grid[1]
    group = checkpoint["optimizer_state"]["param_groups"][0]
    assert (group["weight_decay"], group["betas"]) == (1e-4, (0.9, 0.999))  # AdamW of the transformer recipe
    assert "amsgrad" in group and group["lr"] == pytest.approx(1e-4)  # 1 epoch: the warm-up is that epoch
    log = training_log(output)
    if init_file is None:
        assert "Network weights: from scratch" in log and "nnUNetv2_resunet_init_weights" in log
    else:
        assert "loaded before training by nnUNetv2_train's -pretrained_weights" in log
        # Two AdamW steps at 1e-4 move the published encoder weights by about 2e-4 at most.
        initial = torch.load(init_file, map_location="cpu", weights_only=False, mmap=True)
        assert initial["init_info"]["trainer"] == f"{trainer}_short"
        encoder = {k: v for k, v in initial["network_weights"].items()
                   if k.startswith("encoder.") and v.is_floating_point()}
        assert max((checkpoint["network_weights"][k] - v).abs().max().item() for k, v in encoder.items()) < 1e-3

    images = nnunet_workspace.raw / SYNTHETIC_NAME / "imagesTs"
    for image_file in sorted(images.glob("*_0000.nii.gz")):
        prediction = sitk.ReadImage(str(run.predictions / image_file.name.replace("_0000.nii.gz", ".nii.gz")))
        assert prediction.GetSize() == sitk.ReadImage(str(image_file)).GetSize()
        assert set(np.unique(sitk.GetArrayFromImage(prediction)).tolist()) <= set(SYNTHETIC_LABELS.values())
