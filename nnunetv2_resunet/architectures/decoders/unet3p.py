"""The UNet3+ decoder (Huang et al., 2020) on any encoder that publishes its features: full-scale skips."""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import nn

from nnunetv2_resunet.architectures.building_blocks import DecoderStage, conv_bn_relu
from nnunetv2_resunet.architectures.decoders.staged import check_encoder


class FullScaleStage(nn.Module):
    """One UNet3+ decoder stage: every source resampled to this level, 3x3 conv-BN-ReLU to ``cat_width``, concat,
    one 3x3 conv-BN-ReLU. Shallower sources are max-pooled, deeper ones bilinearly upsampled (as in UNet3+).

    Args:
        sources: ``(key, channels, factor)`` per source; factor > 0 downsamples by it, < 0 upsamples by -factor,
            1 keeps the resolution.
        cat_width: Width each source is mapped to.
    """

    def __init__(self, sources: Sequence[tuple[str, int, int]], cat_width: int):
        super().__init__()
        self.keys = tuple(key for key, _, _ in sources)
        self.factors = tuple(factor for _, _, factor in sources)
        self.convs = nn.ModuleList(conv_bn_relu(channels, cat_width) for _, channels, _ in sources)
        self.out_channels = cat_width * len(sources)
        self.fuse = conv_bn_relu(self.out_channels, self.out_channels)

    def forward(self, tensors: dict[str, torch.Tensor]) -> torch.Tensor:
        resampled = []
        for key, factor, conv in zip(self.keys, self.factors, self.convs):
            x = tensors[key]
            if factor > 1:
                x = F.max_pool2d(x, factor, factor, ceil_mode=True)
            elif factor < -1:
                x = F.interpolate(x, scale_factor=-factor, mode="bilinear", align_corners=False)
            resampled.append(conv(x))
        return self.fuse(torch.cat(resampled, dim=1))


class UNet3PlusDecoder(nn.Module):
    """UNet3+ (Huang et al., 2020): full-scale skips, every decoder stage fuses every encoder level at or above
    it and every decoder stage below it, one head per stage.

    Stage widths follow the paper: each source is mapped to ``cat_width`` (64) and the stage is ``cat_width``
    times its number of sources (320 with five levels). A level not in ``skips`` contributes no encoder source.
    Outputs are at each stage's own stride (nnU-Net downsamples the targets; the paper upsamples the logits).

    Args:
        encoder: Publishes ``feature_names``, ``output_channels``, ``strides``.
        num_classes: Segmentation outputs.
        deep_supervision: Return one output per stage, full resolution first.
        skips: Encoder features used as full-scale skips.
        cat_width: Width every source is mapped to.
        final_width: Width of the skip-less full-resolution stage (only where the shallowest level has stride > 1).
    """

    def __init__(self, encoder: nn.Module, num_classes: int, deep_supervision: bool, skips: Sequence[str],
                 cat_width: int = 64, final_width: int = 32):
        super().__init__()
        names, channels, strides = encoder.feature_names, encoder.output_channels, encoder.strides
        check_encoder(encoder, skips)
        self.deep_supervision = deep_supervision
        self.names = tuple(names)
        depth = len(names) - 1
        widths = {f"d{depth}": channels[depth]}
        stages, stage_strides = [], []
        for level in reversed(range(depth)):
            sources = [(f"e{k}", channels[k], strides[level] // strides[k]) for k in range(level + 1)
                       if names[k] in skips]
            sources += [(f"d{k}", widths[f"d{k}"], -(strides[k] // strides[level]))
                        for k in range(level + 1, depth + 1)]
            stage = FullScaleStage(sources, cat_width)
            widths[f"d{level}"] = stage.out_channels
            stages.append(stage)
            stage_strides.append(strides[level])
        self.stages = nn.ModuleList(stages)
        self.final = DecoderStage(widths["d0"], final_width, 0, final_width, strides[0]) if strides[0] > 1 else None
        head_widths = [stage.out_channels for stage in stages]
        if self.final is not None:
            head_widths.append(final_width)
            stage_strides.append(1)
        # Deepest stage first, as the stages; all built whatever the flag.
        self.seg_layers = nn.ModuleList(nn.Conv2d(width, num_classes, 1) for width in head_widths)
        self.output_strides = tuple(reversed(stage_strides))

    def forward(self, features: dict[str, torch.Tensor]) -> list[torch.Tensor] | torch.Tensor:
        depth = len(self.names) - 1
        tensors = {f"e{k}": features[name] for k, name in enumerate(self.names)}
        tensors[f"d{depth}"] = tensors[f"e{depth}"]
        outputs = []
        for level, stage in zip(reversed(range(depth)), self.stages):
            tensors[f"d{level}"] = stage(tensors)
            outputs.append(tensors[f"d{level}"])
        if self.final is not None:
            outputs.append(self.final(tensors["d0"], None))
        if not self.deep_supervision:
            return self.seg_layers[-1](outputs[-1])
        return [head(out) for head, out in zip(reversed(self.seg_layers), reversed(outputs))]
