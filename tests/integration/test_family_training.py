"""One comparison trainer per decoder family through nnU-Net's real ``nnUNetv2_train`` (1 epoch of 2 iterations, on
CPU), on the synthetic dataset of ``nnunet_workspace.py``: training, checkpoint, final validation, the training log.
UNet++ and UNet3+ (their own decoders on the ResNet-34 encoder) and the plain-conv family (the residual U-Net with
attention gates on nnU-Net's U-Net decoder); ResUnet's own decoder runs in test_user_flow.py, the transformers' in
test_transformer_training.py. Every comparison trainer and the thesis recipe go through their real ``__init__``,
``initialize()`` and a ``train_step`` in tests/training/test_ddp.py (on the multi-GPU path). The runs are
independent and run two at a time (``NnUNetWorkspace.train_concurrently``); each test checks its own."""

import json

import pytest
import torch
from nnunet_workspace import result_of

from nnunetv2_resunet.architectures.registry import build_network
from nnunetv2_resunet.training import (
    ResidualUNetTrainer_SpatialAttention,
    UNet3PlusTrainer_R34,
    UNetPlusPlusTrainer_R34,
)

FAMILY_TRAINERS = {t.__name__: t for t in (UNetPlusPlusTrainer_R34, UNet3PlusTrainer_R34,
                                           ResidualUNetTrainer_SpatialAttention)}


@pytest.fixture(scope="module")
def trained(nnunet_workspace):
    return nnunet_workspace.train_concurrently(list(FAMILY_TRAINERS))


@pytest.mark.parametrize("trainer", list(FAMILY_TRAINERS))
def test_short_training_run(trained, trainer):
    output = result_of(trained, trainer)
    checkpoint = torch.load(output / "checkpoint_final.pth", map_location="cpu", weights_only=False)
    assert checkpoint["trainer_name"] == f"{trainer}_short"
    # What nnU-Net trained is the network of the trainer's config: the checkpoint loads into it strictly.
    config = FAMILY_TRAINERS[trainer].resunet_config
    network = build_network(config, 1, 3, deep_supervision=False)
    network.load_state_dict(checkpoint["network_weights"], strict=True)
    summary = json.loads((output / "validation" / "summary.json").read_text())
    assert set(summary["mean"]) == {"1", "2"}
    assert all(0.0 <= metrics["Dice"] <= 1.0 for metrics in summary["mean"].values())

    # nnU-Net's dump of the trainer's attributes, as strings.
    debug = json.loads((output / "debug.json").read_text())
    assert debug["enable_deep_supervision"] == "True"
    group = checkpoint["optimizer_state"]["param_groups"][0]
    assert (group["momentum"], group["nesterov"]) == (0.99, True)  # nnU-Net's recipe
    # The log says what the network started from; ResNet-34 encoders have published weights, and it names the
    # command that would start from them.
    log = "".join(p.read_text() for p in output.glob("training_log_*.txt"))
    assert "Network weights: from scratch" in log
    assert ("nnUNetv2_resunet_init_weights" in log) == trainer.endswith("_R34")
