"""The classic U-Net decoder on any encoder that publishes its features (also the plain-conv U-Nets' decoder).

Where the shallowest feature is not at full resolution (the ResNet stem is at stride 2), a last skip-less stage
upsamples to full resolution.
"""

from __future__ import annotations

from collections.abc import Sequence

from torch import nn

from nnunetv2_resunet.architectures.building_blocks import BlockFactory, DecoderStage, double_conv
from nnunetv2_resunet.architectures.decoders.staged import StagedDecoder, check_encoder


class UNetDecoder(StagedDecoder):
    """The classic U-Net decoder: per level, a transposed conv to the level's width, concat the skip, a conv unit.

    Args:
        encoder: Publishes ``feature_names``, ``output_channels``, ``strides``.
        num_classes: Segmentation outputs.
        deep_supervision: Initial value of the flag.
        skips: Features concatenated into their stage.
        widths: Width of the stage at each feature level but the deepest (shallowest first). The classic U-Net
            mirrors the encoder (64 .. 512 for 64 .. 1024).
        final_width: Width of the skip-less full-resolution stage (only built when the shallowest feature is at
            a stride > 1).
        block: Conv unit of a stage (two 3x3 conv-BN-ReLU, or a residual unit).
        skip_attention: Gate every skip with a spatial-attention map before concatenating it.
    """

    def __init__(self, encoder: nn.Module, num_classes: int, deep_supervision: bool, skips: Sequence[str],
                 widths: Sequence[int], final_width: int = 32, block: BlockFactory = double_conv,
                 skip_attention: bool = False):
        names, channels, strides = encoder.feature_names, encoder.output_channels, encoder.strides
        check_encoder(encoder, skips, widths)
        super().__init__(names[-1], deep_supervision)
        stages, sources, stage_strides, in_channels = [], [], [], channels[-1]
        for level in reversed(range(len(names) - 1)):
            skip_channels = channels[level] if names[level] in skips else 0
            stages.append(DecoderStage(in_channels, widths[level], skip_channels, widths[level],
                                       strides[level + 1] // strides[level], block, skip_attention))
            sources.append(names[level] if skip_channels else None)
            stage_strides.append(strides[level])
            in_channels = widths[level]
        if strides[0] > 1:
            stages.append(DecoderStage(in_channels, final_width, 0, final_width, strides[0], block))
            sources.append(None)
            stage_strides.append(1)
        self.stages = nn.ModuleList(stages)
        self.skip_sources = tuple(sources)
        self._build_heads(num_classes, stage_strides)
