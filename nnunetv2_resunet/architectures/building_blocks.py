"""Layers shared by every network of the family: conv units, ResNet blocks, the decoder stage, skip gating.

They live apart from the networks so that every encoder (``encoders/``), decoder (``decoders/``) and network
family builds on one copy of each. The ResNet blocks keep
torchvision's parameter names (``conv1``, ``bn1``, ..., ``downsample.0/1``) so ImageNet state dicts load by name.
"""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch import nn

# Builds the conv unit of a decoder stage (or an encoder level) from its input and output width.
BlockFactory = Callable[[int, int], nn.Module]


def conv_bn_relu(in_channels: int, out_channels: int) -> nn.Sequential:
    """3x3 conv (no bias) -> BatchNorm -> ReLU, resolution kept."""
    return nn.Sequential(
        nn.Conv2d(in_channels, out_channels, 3, padding=1, bias=False),
        nn.BatchNorm2d(out_channels),
        nn.ReLU(inplace=True),
    )


def double_conv(in_channels: int, out_channels: int) -> nn.Sequential:
    """The U-Net unit: two 3x3 conv-BN-ReLU, the first mapping ``in_channels`` to ``out_channels``."""
    return nn.Sequential(conv_bn_relu(in_channels, out_channels), conv_bn_relu(out_channels, out_channels))


def upsampler(in_channels: int, out_channels: int, scale: int) -> nn.Module:
    """A ``scale`` x ``scale`` transposed conv with stride ``scale``, or a 1x1 conv where ``scale`` is 1."""
    if scale > 1:
        return nn.ConvTranspose2d(in_channels, out_channels, scale, stride=scale, bias=False)
    return nn.Conv2d(in_channels, out_channels, 1, bias=False)


class BasicBlock(nn.Module):
    """torchvision's ResNet BasicBlock, with its parameter names (conv1, bn1, conv2, bn2, downsample.0/1).

    Args:
        in_channels: Input width.
        planes: Width of the block (its output is ``planes * expansion`` = ``planes`` wide).
        stride: Stride of the first conv and of the shortcut.
    """

    expansion = 1

    def __init__(self, in_channels: int, planes: int, stride: int = 1):
        super().__init__()
        self.conv1 = nn.Conv2d(in_channels, planes, 3, stride=stride, padding=1, bias=False)
        self.bn1 = nn.BatchNorm2d(planes)
        self.relu = nn.ReLU(inplace=True)
        self.conv2 = nn.Conv2d(planes, planes, 3, padding=1, bias=False)
        self.bn2 = nn.BatchNorm2d(planes)
        self.downsample = None
        if stride != 1 or in_channels != planes:
            self.downsample = nn.Sequential(
                nn.Conv2d(in_channels, planes, 1, stride=stride, bias=False),
                nn.BatchNorm2d(planes),
            )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        identity = x if self.downsample is None else self.downsample(x)
        out = self.relu(self.bn1(self.conv1(x)))
        out = self.bn2(self.conv2(out))
        return self.relu(out + identity)


class Bottleneck(nn.Module):
    """torchvision's ResNet Bottleneck (v1.5: the stride sits on the 3x3 conv), with its parameter names.

    1x1 conv to ``planes``, 3x3 conv (stride here), 1x1 conv to ``planes * 4``; conv1/bn1, conv2/bn2, conv3/bn3
    and the shortcut ``downsample.0/1``.

    Args:
        in_channels: Input width.
        planes: Inner width; the output is ``planes * expansion`` wide.
        stride: Stride of the 3x3 conv and of the shortcut.
    """

    expansion = 4

    def __init__(self, in_channels: int, planes: int, stride: int = 1):
        super().__init__()
        out_channels = planes * self.expansion
        self.conv1 = nn.Conv2d(in_channels, planes, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(planes)
        self.conv2 = nn.Conv2d(planes, planes, 3, stride=stride, padding=1, bias=False)
        self.bn2 = nn.BatchNorm2d(planes)
        self.conv3 = nn.Conv2d(planes, out_channels, 1, bias=False)
        self.bn3 = nn.BatchNorm2d(out_channels)
        self.relu = nn.ReLU(inplace=True)
        self.downsample = None
        if stride != 1 or in_channels != out_channels:
            self.downsample = nn.Sequential(
                nn.Conv2d(in_channels, out_channels, 1, stride=stride, bias=False),
                nn.BatchNorm2d(out_channels),
            )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        identity = x if self.downsample is None else self.downsample(x)
        out = self.relu(self.bn1(self.conv1(x)))
        out = self.relu(self.bn2(self.conv2(out)))
        out = self.bn3(self.conv3(out))
        return self.relu(out + identity)


class ResidualUnit(nn.Module):
    """The residual unit of the road-extraction ResUNet (Zhang et al., 2018): full pre-activation.

    ``BN-ReLU-conv3x3(stride)-BN-ReLU-conv3x3`` plus a shortcut (1x1 conv + BN where width or stride change).
    The network's first unit takes the raw image, so it skips the leading BN-ReLU (``preactivate=False``).

    Args:
        in_channels: Input width.
        out_channels: Output width.
        stride: Stride of the first conv and of the shortcut (the ResUNet downsamples this way, not by pooling).
        preactivate: Start with BN-ReLU.
    """

    def __init__(self, in_channels: int, out_channels: int, stride: int = 1, preactivate: bool = True):
        super().__init__()
        pre = [nn.BatchNorm2d(in_channels), nn.ReLU(inplace=False)] if preactivate else []
        self.convs = nn.Sequential(
            *pre,
            nn.Conv2d(in_channels, out_channels, 3, stride=stride, padding=1, bias=False),
            nn.BatchNorm2d(out_channels),
            nn.ReLU(inplace=True),
            nn.Conv2d(out_channels, out_channels, 3, padding=1, bias=False),
        )
        self.shortcut = nn.Identity()
        if stride != 1 or in_channels != out_channels:
            self.shortcut = nn.Sequential(nn.Conv2d(in_channels, out_channels, 1, stride=stride, bias=False),
                                          nn.BatchNorm2d(out_channels))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.convs(x) + self.shortcut(x)


class SpatialAttentionGate(nn.Module):
    """Gate a skip with a spatial map: channel-wise mean and max, a 7x7 conv, a sigmoid (CBAM's spatial attention).

    The two maps are pooled over the skip *and* the upsampled decoder features it is about to be concatenated
    with, so the decoder's context decides where the skip passes (a gate in the sense of Attention U-Net),
    while the map itself is CBAM's: ``skip * sigmoid(conv7x7([mean_c, max_c]))``.
    """

    def __init__(self, kernel_size: int = 7):
        super().__init__()
        self.conv = nn.Conv2d(2, 1, kernel_size, padding=kernel_size // 2)

    def forward(self, skip: torch.Tensor, decoder_features: torch.Tensor) -> torch.Tensor:
        both = torch.cat((skip, decoder_features), dim=1)
        maps = torch.cat((both.mean(dim=1, keepdim=True), both.amax(dim=1, keepdim=True)), dim=1)
        return skip * torch.sigmoid(self.conv(maps))


class DecoderStage(nn.Module):
    """Upsample into the skip's resolution, concatenate the (optionally gated) skip, a conv unit.

    The upsampler is a 2x2 (in general ``scale`` x ``scale``) transposed conv, or a 1x1 conv where the skip has
    the input's resolution already. A stage with ``skip_channels=0`` only upsamples and convolves.

    Args:
        in_channels: Width of the deeper features.
        up_channels: Width the upsampler maps them to.
        skip_channels: Width of the skip (0: none).
        out_channels: Output width.
        scale: Resolution ratio between the deeper features and the skip.
        block: The conv unit after the concatenation (default: two 3x3 conv-BN-ReLU).
        skip_attention: Gate the skip with a :class:`SpatialAttentionGate` before concatenating it.
    """

    def __init__(self, in_channels: int, up_channels: int, skip_channels: int, out_channels: int, scale: int,
                 block: BlockFactory = double_conv, skip_attention: bool = False):
        super().__init__()
        self.up = upsampler(in_channels, up_channels, scale)
        self.skip_channels = skip_channels
        self.out_channels = out_channels
        self.gate = SpatialAttentionGate() if skip_attention and skip_channels else None
        self.convs = block(up_channels + skip_channels, out_channels)

    def forward(self, x: torch.Tensor, skip: torch.Tensor | None) -> torch.Tensor:
        x = self.up(x)
        if self.skip_channels:
            if self.gate is not None:
                skip = self.gate(skip, x)
            x = torch.cat((x, skip), dim=1)
        return self.convs(x)
