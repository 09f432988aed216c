"""Plain-conv U-Nets without a ResNet backbone: the classic U-Net and the residual-unit "ResUNet".

One configurable network, :class:`ConvUNet`, configured by a frozen :class:`ConvUNetConfig`; the named variants
are rows in ``configs/comparisons.py`` (``PLAIN_UNETS``).

- Classic U-Net (Ronneberger et al., 2015): two 3x3 convs per level, 64 to 1024 channels, 2x2 max-pool down,
  2x2 transposed conv up. Convs are padded (nnU-Net needs output size = input size) and followed by BatchNorm,
  as in most re-implementations and in nnU-Net's own PlainConvUNet (which uses instance norm).
- Residual U-Net (Zhang et al., 2018, road extraction; the "ResUNet" of many medical papers): full
  pre-activation residual units in encoder and decoder, downsampling by a stride-2 conv, 64 to 512 channels.
  ``skip_attention`` gates every skip with a spatial-attention map (channel mean and max, 7x7 conv, sigmoid).

The encoder is ``encoders/conv.py``'s; the decoder is ``decoders/unet.py``'s, shared with the ResNet family;
padding, cropping and the memory estimate come from ``base.SegmentationNetwork``.
"""

from __future__ import annotations

from dataclasses import dataclass

from nnunetv2_resunet.architectures.base import SegmentationNetwork
from nnunetv2_resunet.architectures.building_blocks import BlockFactory, ResidualUnit, double_conv
from nnunetv2_resunet.architectures.decoders.unet import UNetDecoder
from nnunetv2_resunet.architectures.encoders.conv import CONV_BLOCKS, DOWNSAMPLING, ConvUNetEncoder


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


class ConvUNet(SegmentationNetwork):
    """A plain-conv U-Net configured by a :class:`ConvUNetConfig`, with nnU-Net's network contract.

    Args:
        input_channels: Image channels.
        num_classes: Segmentation outputs.
        config: The variant to build.
        deep_supervision: Return one output per decoder stage, full resolution first.

    Shapes:
        As :class:`nnunetv2_resunet.architectures.base.SegmentationNetwork`; ``output_strides`` are 1, 2, 4, ...
        (one per decoder stage).
    """

    def __init__(self, input_channels: int, num_classes: int, config: ConvUNetConfig, deep_supervision: bool = False):
        super().__init__(input_channels, num_classes, config)
        self.encoder = ConvUNetEncoder(input_channels, config.widths, config.block, config.downsampling)
        block: BlockFactory = double_conv if config.block == "plain" else ResidualUnit
        self.decoder = UNetDecoder(self.encoder, num_classes, deep_supervision, skips=self.encoder.feature_names[:-1],
                                   widths=config.widths[:-1], block=block, skip_attention=config.skip_attention)
