"""The plain-conv encoder of the classic and residual U-Nets: one conv unit per level, halving the resolution."""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn

from nnunetv2_resunet.architectures.building_blocks import ResidualUnit, double_conv

CONV_BLOCKS = ("plain", "residual")
DOWNSAMPLING = ("maxpool", "stride")


class ConvUNetEncoder(nn.Module):
    """One conv unit per level, each level (but the first) at half the resolution of the one above.

    Args:
        input_channels: Image channels.
        widths: Channels of each level, shallowest first.
        block: ``"plain"`` (two 3x3 conv-BN-ReLU) or ``"residual"`` (pre-activation residual unit).
        downsampling: ``"maxpool"`` (2x2 max-pool before a level's block) or ``"stride"`` (the residual unit's
            first conv has stride 2).

    Attributes:
        feature_names: ``level0`` .. ``levelN``, shallowest first.
        output_channels: Their widths (``widths``).
        strides: Their downsampling factors: 1, 2, 4, ...
    """

    def __init__(self, input_channels: int, widths: Sequence[int], block: str = "plain",
                 downsampling: str = "maxpool"):
        super().__init__()
        if block not in CONV_BLOCKS or downsampling not in DOWNSAMPLING:
            raise ValueError(f"block must be one of {CONV_BLOCKS} and downsampling one of {DOWNSAMPLING}, got "
                             f"{block!r}, {downsampling!r}")
        levels = []
        for index, width in enumerate(widths):
            in_channels = widths[index - 1] if index else input_channels
            if block == "plain":
                unit = double_conv(in_channels, width)
            else:
                stride = 2 if index and downsampling == "stride" else 1
                # The first unit sees the raw image: no BN-ReLU before its first conv (as in the paper).
                unit = ResidualUnit(in_channels, width, stride, preactivate=index > 0)
            pooled = index > 0 and downsampling == "maxpool"
            levels.append(nn.Sequential(nn.MaxPool2d(2), unit) if pooled else unit)
        self.levels = nn.ModuleList(levels)
        self.feature_names = tuple(f"level{i}" for i in range(len(widths)))
        self.output_channels = tuple(widths)
        self.strides = tuple(2 ** i for i in range(len(widths)))

    def forward(self, x: torch.Tensor) -> dict[str, torch.Tensor]:
        features = {}
        for name, level in zip(self.feature_names, self.levels):
            x = level(x)
            features[name] = x
        return features
