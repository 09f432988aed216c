"""The UNet++ decoder (Zhou et al., 2018) on any encoder that publishes its features.

Deep supervision: the nested heads X0_1 .. X0_4 all sit at the finest resolution, so every output is at full
resolution (``output_strides`` all 1; nnU-Net's target downsampling passes scale 1 through unchanged), ordered X0_4
(the full model, the only output with deep supervision off) first down to X0_1. nnU-Net's loss weights (1, 1/2,
1/4, ... with the last set to 0, normalised) then apply to the nested heads in that order.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn

from nnunetv2_resunet.architectures.building_blocks import BlockFactory, DecoderStage, double_conv
from nnunetv2_resunet.architectures.decoders.staged import check_encoder


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
        check_encoder(encoder, skips, widths)
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
