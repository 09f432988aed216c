"""Every comparison trainer through nnU-Net's real ``nnUNetv2_train`` (1 epoch of 2 iterations, on CPU), on the
synthetic dataset of ``nnunet_workspace.py``: training, checkpoint, final validation. The runs are independent and
run two at a time (``NnUNetWorkspace.train_concurrently``); each test checks its own."""

import json

import pytest
import torch
from nnunet_workspace import result_of

from nnunetv2_resunet.architectures.registry import build_network
from nnunetv2_resunet.training import COMPARISON_TRAINERS, ResUnetTrainer_ThesisRecipe

# The comparison models and the recipe variant (the ladder's steps run in test_user_flow.py and the unit tests).
FAMILY_TRAINERS = {t.__name__: t for t in (*COMPARISON_TRAINERS.values(), ResUnetTrainer_ThesisRecipe)}


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
    if trainer == "ResUnetTrainer_ThesisRecipe":
        assert debug["enable_deep_supervision"] == "False"
        group = checkpoint["optimizer_state"]["param_groups"][0]
        assert (group["momentum"], group["weight_decay"], group["nesterov"]) == (0.9, 1e-4, False)
    else:
        assert debug["enable_deep_supervision"] == "True"
        group = checkpoint["optimizer_state"]["param_groups"][0]
        assert (group["momentum"], group["nesterov"]) == (0.99, True)  # nnU-Net's recipe
