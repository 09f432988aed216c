"""The decoders the family compares: U-Net, UNet++ and UNet3+, on any encoder that publishes its features.

The decoder interface: an encoder returns a dict of features and publishes ``feature_names`` (shallowest first,
the last one is the deepest), ``output_channels`` and ``strides``; a decoder is built from it and returns the
logits, with a ``deep_supervision`` flag (nnU-Net flips it; every head is always built, so a state dict loads
with it on or off) and ``output_strides`` (the stride of each deep-supervision output, full resolution first).
A feature not listed in ``skips`` is a skip of width 0: its stage still exists, it just fuses nothing. Where the
shallowest feature is not at full resolution (the ResNet stem is at stride 2), a last skip-less stage upsamples
to full resolution.

Deep supervision of UNet++: its nested heads X0_1 .. X0_4 all sit at the finest resolution, so every output is
at full resolution (``output_strides`` all 1; nnU-Net's target downsampling passes scale 1 through unchanged),
ordered X0_4 (the full model, the only output with deep supervision off) first down to X0_1. nnU-Net's loss
weights (1, 1/2, 1/4, ... with the last set to 0, normalised) then apply to the nested heads in that order.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import nn

from nnunetv2_resunet.blocks import BlockFactory, DecoderStage, conv_bn_relu, double_conv


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


def _check_encoder(encoder: nn.Module, skips: Sequence[str], widths: Sequence[int] | None = None) -> None:
    """Raise for skips the encoder does not offer, or for widths that are not one per level but the deepest."""
    unknown = set(skips) - set(encoder.feature_names[:-1])
    if unknown:
        raise ValueError(f"skips {sorted(unknown)} are not skip features of the encoder "
                         f"{tuple(encoder.feature_names[:-1])}")
    if widths is not None and len(widths) != len(encoder.feature_names) - 1:
        raise ValueError(f"need {len(encoder.feature_names) - 1} decoder widths for the levels above the deepest "
                         f"of {tuple(encoder.feature_names)}, got {tuple(widths)}")


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
        _check_encoder(encoder, skips, widths)
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


class UNetPlusPlusDecoder(nn.Module):
    """UNet++ (Zhou et al., 2018): nested dense skips, a head on every top node X0_j.

    Node X(i, j) (level i, column j >= 1) upsamples X(i+1, j-1) to the width of level i and fuses it with
    X(i, 0) .. X(i, j-1), where X(i, 0) is the encoder feature. A level not in ``skips`` drops its lateral X(i, 0)
    from the nodes of its level; the feature still feeds X(i-1, 1) from below, which is where the nested pathway
    of the level above starts. Where the shallowest level is not at full resolution, one shared skip-less stage
    brings every top node there.

    Args:
        encoder: Publishes ``feature_names``, ``output_channels``, ``strides``.
        num_classes: Segmentation outputs.
        deep_supervision: Return the heads of X0_depth .. X0_1 (all at full resolution), else X0_depth's.
        skips: Encoder features fused into their level's nodes.
        widths: Width of the nodes of every level but the deepest (shallowest first).
        final_width: Width of the shared full-resolution stage.
        block: Conv unit of a node.
    """

    def __init__(self, encoder: nn.Module, num_classes: int, deep_supervision: bool, skips: Sequence[str],
                 widths: Sequence[int], final_width: int = 32, block: BlockFactory = double_conv):
        super().__init__()
        names, channels, strides = encoder.feature_names, encoder.output_channels, encoder.strides
        _check_encoder(encoder, skips, widths)
        self.deep_supervision = deep_supervision
        self.names = tuple(names)
        self.depth = len(names) - 1
        self.fused = tuple(name in skips for name in names)
        self.nodes = nn.ModuleDict()
        for j in range(1, self.depth + 1):
            for i in range(self.depth - j + 1):
                below = channels[i + 1] if j == 1 else widths[i + 1]
                skip_channels = (channels[i] if self.fused[i] else 0) + (j - 1) * widths[i]
                self.nodes[f"x{i}_{j}"] = DecoderStage(below, widths[i], skip_channels, widths[i],
                                                       strides[i + 1] // strides[i], block)
        self.final = DecoderStage(widths[0], final_width, 0, final_width, strides[0], block) if strides[0] > 1 \
            else None
        head_width = final_width if self.final is not None else widths[0]
        # Heads of X0_depth .. X0_1, in output order; all built whatever the flag.
        self.seg_layers = nn.ModuleList(nn.Conv2d(head_width, num_classes, 1) for _ in range(self.depth))
        self.output_strides = (1,) * self.depth

    def forward(self, features: dict[str, torch.Tensor]) -> list[torch.Tensor] | torch.Tensor:
        nodes = {(i, 0): features[name] for i, name in enumerate(self.names)}
        for j in range(1, self.depth + 1):
            for i in range(self.depth - j + 1):
                same_level = [nodes[(i, k)] for k in range(j) if k > 0 or self.fused[i]]
                skip = torch.cat(same_level, dim=1) if same_level else None
                nodes[(i, j)] = self.nodes[f"x{i}_{j}"](nodes[(i + 1, j - 1)], skip)
        columns = range(self.depth, 0, -1) if self.deep_supervision else (self.depth,)
        outputs = []
        for head, j in zip(self.seg_layers, columns):
            top = nodes[(0, j)] if self.final is None else self.final(nodes[(0, j)], None)
            outputs.append(head(top))
        return outputs if self.deep_supervision else outputs[0]


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
        _check_encoder(encoder, skips)
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
