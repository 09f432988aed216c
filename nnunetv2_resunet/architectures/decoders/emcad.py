"""The EMCAD decoder (Rahman et al., CVPR 2024; ``lib/decoders.py`` and the heads of ``lib/networks.py``).

Per stage, deepest first: a multi-scale convolutional attention module (MSCAM: channel attention CAB, spatial
attention SAB, multi-scale convolution block MSCB); towards the next finer level an efficient up-convolution block
(EUCB: nearest 2x upsampling, 3x3 depth-wise conv-BN-ReLU, 1x1 conv), a large-kernel grouped attention gate (LGAG)
on the skip, and additive aggregation. One SAB is shared by all stages, as in the official code. Each stage has a
1x1 prediction head (``out_head1`` .. ``out_head4`` there, ``seg_layers`` here, deepest first).

Activations as the authors ran EMCAD on Synapse: ``train_synapse.py`` and ``test_synapse.py`` build ``EMCADNet``
with ``--activation_mscb relu6``, which reaches the MSCBs only (the 1x1 expansion and the depth-wise convolutions);
EUCB, LGAG and CAB keep their ReLU default.

Heads and outputs: the official network upsamples every head's logits bilinearly to full resolution and trains on
all 15 sums of subsets of them (MUTATION); its Synapse and ACDC evaluation (``utils/utils.py``,
``test_single_volume``) predicts with ``P[-1]`` alone, the stride-4 head (``out_head1``) upsampled 4x. Under
nnU-Net the full-resolution output is that upsampled stride-4 head (with deep supervision off it is the only output,
so nnU-Net predicts as EMCAD's evaluation does), and deep supervision adds the heads at strides 4, 8 and 16, which
nnU-Net's loss pairs with downsampled targets. The 1/32 head (``out_head4``) is built, so that the state dict is
the official one, but feeds no output: the official prediction ignores it, nnU-Net gives its lowest-resolution
output weight 0 anyway, and at 1/32 a patch under 16 pixels would have no target pixel (every network here keeps
its deep-supervision strides at 16 or below). Module names and the official ``'normal'`` initialisation (convs
N(0, 0.02), BatchNorm 1 and 0) follow ``lib/decoders.py``.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import nn


def channel_shuffle(x: torch.Tensor, groups: int) -> torch.Tensor:
    """ShuffleNet's channel shuffle, as the official code applies it (with ``groups`` = channels it is a no-op)."""
    b, c, h, w = x.shape
    return x.view(b, groups, c // groups, h, w).transpose(1, 2).reshape(b, c, h, w)


def conv_bn(in_channels: int, out_channels: int, kernel_size: int = 1, groups: int = 1, bias: bool = False,
            activation: type[nn.Module] | None = nn.ReLU) -> nn.Sequential:
    """Conv-BN, then ``activation`` (in place) unless it is None."""
    layers = [nn.Conv2d(in_channels, out_channels, kernel_size, 1, kernel_size // 2, groups=groups, bias=bias),
              nn.BatchNorm2d(out_channels)]
    return nn.Sequential(*layers, *([activation(inplace=True)] if activation is not None else []))


class MSDC(nn.Module):
    """Multi-scale depth-wise convolution: one depth-wise conv-BN-activation per kernel size, in parallel."""

    def __init__(self, channels: int, kernel_sizes: Sequence[int], activation: type[nn.Module] = nn.ReLU6):
        super().__init__()
        self.dwconvs = nn.ModuleList(conv_bn(channels, channels, k, groups=channels, activation=activation)
                                     for k in kernel_sizes)

    def forward(self, x: torch.Tensor) -> list[torch.Tensor]:
        return [dwconv(x) for dwconv in self.dwconvs]


class MSCB(nn.Module):
    """Multi-scale convolution block: 1x1 expansion, MSDC summed over scales, shuffle, 1x1 projection, residual.

    ``activation``: of the expansion and the depth-wise convolutions (ReLU6 in EMCAD's Synapse configuration)."""

    def __init__(self, channels: int, kernel_sizes: Sequence[int], expansion_factor: int,
                 activation: type[nn.Module] = nn.ReLU6):
        super().__init__()
        expanded = channels * expansion_factor
        self.pconv1 = conv_bn(channels, expanded, activation=activation)
        self.msdc = MSDC(expanded, kernel_sizes, activation)
        self.pconv2 = conv_bn(expanded, channels, activation=None)
        self.shuffle_groups = math.gcd(expanded, channels)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = sum(self.msdc(self.pconv1(x)))
        return x + self.pconv2(channel_shuffle(out, self.shuffle_groups))


class EUCB(nn.Module):
    """Efficient up-convolution block: nearest 2x upsampling, depth-wise 3x3 conv-BN-ReLU, 1x1 conv (with bias)."""

    def __init__(self, in_channels: int, out_channels: int, kernel_size: int = 3):
        super().__init__()
        self.up_dwc = nn.Sequential(nn.Upsample(scale_factor=2),
                                    *conv_bn(in_channels, in_channels, kernel_size, groups=in_channels))
        self.pwc = nn.Sequential(nn.Conv2d(in_channels, out_channels, 1, bias=True))
        self.in_channels = in_channels

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.pwc(channel_shuffle(self.up_dwc(x), self.in_channels))


class LGAG(nn.Module):
    """Large-kernel grouped attention gate: the skip ``x`` gated by ``sigmoid(psi(relu(W_g g + W_x x)))``."""

    def __init__(self, channels: int, kernel_size: int = 3):
        super().__init__()
        inner = channels // 2
        groups = inner if kernel_size > 1 else 1
        self.W_g = conv_bn(channels, inner, kernel_size, groups=groups, bias=True, activation=None)
        self.W_x = conv_bn(channels, inner, kernel_size, groups=groups, bias=True, activation=None)
        self.psi = nn.Sequential(nn.Conv2d(inner, 1, 1, bias=True), nn.BatchNorm2d(1), nn.Sigmoid())
        self.activation = nn.ReLU(inplace=True)

    def forward(self, g: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
        return x * self.psi(self.activation(self.W_g(g) + self.W_x(x)))


class CAB(nn.Module):
    """Channel attention block: a shared two-layer 1x1 MLP on the average- and max-pooled map, sigmoid."""

    def __init__(self, channels: int, ratio: int = 16):
        super().__init__()
        reduced = channels // min(ratio, channels)
        self.fc1 = nn.Conv2d(channels, reduced, 1, bias=False)
        self.fc2 = nn.Conv2d(reduced, channels, 1, bias=False)
        self.activation = nn.ReLU(inplace=True)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        avg = self.fc2(self.activation(self.fc1(F.adaptive_avg_pool2d(x, 1))))
        peak = self.fc2(self.activation(self.fc1(F.adaptive_max_pool2d(x, 1))))
        return torch.sigmoid(avg + peak)


class SAB(nn.Module):
    """Spatial attention block: a 7x7 conv (no bias) over the channel mean and max, sigmoid."""

    def __init__(self, kernel_size: int = 7):
        super().__init__()
        self.conv = nn.Conv2d(2, 1, kernel_size, padding=kernel_size // 2, bias=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        pooled = torch.cat((x.mean(dim=1, keepdim=True), x.amax(dim=1, keepdim=True)), dim=1)
        return torch.sigmoid(self.conv(pooled))


class EMCADDecoder(nn.Module):
    """EMCAD on an encoder with four levels, each at half the resolution of the last (PVTv2: 1/4 .. 1/32).

    Args:
        encoder: Publishes ``feature_names``, ``output_channels``, ``strides``.
        num_classes: Segmentation outputs.
        deep_supervision: Initial value of the flag.
        kernel_sizes: Depth-wise kernels of the MSCBs (1, 3, 5).
        expansion_factor: MSCB expansion (2 in ``EMCADNet``).
        lgag_kernel_size: Kernel of the LGAG convs (3).

    Attributes:
        deep_supervision: Return the full-resolution output (the stride-4 head upsampled) and the heads but the
            deepest at their strides.
        output_strides: ``(1, 4, 8, 16)`` on PVTv2.
    """

    def __init__(self, encoder: nn.Module, num_classes: int, deep_supervision: bool,
                 kernel_sizes: Sequence[int] = (1, 3, 5), expansion_factor: int = 2, lgag_kernel_size: int = 3):
        super().__init__()
        names, channels, strides = encoder.feature_names, encoder.output_channels, encoder.strides
        if len(names) != 4 or any(deep != 2 * shallow for deep, shallow in zip(strides[1:], strides[:-1])):
            raise ValueError(f"EMCAD needs four encoder levels, each at half the resolution of the last, got "
                             f"{tuple(names)} at strides {tuple(strides)}")
        self.deep_supervision = deep_supervision
        self.sources = tuple(reversed(names))  # deepest first, as the official x4, x3, x2, x1
        c = tuple(reversed(channels))
        # Official names: mscbN, eucbN, lgagN, cabN for the stage at level N; an MSCB inside a one-block Sequential
        # (the official MSCBLayer with n=1), so that the state dict reads like the official one.
        self.mscb4 = nn.Sequential(MSCB(c[0], kernel_sizes, expansion_factor))
        for level in (3, 2, 1):
            wide, narrow = c[3 - level], c[4 - level]
            self.add_module(f"eucb{level}", EUCB(wide, narrow))
            self.add_module(f"lgag{level}", LGAG(narrow, lgag_kernel_size))
            self.add_module(f"mscb{level}", nn.Sequential(MSCB(narrow, kernel_sizes, expansion_factor)))
        for level in (4, 3, 2, 1):
            self.add_module(f"cab{level}", CAB(c[4 - level]))
        self.sab = SAB()
        self.apply(_official_init)
        self.seg_layers = nn.ModuleList(nn.Conv2d(width, num_classes, 1) for width in c)
        self.stage_strides = tuple(reversed(strides))
        self.output_strides = (1, *strides[:-1])

    def _attend(self, x: torch.Tensor, level: int) -> torch.Tensor:
        """MSCAM: channel attention, then spatial attention, then the MSCB."""
        x = getattr(self, f"cab{level}")(x) * x
        x = self.sab(x) * x
        return getattr(self, f"mscb{level}")(x)

    def forward(self, features: dict[str, torch.Tensor]) -> list[torch.Tensor] | torch.Tensor:
        x4, *skips = (features[name] for name in self.sources)
        stages = [self._attend(x4, 4)]
        for level, skip in zip((3, 2, 1), skips):
            d = getattr(self, f"eucb{level}")(stages[-1])
            d = d + getattr(self, f"lgag{level}")(g=d, x=skip)
            stages.append(self._attend(d, level))
        # The 1/32 head (seg_layers[0]) feeds no output: EMCAD's evaluation predicts with the last head alone.
        logits = [head(stage) for head, stage in zip(self.seg_layers[1:], stages[1:])]
        size = [s * self.stage_strides[-1] for s in stages[-1].shape[2:]]
        full = F.interpolate(logits[-1], size=size, mode="bilinear")
        if not self.deep_supervision:
            return full
        return [full, *reversed(logits)]


def _official_init(module: nn.Module) -> None:
    """EMCAD's ``_init_weights(scheme='normal')``: convs N(0, 0.02) with zero bias, BatchNorm 1 and 0."""
    if isinstance(module, nn.Conv2d):
        nn.init.normal_(module.weight, std=0.02)
        if module.bias is not None:
            nn.init.zeros_(module.bias)
    elif isinstance(module, nn.BatchNorm2d):
        nn.init.ones_(module.weight)
        nn.init.zeros_(module.bias)
