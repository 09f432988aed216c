"""The transformer trainers: names and configs, the AdamW recipe (nnU-Net's warm-up and poly schedules, clipping),
a training step as nnU-Net runs it, and the refusal to train an ImageNet variant from scratch."""

import numpy as np
import pytest
import torch
from nnunetv2.training.lr_scheduler.warmup import Lin_incr_LRScheduler, PolyLRScheduler_offset

from nnunetv2_resunet.architectures.configs.transformers import TRANSFORMERS
from nnunetv2_resunet.benchmarking.trainer_steps import build_trainer, make_batch
from nnunetv2_resunet.experiment_planning.synthetic_plans import synthetic_plans
from nnunetv2_resunet.ext_trainers import nnunetv2_resunet_trainers as exported
from nnunetv2_resunet.training import TRANSFORMER_TRAINERS, TransformerRecipeTrainer
from nnunetv2_resunet.training.recipes import WarmupPolyLRScheduler

# The names the issue asks for, with the config each trains.
TRAINER_CONFIGS = {"TransUNetTrainer": "transunet", "SwinUnetTrainer": "swin_unet", "EMCADTrainer": "emcad",
                   "ResUnetTrainer_PVTv2B2": "resunet_pvt_v2_b2"}


def test_every_transformer_config_has_its_trainer():
    assert {t.resunet_config.name for t in TRANSFORMER_TRAINERS.values()} == set(TRANSFORMERS)
    for name, config in TRAINER_CONFIGS.items():
        trainer = getattr(exported, name)
        assert trainer.__name__ == name and issubclass(trainer, TransformerRecipeTrainer)
        assert trainer.resunet_config is TRANSFORMERS[config]
    assert not hasattr(exported, "TransformerRecipeTrainer")  # a base, not a trainer nnU-Net should find


@pytest.mark.parametrize("num_epochs", [1000, 250, 20])
def test_schedule_is_nnunets_warmup_then_poly(num_epochs):
    """Epoch by epoch the same rates as nnU-Net's own warm-up trainer: Lin_incr_LRScheduler for the warm-up, then
    PolyLRScheduler_offset."""
    warmup = max(1, int(np.ceil(0.05 * num_epochs)))
    ours = WarmupPolyLRScheduler(torch.optim.AdamW([torch.zeros(1, requires_grad=True)]), 1e-4, num_epochs, warmup)
    warm = Lin_incr_LRScheduler(torch.optim.SGD([torch.zeros(1, requires_grad=True)], 1e-4), 1e-4, warmup)
    poly = PolyLRScheduler_offset(torch.optim.SGD([torch.zeros(1, requires_grad=True)], 1e-4), 1e-4, num_epochs,
                                  warmup)
    for epoch in range(num_epochs):
        ours.step(epoch)
        reference = warm if epoch < warmup else poly
        reference.step(epoch)
        assert ours.get_last_lr()[0] == pytest.approx(reference.optimizer.param_groups[0]["lr"], rel=1e-12), epoch
    one_epoch = WarmupPolyLRScheduler(torch.optim.AdamW([torch.zeros(1, requires_grad=True)]), 1e-4, 1, 1)
    one_epoch.step(0)
    assert one_epoch.get_last_lr() == [pytest.approx(1e-4)]  # a one-epoch run (the tests') trains at the full rate


@pytest.fixture(scope="module")
def emcad_trainer():
    plans, dataset_json = synthetic_plans([64, 64], 2, num_classes=3)
    return build_trainer("EMCADTrainer", plans, dataset_json, "2d", torch.device("cpu"))


def test_recipe_is_adamw_with_warmup_and_clipping_at_one(emcad_trainer, monkeypatch):
    trainer = emcad_trainer
    group = trainer.optimizer.param_groups[0]
    assert isinstance(trainer.optimizer, torch.optim.AdamW)
    assert trainer.initial_lr == 1e-4 and group["lr"] == pytest.approx(1e-4 / 50)  # epoch 0 of a 50-epoch warm-up
    assert (group["weight_decay"], group["betas"]) == (1e-4, (0.9, 0.999))
    assert isinstance(trainer.lr_scheduler, WarmupPolyLRScheduler) and trainer.lr_scheduler.warmup_steps == 50
    assert trainer.recipe == "AdamW (transformers)" and trainer.enable_deep_supervision
    clipped = []
    original = torch.nn.utils.clip_grad_norm_
    monkeypatch.setattr(torch.nn.utils, "clip_grad_norm_", lambda params, max_norm: clipped.append(max_norm) or
                        original(params, max_norm))
    data, target = make_batch(trainer, 2, torch.device("cpu"))
    assert [t.shape[2:] for t in target] == [o.shape[2:] for o in trainer.network(data)]
    before = [p.detach().clone() for p in trainer.network.parameters()]
    loss = trainer.train_step({"data": data, "target": target})["loss"]
    assert np.isfinite(loss) and clipped == [1.0]
    assert any(not torch.equal(b, p) for b, p in zip(before, trainer.network.parameters()))


def test_imagenet_variant_refuses_scratch_naming_the_command(monkeypatch):
    plans, dataset_json = synthetic_plans([64, 64], 2, num_classes=3)
    trainer = build_trainer("ResUnetTrainer_v0_2", plans, dataset_json, "2d", torch.device("cpu"))
    with pytest.raises(RuntimeError, match="nnUNetv2_resunet_init_weights -d .* -tr ResUnetTrainer_v0_2 .*"
                                           "resnet34-b627a593.pth"):
        trainer._report_starting_weights()
    logged = []
    monkeypatch.setattr(trainer, "print_to_log_file", lambda *args, **kwargs: logged.append(" ".join(args)))
    trainer._weights_loaded_by = "pretrained_weights"
    trainer._report_starting_weights()
    assert "-pretrained_weights" in logged[-1]


def test_adamw_is_fused_on_cuda(emcad_trainer, monkeypatch):
    """One kernel for all parameters on CUDA (nnU-Net builds the optimizer per device in initialize())."""
    assert not emcad_trainer.optimizer.defaults["fused"]  # on CPU: PyTorch's default implementation
    monkeypatch.setattr(emcad_trainer, "device", torch.device("cuda"))
    optimizer, _ = emcad_trainer.build_optimizer()
    assert optimizer.defaults["fused"]
