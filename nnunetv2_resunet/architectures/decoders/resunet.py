"""The ResUnet decoder: one "upsample, concatenate, two 3x3 conv-BN-ReLU" stage per skip level, deepest first.

Unlike the classic U-Net decoder, the upsampler into a stage and the stage's output have widths of their own (the
ladder's fix 3b/3c are the stage widths), and a level without a skip keeps its stage (a skip of width 0).
"""

from __future__ import annotations

from collections.abc import Sequence

from torch import nn

from nnunetv2_resunet.architectures.building_blocks import DecoderStage
from nnunetv2_resunet.architectures.decoders.staged import StagedDecoder, check_encoder


class ResUnetDecoder(StagedDecoder):
    """Decoder stages from the deepest skip to full resolution, with a 1x1 segmentation head per stage.

    Args:
        encoder: Publishes ``feature_names``, ``output_channels``, ``strides``.
        num_classes: Segmentation outputs.
        deep_supervision: Initial value of the flag.
        skips: Features concatenated into their stage.
        stage_widths: Output width of the stage at each feature level but the deepest, deepest first (ResNet:
            the stages fusing layer3, layer2, layer1, stem).
        up_widths: Width the upsampler into each of those stages maps to, deepest first.
        final_width: Width of the skip-less full-resolution stage (built when the shallowest feature is at a
            stride > 1).

    Attributes:
        deep_supervision: Return one output per stage (full resolution first) instead of the full-resolution one.
        output_strides: Downsampling factor of each output relative to the input, full resolution first.
    """

    def __init__(self, encoder: nn.Module, num_classes: int, deep_supervision: bool, skips: Sequence[str],
                 stage_widths: Sequence[int], up_widths: Sequence[int], final_width: int = 32):
        names, channels, strides = encoder.feature_names, encoder.output_channels, encoder.strides
        check_encoder(encoder, skips, stage_widths)
        check_encoder(encoder, skips, up_widths)
        super().__init__(names[-1], deep_supervision)
        levels = range(len(names) - 2, -1, -1)  # the skip levels, deepest first
        stages, in_channels = [], channels[-1]
        for level, up_width, out_width in zip(levels, up_widths, stage_widths):
            skip_channels = channels[level] if names[level] in skips else 0
            scale = strides[level + 1] // strides[level]
            stages.append(DecoderStage(in_channels, up_width, skip_channels, out_width, scale))
            in_channels = out_width
        sources, stage_strides = [names[level] for level in levels], [strides[level] for level in levels]
        if strides[0] > 1:
            stages.append(DecoderStage(in_channels, final_width, 0, final_width, strides[0]))
            sources.append(None)
            stage_strides.append(1)
        self.stages = nn.ModuleList(stages)
        self.skip_sources = tuple(sources)
        self._build_heads(num_classes, stage_strides)
