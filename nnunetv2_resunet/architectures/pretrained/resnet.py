"""torchvision's ImageNet ResNets (``resnet34-b627a593.pth`` and the other depths) into a ResNet encoder.

The encoder uses torchvision's module names, so weights load by name; the classifier (``fc``) is dropped and
``conv1`` is adapted to nnU-Net's number of input channels. Encoder tensors torchvision has no counterpart for (the
fix-3a tail) keep their initialisation.
"""

from __future__ import annotations

from collections.abc import Mapping

import torch
from torch import nn

from nnunetv2_resunet.architectures.pretrained.common import (
    LoadReport,
    PretrainedWeightsError,
    adapt_input_conv,
    finish,
)

CLASSIFIER_PREFIX = "fc."


def load_torchvision_resnet(encoder: nn.Module, state_dict: Mapping[str, torch.Tensor], source: str) -> list[str]:
    """Copy a torchvision ResNet state dict into ``encoder`` by name.

    Every torchvision key but the classifier must exist in the encoder with the same shape (conv1's input
    channels excepted); encoder parameters torchvision has no counterpart for (the bottleneck tail) keep their
    initialisation.

    Args:
        encoder: A :class:`nnunetv2_resunet.architectures.encoders.resnet.ResNetEncoder`.
        state_dict: torchvision ResNet state dict.
        source: Where it came from, for error messages.

    Returns:
        The encoder keys that were not loaded (kept their initialisation).

    Raises:
        PretrainedWeightsError: The state dict does not fit the encoder.
    """
    target = encoder.state_dict()
    weights = {k: v for k, v in state_dict.items() if not k.startswith(CLASSIFIER_PREFIX)}
    unexpected = sorted(set(weights) - set(target))
    if unexpected or not weights:
        raise PretrainedWeightsError(
            f"{source} does not fit the ResNet encoder: {len(unexpected)} unexpected keys, e.g. {unexpected[:5]}. "
            "Expected a torchvision ResNet state dict of the encoder's depth (resnet34 for the ResUnet ladder).")
    missing = sorted(k for k in target if k not in weights and not k.startswith("tail."))
    if missing:
        raise PretrainedWeightsError(f"{source} lacks {len(missing)} encoder keys, e.g. {missing[:5]}; is it a "
                                     "ResNet of another depth than the encoder's?")
    weights["conv1.weight"] = adapt_input_conv(weights["conv1.weight"], target["conv1.weight"].shape[1])
    wrong_shape = [f"{k}: {tuple(v.shape)} vs {tuple(target[k].shape)}" for k, v in weights.items()
                   if v.shape != target[k].shape]
    if wrong_shape:
        raise PretrainedWeightsError(f"{source} has tensors of the wrong shape (file vs encoder): {wrong_shape[:5]}")
    encoder.load_state_dict(weights, strict=False)
    return sorted(set(target) - set(weights))


def load_resnet(network: nn.Module, state_dict: Mapping[str, torch.Tensor], source: str) -> LoadReport:
    """A torchvision ResNet file into the ``encoder`` of a ResUnet-family network, with its report."""
    report = LoadReport(source, "torchvision ResNet")
    kept = set(load_torchvision_resnet(network.encoder, state_dict, source))
    report.loaded = [f"encoder.{k}" for k in network.encoder.state_dict() if k not in kept]
    report.unused = {k: "the ImageNet classifier" for k in state_dict if k.startswith(CLASSIFIER_PREFIX)}
    in_channels = network.encoder.conv1.in_channels
    if in_channels != state_dict["conv1.weight"].shape[1]:
        report.adapted["encoder.conv1.weight"] = f"RGB filters mapped to {in_channels} input channel(s)"
    return finish(network, report)
