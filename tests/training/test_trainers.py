"""The comparison trainers: exact names, nnU-Net finds each, each names its config, and the thesis recipe
changes the loss, optimiser and deep supervision only (their values through the real ``__init__`` and
``initialize()``: test_ddp.py and test_trainer_initialize.py)."""

import numpy as np
import pytest
import torch

from nnunetv2_resunet.architectures.configs.comparisons import COMPARISONS, PLAIN_UNETS
from nnunetv2_resunet.architectures.configs.ladder import LADDER
from nnunetv2_resunet.experiment_planning.synthetic_plans import synthetic_plans
from nnunetv2_resunet.ext_trainers import nnunetv2_resunet_trainers as exported
from nnunetv2_resunet.training import (
    COMPARISON_TRAINERS,
    ResUnetTrainer,
    ResUnetTrainer_ThesisRecipe,
    ResUnetTrainer_v0_1,
    UNetPlusPlusTrainer_R34,
)

# The names the issue asks for (plus UNetTrainer_R34, the classic U-Net decoder on ResNet-34, by the same scheme).
FAMILY_TRAINER_CONFIGS = {
    "ResUnetTrainer_R50": "resunet_r50",
    "UNetTrainer_R34": "unet_r34",
    "UNetPlusPlusTrainer_R34": "unetpp_r34",
    "UNet3PlusTrainer_R34": "unet3p_r34",
    "ResidualUNetTrainer": "residual_unet",
    "ResidualUNetTrainer_SpatialAttention": "residual_unet_sa",
    "ClassicUNetTrainer": "classic_unet",
    "ResUnetTrainer_ThesisRecipe": "v1_0",
}


def test_every_comparison_config_has_its_trainer():
    assert {t.resunet_config.name for t in COMPARISON_TRAINERS.values()} == set(COMPARISONS) | set(PLAIN_UNETS)
    for name, config in FAMILY_TRAINER_CONFIGS.items():
        trainer = getattr(exported, name)
        assert trainer.__name__ == name and issubclass(trainer, ResUnetTrainer)
        assert trainer.resunet_config.name == config


def test_thesis_recipe_keeps_the_network_of_resunet_trainer():
    assert ResUnetTrainer_ThesisRecipe.resunet_config is ResUnetTrainer.resunet_config is LADDER["v1_0"]
    overridden = {k for k in vars(ResUnetTrainer_ThesisRecipe) if not k.startswith("__")}
    assert overridden == {"recipe", "ce_weight", "dice_weight", "momentum", "_build_loss", "build_optimizer"}


@pytest.mark.parametrize("name", [n for n in FAMILY_TRAINER_CONFIGS if n != "ResUnetTrainer_ThesisRecipe"])
def test_deep_supervision_scales_come_from_the_network(name):
    """One scale per network output; nnU-Net's loss weights then have a nonzero weight on more than one output."""
    trainer = object.__new__(getattr(exported, name))
    trainer.enable_deep_supervision, trainer.is_ddp = True, False
    with torch.device("meta"):
        from nnunetv2_resunet.architectures.registry import build_network
        trainer.network = build_network(trainer.resunet_config, 1, 2, deep_supervision=True)
    scales = trainer._get_deep_supervision_scales()
    assert scales == [[1 / s, 1 / s] for s in trainer.network.output_strides]
    weights = np.array([1 / 2 ** i for i in range(len(scales))])
    weights[-1] = 0
    assert (weights > 0).sum() >= 2


@pytest.mark.parametrize("trainer_class", [ResUnetTrainer, ResUnetTrainer_v0_1, UNetPlusPlusTrainer_R34],
                         ids=lambda t: t.__name__)
def test_deep_supervision_scales_before_initialize(trainer_class, tmp_path, monkeypatch):
    """As nnU-Net's own, the scales are known from the plans before initialize() builds the network (nnU-Net's
    data loaders and user code may ask first); they match the network initialize() then builds."""
    monkeypatch.setenv("nnUNet_results", str(tmp_path))  # the trainer's log file goes there
    monkeypatch.setenv("nnUNet_preprocessed", str(tmp_path))
    plans, dataset_json = synthetic_plans((64, 48), 2, num_classes=3)
    plans["continue_training"] = False  # nnU-Net's run_training adds this key; the trainer pops it
    trainer = trainer_class(plans, "2d", 0, dataset_json, torch.device("cpu"))
    assert trainer.network is None
    scales = trainer._get_deep_supervision_scales()
    network = trainer.build_network_architecture(trainer.plans_manager, trainer.configuration_manager, 1, 3, True)
    assert scales == [[1 / s, 1 / s] for s in network.output_strides]


def test_channels_last_on_cuda_also_under_ddp(monkeypatch, tmp_path):
    """nnU-Net calls configure_optimizers before wrapping the network in DDP: the layout is set there, so DDP's
    gradient buckets are made for NHWC weights (skipping DDP, as before, left multi-GPU runs in NCHW)."""
    from nnunetv2_resunet.benchmarking.trainer_steps import build_trainer, is_channels_last

    plans, dataset_json = synthetic_plans((32, 32), 2, num_classes=3)
    trainer = build_trainer("ResUnetTrainer_v0_1", plans, dataset_json, "2d", torch.device("cpu"))
    assert not is_channels_last(trainer.network)  # not on CPU, where nnU-Net does not train
    monkeypatch.setattr(trainer, "device", torch.device("cuda"))
    monkeypatch.setattr(trainer, "is_ddp", True)
    trainer.configure_optimizers()
    assert is_channels_last(trainer.network)
