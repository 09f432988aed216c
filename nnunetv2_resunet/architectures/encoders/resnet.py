"""The ResNet encoder with torchvision's module names, so that a torchvision ResNet state dict loads by name.

ResNet-18/34 use :class:`BasicBlock`, ResNet-50/101/152 :class:`Bottleneck`; ``RESNET_ENCODERS`` holds the five
depths as the arguments that select them. Two of the ResUnet fixes are switches here: ``stem_maxpool`` (fix 1
removes it) and ``tail_convs`` (fix 3a: 3x3 conv-BN-ReLU appended to layer4).
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn

from nnunetv2_resunet.architectures.building_blocks import BasicBlock, Bottleneck, conv_bn_relu

# The encoder's residual blocks, by the name a config gives.
RESNET_BLOCKS = {"basic": BasicBlock, "bottleneck": Bottleneck}

# torchvision's ResNets: residual block and blocks per layer.
RESNET_ENCODERS: dict[int, dict[str, object]] = {
    18: {"block": "basic", "blocks": (2, 2, 2, 2)},
    34: {"block": "basic", "blocks": (3, 4, 6, 3)},
    50: {"block": "bottleneck", "blocks": (3, 4, 6, 3)},
    101: {"block": "bottleneck", "blocks": (3, 4, 23, 3)},
    152: {"block": "bottleneck", "blocks": (3, 8, 36, 3)},
}

# Features the encoder returns, shallowest first. "stem" is the output of conv1/bn1/relu (stride 2).
RESNET_FEATURES = ("stem", "layer1", "layer2", "layer3", "layer4")


def resnet_encoder(depth: int) -> dict[str, object]:
    """The config fields of torchvision's ResNet-``depth``, for ``dataclasses.replace``.

    Raises:
        ValueError: ``depth`` is not one of 18, 34, 50, 101, 152.
    """
    if depth not in RESNET_ENCODERS:
        raise ValueError(f"ResNet depth must be one of {tuple(RESNET_ENCODERS)}, got {depth}")
    return dict(RESNET_ENCODERS[depth])


class ResNetEncoder(nn.Module):
    """ResNet encoder with torchvision's names, returning the features of the stem and of every layer.

    Args:
        input_channels: Image channels (``conv1`` takes them).
        blocks: Residual blocks per layer (ResNet-34: 3, 4, 6, 3).
        widths: Nominal widths (torchvision's ``planes``) of layer1 .. layer4; a layer outputs
            ``width * expansion`` channels (1 for BasicBlock, 4 for Bottleneck).
        block: ``"basic"`` or ``"bottleneck"``.
        stem_width: Output channels of the 7x7 stride-2 stem.
        stem_maxpool: Keep the stem's 3x3 stride-2 max-pool.
        tail_convs: 3x3 conv-BN-ReLU appended to layer4, at layer4's nominal width (for Bottleneck encoders the
            first of them also compresses 2048 channels to it).

    Attributes:
        feature_names: ``stem``, ``layer1`` .. ``layer4``.
        output_channels: Channels of the returned features (layer4's after the tail).
        strides: Their downsampling factor relative to the input.
    """

    def __init__(self, input_channels: int, blocks: Sequence[int], widths: Sequence[int], block: str = "basic",
                 stem_width: int = 64, stem_maxpool: bool = True, tail_convs: int = 0):
        super().__init__()
        if len(blocks) != 4 or len(widths) != 4:
            raise ValueError(f"blocks and widths need 4 entries (layer1..layer4), got {tuple(blocks)}, {tuple(widths)}")
        if block not in RESNET_BLOCKS:
            raise ValueError(f"block must be one of {tuple(RESNET_BLOCKS)}, got {block!r}")
        self.conv1 = nn.Conv2d(input_channels, stem_width, 7, stride=2, padding=3, bias=False)
        self.bn1 = nn.BatchNorm2d(stem_width)
        self.relu = nn.ReLU(inplace=True)
        self.maxpool = nn.MaxPool2d(3, stride=2, padding=1) if stem_maxpool else nn.Identity()
        layer_strides = (1, 2, 2, 2)
        block_class = RESNET_BLOCKS[block]
        in_channels = stem_width
        layer_channels = []
        for index, (n_blocks, planes, stride) in enumerate(zip(blocks, widths, layer_strides), 1):
            out_channels = planes * block_class.expansion
            layer = [block_class(in_channels, planes, stride)]
            layer += [block_class(out_channels, planes) for _ in range(n_blocks - 1)]
            self.add_module(f"layer{index}", nn.Sequential(*layer))
            in_channels = out_channels
            layer_channels.append(out_channels)
        # Fix 3a: the bottleneck enhancement. Not a torchvision module, so it keeps its own initialisation.
        # Its width is layer4's nominal one (512), like every decoder width: for ResNet-18/34 that is layer4's own
        # width; for ResNet-50+ the first conv compresses 2048 -> 512 (at 2048 wide the two convs would be 75M
        # parameters, more than the rest of the network).
        tail_widths = [in_channels] + [widths[-1]] * tail_convs
        self.tail = nn.Sequential(*[conv_bn_relu(a, b) for a, b in zip(tail_widths[:-1], tail_widths[1:])])
        if tail_convs:
            layer_channels[-1] = widths[-1]

        layer1_stride = 4 if stem_maxpool else 2
        self.output_channels = (stem_width, *layer_channels)
        self.strides = (2, layer1_stride, layer1_stride * 2, layer1_stride * 4, layer1_stride * 8)
        self.feature_names = RESNET_FEATURES

    def forward(self, x: torch.Tensor) -> dict[str, torch.Tensor]:
        stem = self.relu(self.bn1(self.conv1(x)))
        layer1 = self.layer1(self.maxpool(stem))
        layer2 = self.layer2(layer1)
        layer3 = self.layer3(layer2)
        layer4 = self.tail(self.layer4(layer3))
        return {"stem": stem, "layer1": layer1, "layer2": layer2, "layer3": layer3, "layer4": layer4}
