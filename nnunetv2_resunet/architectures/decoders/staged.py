"""What the staged decoders share: a chain of decoder stages with a head per stage, and the check of an encoder's
published features against a decoder's skips and widths.

A feature not listed in a decoder's ``skips`` is a skip of width 0: its stage still exists, it just fuses nothing.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn


class StagedDecoder(nn.Module):
    """A chain of :class:`DecoderStage`, deepest first, with a 1x1 segmentation head per stage.

    Subclasses build ``stages`` and ``skip_sources`` (the feature each stage fuses, or None) and call
    :meth:`_build_heads`.

    Attributes:
        deep_supervision: Return one output per stage (full resolution first) instead of the full-resolution one.
        output_strides: Downsampling factor of each output relative to the input, full resolution first.
    """

    stages: nn.ModuleList
    skip_sources: tuple[str | None, ...]

    def __init__(self, deepest: str, deep_supervision: bool):
        super().__init__()
        self.deepest = deepest
        self.deep_supervision = deep_supervision

    def _build_heads(self, num_classes: int, stage_strides: Sequence[int]) -> None:
        # All heads are always built, so the state dict is the same with deep supervision on or off.
        self.seg_layers = nn.ModuleList(nn.Conv2d(stage.out_channels, num_classes, 1) for stage in self.stages)
        self.output_strides = tuple(reversed(stage_strides))

    def forward(self, features: dict[str, torch.Tensor]) -> list[torch.Tensor] | torch.Tensor:
        x = features[self.deepest]
        stage_outputs = []
        for stage, source in zip(self.stages, self.skip_sources):
            x = stage(x, features[source] if source is not None else None)
            stage_outputs.append(x)
        if not self.deep_supervision:
            return self.seg_layers[-1](x)
        # Full resolution first, as nnU-Net's loss and target downsampling expect.
        return [head(out) for head, out in zip(reversed(self.seg_layers), reversed(stage_outputs))]


def check_encoder(encoder: nn.Module, skips: Sequence[str], widths: Sequence[int] | None = None) -> None:
    """Raise for skips the encoder does not offer, or for widths that are not one per level but the deepest."""
    unknown = set(skips) - set(encoder.feature_names[:-1])
    if unknown:
        raise ValueError(f"skips {sorted(unknown)} are not skip features of the encoder "
                         f"{tuple(encoder.feature_names[:-1])}")
    if widths is not None and len(widths) != len(encoder.feature_names) - 1:
        raise ValueError(f"need {len(encoder.feature_names) - 1} decoder widths for the levels above the deepest "
                         f"of {tuple(encoder.feature_names)}, got {tuple(widths)}")
