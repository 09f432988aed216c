"""What every loader of published weights shares: reading the original file, adapting the first conv to nnU-Net's
input channels, copying tensors with checked shapes, and the report of what landed where."""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass, field

import numpy as np
import torch
from torch import nn


class PretrainedWeightsError(ValueError):
    """A published weights file is missing, unreadable or does not fit the network."""


def adapt_input_conv(weight: torch.Tensor, in_channels: int) -> torch.Tensor:
    """Map a first-conv weight trained on RGB to ``in_channels`` inputs (as timm does).

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


def read_weights_file(path: str) -> dict[str, torch.Tensor]:
    """The tensors of a published weights file: a torch checkpoint (``.pth``/``.pt``/``.bin``, a state dict or one
    wrapped as ``{"model": ...}`` / ``{"state_dict": ...}``) or a NumPy archive (``.npz``, Google's ViT format).

    Raises:
        PretrainedWeightsError: The file is missing, unreadable or holds no tensors.
    """
    if not os.path.isfile(path):
        raise PretrainedWeightsError(f"{path}: no such file")
    if os.path.getsize(path) == 0:
        raise PretrainedWeightsError(f"{path} is empty (0 bytes): an interrupted download or copy? Fetch the "
                                     f"published file again")
    try:
        if path.endswith(".npz"):
            with np.load(path) as archive:
                return {key: torch.from_numpy(np.array(archive[key])) for key in archive.files}
        content = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as error:  # numpy and torch raise several types for corrupt or foreign files
        raise PretrainedWeightsError(f"{path} is not a readable weights file (.pth state dict or .npz): "
                                     f"{error}") from error
    for wrapper in ("model", "state_dict"):
        if isinstance(content, Mapping) and isinstance(content.get(wrapper), Mapping):
            content = content[wrapper]
    if not isinstance(content, Mapping) or not content or \
            not all(isinstance(v, torch.Tensor) for v in content.values()):
        raise PretrainedWeightsError(f"{path} holds a {type(content).__name__}, not a state dict of tensors")
    return dict(content)


@dataclass
class LoadReport:
    """What a published weights file gave a network.

    Attributes:
        source: The file.
        file_format: What it was read as, e.g. ``"torchvision ResNet"``.
        loaded: Network state-dict keys set from the file.
        unused: File keys that went nowhere, each with the reason (a classifier, a class token, ...).
        adapted: Network keys whose tensor was transformed on the way (first conv, position embeddings, ...).
        kept: Network keys the file has nothing for (the decoder, ...): they keep their initialisation.
    """

    source: str
    file_format: str
    loaded: list[str] = field(default_factory=list)
    unused: dict[str, str] = field(default_factory=dict)
    adapted: dict[str, str] = field(default_factory=dict)
    kept: list[str] = field(default_factory=list)

    def summary(self) -> str:
        """A few lines for the console and the checkpoint's ``init_info``."""
        reasons: dict[str, int] = {}
        for reason in self.unused.values():
            reasons[reason] = reasons.get(reason, 0) + 1
        kept: dict[str, int] = {}
        for key in self.kept:
            kept[key.split(".")[0]] = kept.get(key.split(".")[0], 0) + 1
        lines = [f"{self.source} ({self.file_format}): {len(self.loaded)} network tensors set from the file"]
        lines += [f"  adapted {key}: {how}" for key, how in self.adapted.items()]
        lines += [f"  unused, {count} file tensors: {reason}" for reason, count in reasons.items()]
        lines += [f"  initialised as the trainer does, {count} tensors: {prefix}" for prefix, count in kept.items()]
        return "\n".join(lines)


def copy_into(module: nn.Module, tensors: Mapping[str, torch.Tensor], source: str, prefix: str,
              report: LoadReport) -> None:
    """Copy ``tensors`` (named as in ``module``'s state dict) into ``module``; every tensor of ``module`` must be
    given (``report.loaded`` gets them with ``prefix``, the module's name in the network).

    Raises:
        PretrainedWeightsError: A tensor of ``module`` is missing from ``tensors`` or has another shape.
    """
    target = module.state_dict()
    missing = sorted(k for k in target if k not in tensors)
    if missing:
        raise PretrainedWeightsError(f"{source} lacks {len(missing)} tensors of the encoder, e.g. {missing[:5]}: is "
                                     f"it the model this network's encoder is ({report.file_format})?")
    wrong = [f"{k}: file {tuple(tensors[k].shape)} vs network {tuple(v.shape)}" for k, v in target.items()
             if tensors[k].shape != v.shape]
    if wrong:
        raise PretrainedWeightsError(f"{source} has tensors of another shape than the network: {wrong[:5]}")
    module.load_state_dict({k: tensors[k].to(v.dtype) for k, v in target.items()}, strict=True)
    report.loaded += [prefix + k for k in target]


def finish(network: nn.Module, report: LoadReport) -> LoadReport:
    """Fill ``report.kept`` with the network keys the file did not set."""
    loaded = set(report.loaded)
    report.kept = [k for k in network.state_dict() if k not in loaded]
    return report
