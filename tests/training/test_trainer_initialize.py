"""The thesis recipe's loss through the trainer's real ``__init__`` and ``initialize()``, against nnU-Net's loss
classes, for labels and for regions (with a real ``train_step`` on region targets). Every trainer's network,
optimizer, schedule and deep supervision as ``initialize()`` builds them, and its ``train_step``, are checked in
tests/training/test_ddp.py, where each trainer goes through them on nnU-Net's multi-GPU path."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from nnunetv2.training.loss.compound_losses import DC_and_BCE_loss, DC_and_CE_loss
from nnunetv2.training.loss.dice import MemoryEfficientSoftDiceLoss
from nnunetv2.utilities.helpers import softmax_helper_dim1
from torch import nn

from nnunetv2_resunet.benchmarking.trainer_steps import make_batch
from nnunetv2_resunet.experiment_planning.synthetic_plans import synthetic_plans
from nnunetv2_resunet.training import ResUnetTrainer_ThesisRecipe

PATCH = (32, 32)
REGION_LABELS = {"background": 0, "whole": [1, 2], "core": 2}


@pytest.fixture
def nnunet_env(tmp_path, monkeypatch):
    """nnU-Net's folders for a trainer without a dataset: the log goes to nnUNet_results, and initialize() looks at the
    preprocessed data folder only to pick the dataset class from a file ending."""
    monkeypatch.setenv("nnUNet_results", str(tmp_path / "results"))
    monkeypatch.setenv("nnUNet_preprocessed", str(tmp_path / "preprocessed"))
    monkeypatch.setenv("nnUNet_compile", "f")
    data = tmp_path / "preprocessed" / "Dataset999_Synthetic" / "nnUNetPlans_2d"
    data.mkdir(parents=True)
    (data / "case.b2nd").write_bytes(b"")
    return tmp_path


def initialized(trainer_class, labels: dict | None = None):
    """``trainer_class`` constructed and initialised exactly as nnUNetv2_train does it, on CPU."""
    plans, dataset_json = synthetic_plans(PATCH, 2, num_classes=3)
    if labels is not None:
        dataset_json["labels"] = labels
        dataset_json["regions_class_order"] = [1, 2]
    plans["continue_training"] = False  # nnU-Net's run_training adds this key; the trainer pops it
    trainer = trainer_class(plans, "2d", 0, dataset_json, torch.device("cpu"))
    trainer.initialize()
    return trainer


def test_thesis_recipe_loss_is_04_ce_plus_06_dice_through_the_real_init(nnunet_env):
    trainer = initialized(ResUnetTrainer_ThesisRecipe)
    assert isinstance(trainer.loss, DC_and_CE_loss)  # not wrapped for deep supervision
    torch.manual_seed(0)
    logits, target = torch.randn(2, 3, 16, 16), torch.randint(0, 3, (2, 1, 16, 16)).float()
    ce = nn.CrossEntropyLoss()(logits, target[:, 0].long())
    dice = MemoryEfficientSoftDiceLoss(apply_nonlin=softmax_helper_dim1, batch_dice=True, do_bg=False,
                                       smooth=1e-5, ddp=False)(logits, target)
    torch.testing.assert_close(trainer.loss(logits, target), 0.4 * ce + 0.6 * dice)


def test_thesis_recipe_loss_for_region_labels_is_04_bce_plus_06_dice(nnunet_env):
    """Region-based datasets (nnU-Net's sigmoid outputs): the same weights on nnU-Net's Dice + BCE, background
    included as nnU-Net does for regions; and a real training step on region targets."""
    trainer = initialized(ResUnetTrainer_ThesisRecipe, REGION_LABELS)
    assert trainer.label_manager.has_regions and isinstance(trainer.loss, DC_and_BCE_loss)
    torch.manual_seed(0)
    logits, target = torch.randn(2, 2, 16, 16), torch.randint(0, 2, (2, 2, 16, 16)).float()
    bce = nn.BCEWithLogitsLoss()(logits, target)
    dice = MemoryEfficientSoftDiceLoss(apply_nonlin=torch.sigmoid, batch_dice=True, do_bg=True, smooth=1e-5,
                                       ddp=False)(logits, target)
    torch.testing.assert_close(trainer.loss(logits, target), 0.4 * bce + 0.6 * dice)
    data, target = make_batch(trainer, 2, torch.device("cpu"))
    assert np.isfinite(trainer.train_step({"data": data, "target": target})["loss"])
