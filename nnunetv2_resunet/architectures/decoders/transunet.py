"""TransUNet's cascaded upsampler (Chen et al., 2021; ``DecoderCup`` in ``networks/vit_seg_modeling.py``).

The transformer's 1/16 tokens, reshaped to a map, go through a 3x3 conv-BN-ReLU to 512 channels
(``conv_more``), then four decoder blocks, each a bilinear 2x upsampling (``nn.UpsamplingBilinear2d``:
corner-aligned), concatenation with a skip and two 3x3 conv-BN-ReLU, to 256, 128, 64 and 16 channels. The first
three blocks fuse the encoder's skips (1/8, 1/4, 1/2: ``n_skip = 3``); the last has none (a skip of width 0). The
official segmentation head is a 3x3 conv on the 16-channel full-resolution map.

For nnU-Net's deep supervision each of the first three blocks gets a 1x1 head as well (nnU-Net's kind of head), so
the outputs have strides 1, 2, 4, 8; with deep supervision off the network is the official one. Heads live in
``seg_layers`` (nnU-Net does not transfer them with ``-pretrained_weights``).
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn


def conv2d_relu(in_channels: int, out_channels: int) -> nn.Sequential:
    """TransUNet's ``Conv2dReLU`` with batch norm: 3x3 conv (no bias), BatchNorm, ReLU."""
    return nn.Sequential(nn.Conv2d(in_channels, out_channels, 3, padding=1, bias=False),
                         nn.BatchNorm2d(out_channels), nn.ReLU(inplace=True))


class TransUNetBlock(nn.Module):
    """TransUNet's ``DecoderBlock``: bilinear 2x upsampling (corners aligned), concat the skip, two conv-BN-ReLU."""

    def __init__(self, in_channels: int, out_channels: int, skip_channels: int):
        super().__init__()
        self.conv1 = conv2d_relu(in_channels + skip_channels, out_channels)
        self.conv2 = conv2d_relu(out_channels, out_channels)
        self.up = nn.UpsamplingBilinear2d(scale_factor=2)
        self.skip_channels = skip_channels
        self.out_channels = out_channels

    def forward(self, x: torch.Tensor, skip: torch.Tensor | None) -> torch.Tensor:
        x = self.up(x)
        if skip is not None:
            x = torch.cat((x, skip), dim=1)
        return self.conv2(self.conv1(x))


class TransUNetDecoder(nn.Module):
    """TransUNet's decoder on any encoder whose levels halve the resolution down to the deepest feature.

    Args:
        encoder: Publishes ``feature_names``, ``output_channels``, ``strides`` (the deepest feature is the
            transformer's map; the shallower ones are the skips, deepest first from the decoder's view).
        num_classes: Segmentation outputs.
        deep_supervision: Initial value of the flag.
        head_channels: Width of ``conv_more`` (512).
        decoder_channels: Output width of each decoder block (256, 128, 64, 16).
        n_skip: How many blocks fuse a skip, from the deepest (3).

    Attributes:
        deep_supervision: Return one output per block (full resolution first) instead of the final one.
        output_strides: Stride of each output, full resolution first.
    """

    def __init__(self, encoder: nn.Module, num_classes: int, deep_supervision: bool, head_channels: int = 512,
                 decoder_channels: Sequence[int] = (256, 128, 64, 16), n_skip: int = 3):
        super().__init__()
        names, channels, strides = encoder.feature_names, encoder.output_channels, encoder.strides
        if any(deep != 2 * shallow for deep, shallow in zip(strides[1:], strides[:-1])) or \
                strides[-1] != 2 ** len(decoder_channels):
            raise ValueError(f"TransUNet's decoder doubles the resolution {len(decoder_channels)} times: it needs "
                             f"encoder strides halving down to {2 ** len(decoder_channels)}, got {tuple(strides)}")
        if not 0 <= n_skip <= len(names) - 1:
            raise ValueError(f"n_skip must be between 0 and {len(names) - 1} (the encoder's skips), got {n_skip}")
        self.deep_supervision = deep_supervision
        self.deepest = names[-1]
        self.conv_more = conv2d_relu(channels[-1], head_channels)
        skip_levels = list(range(len(names) - 2, -1, -1))[:n_skip]  # the skips, deepest first
        self.skip_sources = tuple(names[level] for level in skip_levels) + (None,) * (len(decoder_channels) - n_skip)
        skip_widths = [channels[level] for level in skip_levels] + [0] * (len(decoder_channels) - n_skip)
        in_widths = [head_channels, *decoder_channels[:-1]]
        self.blocks = nn.ModuleList(TransUNetBlock(i, o, s) for i, o, s in zip(in_widths, decoder_channels,
                                                                                    skip_widths))
        # The official 3x3 head on the last block, 1x1 heads (nnU-Net's) on the others; all always built.
        heads = [nn.Conv2d(width, num_classes, 1) for width in decoder_channels[:-1]]
        heads.append(nn.Conv2d(decoder_channels[-1], num_classes, 3, padding=1))
        self.seg_layers = nn.ModuleList(heads)
        self.output_strides = tuple(2 ** i for i in range(len(decoder_channels)))

    def forward(self, features: dict[str, torch.Tensor]) -> list[torch.Tensor] | torch.Tensor:
        x = self.conv_more(features[self.deepest])
        block_outputs = []
        for block, source in zip(self.blocks, self.skip_sources):
            x = block(x, features[source] if source is not None else None)
            block_outputs.append(x)
        if not self.deep_supervision:
            return self.seg_layers[-1](x)
        return [head(out) for head, out in zip(reversed(self.seg_layers), reversed(block_outputs))]
