"""How ``RESUNET_REFERENCE_VAL_2D`` (the planner's 2d memory reference) was derived: bytes saved for backward per
feature-map element, ResUnet against nnU-Net's PlainConvUNet (see ``experiment_planning/resunet_planner.py``)."""

from __future__ import annotations

from collections.abc import Sequence

import torch

from nnunetv2_resunet.architectures.configs.ladder import LADDER
from nnunetv2_resunet.architectures.resunet import ResUnet, ResUnetConfig
from nnunetv2_resunet.benchmarking.measure import saved_activation_bytes
from nnunetv2_resunet.experiment_planning.resunet_planner import NNUNET_REFERENCE_VAL_2D
from nnunetv2_resunet.experiment_planning.synthetic_plans import synthetic_plans


def bytes_per_feature_map_element(network: torch.nn.Module, patch_size: Sequence[int],
                                  input_channels: int = 1) -> float:
    """Bytes saved for backward by one fp32 forward, per element of ``compute_conv_feature_map_size``."""
    data = torch.randn((1, input_channels, *patch_size))
    return saved_activation_bytes(network, data) / int(network.compute_conv_feature_map_size(list(patch_size)))


def calibrate_reference(patch_size: Sequence[int] = (256, 256), num_classes: int = 14,
                        config: ResUnetConfig = LADDER["v1_0"]) -> float:
    """The 2d reference for ``config`` that matches nnU-Net's PlainConvUNet reference in saved-activation bytes."""
    from nnunetv2.utilities.get_network_from_plans import get_network_from_plans

    plans, _ = synthetic_plans(patch_size, 12, num_classes=num_classes)
    architecture = plans["configurations"]["2d"]["architecture"]
    plain = get_network_from_plans(architecture["network_class_name"], architecture["arch_kwargs"],
                                   architecture["_kw_requires_import"], 1, num_classes, deep_supervision=True)
    resunet = ResUnet(1, num_classes, config, deep_supervision=True)
    return NNUNET_REFERENCE_VAL_2D * (bytes_per_feature_map_element(plain, patch_size)
                                      / bytes_per_feature_map_element(resunet, patch_size))
