"""Plain-conv U-Nets without a ResNet backbone: the classic U-Net and the residual-unit "ResUNet".

One configurable network, :class:`ConvUNet`, configured by a frozen :class:`ConvUNetConfig`; the named variants
are rows in ``nnunetv2_resunet.comparisons.PLAIN_UNETS``.

- Classic U-Net (Ronneberger et al., 2015): two 3x3 convs per level, 64 to 1024 channels, 2x2 max-pool down,
  2x2 transposed conv up. Convs are padded (nnU-Net needs output size = input size) and followed by BatchNorm,
  as in most re-implementations and in nnU-Net's own PlainConvUNet (which uses instance norm).
- Residual U-Net (Zhang et al., 2018, road extraction; the "ResUNet" of many medical papers): full
  pre-activation residual units in encoder and decoder, downsampling by a stride-2 conv, 64 to 512 channels.
  ``skip_attention`` gates every skip with a spatial-attention map (channel mean and max, 7x7 conv, sigmoid).

The decoder is :class:`nnunetv2_resunet.decoders.UNetDecoder`, shared with the ResNet family; padding, cropping
and the memory estimate come from :class:`nnunetv2_resunet.base.SegmentationNetwork`.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

from nnunetv2_resunet.base import SegmentationNetwork
from nnunetv2_resunet.blocks import BlockFactory, ResidualUnit, double_conv
from nnunetv2_resunet.decoders import UNetDecoder

CONV_BLOCKS = ("plain", "residual")
DOWNSAMPLING = ("maxpool", "stride")


@dataclass(frozen=True)
class ConvUNetConfig:
    """One plain-conv U-Net.

    Attributes:
        name: Short name of the variant, e.g. ``"classic_unet"``.
        change: What it is, in one line (for tables).
        widths: Channels of each encoder level, shallowest first; the last is the bottleneck. The decoder
            mirrors them (stage at level i has ``widths[i]`` channels).
        block: ``"plain"`` (two 3x3 conv-BN-ReLU) or ``"residual"`` (pre-activation residual unit), used in
            encoder and decoder.
        downsampling: ``"maxpool"`` (2x2 max-pool before a level's block) or ``"stride"`` (the residual unit's
            first conv has stride 2; residual blocks only).
        skip_attention: Gate each skip with a spatial-attention map before concatenating it.
    """

    name: str
    change: str
    widths: tuple[int, ...] = (64, 128, 256, 512, 1024)
    block: str = "plain"
    downsampling: str = "maxpool"
    skip_attention: bool = False

    def __post_init__(self):
        if len(self.widths) < 2 or min(self.widths) < 1:
            raise ValueError(f"{self.name}: widths needs at least 2 positive entries, got {self.widths}")
        if self.block not in CONV_BLOCKS:
            raise ValueError(f"{self.name}: block must be one of {CONV_BLOCKS}, got {self.block!r}")
        if self.downsampling not in DOWNSAMPLING:
            raise ValueError(f"{self.name}: downsampling must be one of {DOWNSAMPLING}, got {self.downsampling!r}")
        if self.block == "plain" and self.downsampling == "stride":
            raise ValueError(f"{self.name}: strided downsampling needs block='residual', got block={self.block!r}")


class ConvUNetEncoder(nn.Module):
    """One conv unit per level, each level (but the first) at half the resolution of the one above.

    Attributes:
        feature_names: ``level0`` .. ``levelN``, shallowest first.
        output_channels: Their widths (``config.widths``).
        strides: Their downsampling factors: 1, 2, 4, ...
    """

    def __init__(self, input_channels: int, config: ConvUNetConfig):
        super().__init__()
        levels = []
        for index, width in enumerate(config.widths):
            in_channels = config.widths[index - 1] if index else input_channels
            if config.block == "plain":
                unit = double_conv(in_channels, width)
            else:
                stride = 2 if index and config.downsampling == "stride" else 1
                # The first unit sees the raw image: no BN-ReLU before its first conv (as in the paper).
                unit = ResidualUnit(in_channels, width, stride, preactivate=index > 0)
            pooled = index > 0 and config.downsampling == "maxpool"
            levels.append(nn.Sequential(nn.MaxPool2d(2), unit) if pooled else unit)
        self.levels = nn.ModuleList(levels)
        self.feature_names = tuple(f"level{i}" for i in range(len(config.widths)))
        self.output_channels = tuple(config.widths)
        self.strides = tuple(2 ** i for i in range(len(config.widths)))

    def forward(self, x: torch.Tensor) -> dict[str, torch.Tensor]:
        features = {}
        for name, level in zip(self.feature_names, self.levels):
            x = level(x)
            features[name] = x
        return features


class ConvUNet(SegmentationNetwork):
    """A plain-conv U-Net configured by a :class:`ConvUNetConfig`, with nnU-Net's network contract.

    Args:
        input_channels: Image channels.
        num_classes: Segmentation outputs.
        config: The variant to build.
        deep_supervision: Return one output per decoder stage, full resolution first.

    Shapes:
        As :class:`nnunetv2_resunet.base.SegmentationNetwork`; ``output_strides`` are 1, 2, 4, ... (one per
        decoder stage).
    """

    def __init__(self, input_channels: int, num_classes: int, config: ConvUNetConfig, deep_supervision: bool = False):
        super().__init__(input_channels, num_classes, config)
        self.encoder = ConvUNetEncoder(input_channels, config)
        block: BlockFactory = double_conv if config.block == "plain" else ResidualUnit
        self.decoder = UNetDecoder(self.encoder, num_classes, deep_supervision, skips=self.encoder.feature_names[:-1],
                                   widths=config.widths[:-1], block=block, skip_attention=config.skip_attention)
