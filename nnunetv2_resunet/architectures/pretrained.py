"""Initialise a ResUnet encoder from a local torchvision ResNet checkpoint (ImageNet weights).

Nothing is downloaded: the user points ``RESUNET_PRETRAINED`` at a torchvision state-dict file they have, e.g.
``resnet34-b627a593.pth``. The encoder uses torchvision's module names, so weights load by name; the classifier
(``fc``) is dropped and ``conv1`` is adapted to nnU-Net's number of input channels.
"""

import os
from collections.abc import Mapping

import torch
from torch import nn

PRETRAINED_ENV_VAR = "RESUNET_PRETRAINED"
CLASSIFIER_PREFIX = "fc."


class PretrainedWeightsError(ValueError):
    """A pretrained checkpoint is missing, unreadable or does not fit the encoder."""


def adapt_input_conv(weight: torch.Tensor, in_channels: int) -> torch.Tensor:
    """Map a conv1 weight trained on RGB to ``in_channels`` inputs (as timm does).

    One channel gets the sum over RGB (a grey image then activates the filters as its RGB copy would); more
    channels repeat RGB cyclically, scaled by 3 / in_channels so that activations keep their magnitude.

    Args:
        weight: ``(out, 3, k, k)`` weight.
        in_channels: Wanted input channels.

    Returns:
        ``(out, in_channels, k, k)`` weight.
    """
    rgb = weight.shape[1]
    if in_channels == rgb:
        return weight
    if in_channels == 1:
        return weight.sum(dim=1, keepdim=True)
    repeats = -(-in_channels // rgb)
    return weight.repeat(1, repeats, 1, 1)[:, :in_channels] * (rgb / in_channels)


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


def read_pretrained_file(path: str | None = None) -> tuple[dict[str, torch.Tensor], str]:
    """Read the state dict named by ``path`` or, when None, by the ``RESUNET_PRETRAINED`` environment variable.

    Returns:
        The state dict and the path it came from.

    Raises:
        PretrainedWeightsError: The variable is unset, or the file is missing or not a state dict.
    """
    path = path or os.environ.get(PRETRAINED_ENV_VAR)
    if not path:
        raise PretrainedWeightsError(
            f"This variant starts from ImageNet weights: set {PRETRAINED_ENV_VAR} to a local torchvision ResNet "
            "state-dict file of the encoder's depth (resnet34 for the ladder, e.g. resnet34-b627a593.pth from "
            "torchvision's model zoo). Nothing is downloaded.")
    if not os.path.isfile(path):
        raise PretrainedWeightsError(f"{PRETRAINED_ENV_VAR}={path}: no such file")
    try:
        state_dict = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as error:  # torch raises several types for corrupt or non-tensor files
        raise PretrainedWeightsError(f"{path} is not a readable torch state dict: {error}") from error
    if not isinstance(state_dict, Mapping) or not all(isinstance(v, torch.Tensor) for v in state_dict.values()):
        raise PretrainedWeightsError(f"{path} holds a {type(state_dict).__name__}, not a state dict of tensors")
    return dict(state_dict), path
