"""The ResUnet network family: a ResNet encoder and a U-Net decoder, configured by a frozen dataclass.

One configurable 2D network serves every step of the ablation ladder (``nnunetv2_resunet.configs``); a step is
data, never a code path of its own. The encoder keeps torchvision's module names (``conv1``, ``bn1``,
``layer1`` .. ``layer4``) so that a torchvision ResNet state dict loads by name. The decoder derives every width
from what the encoder publishes (``output_channels``, ``strides``) and from the config.

nnU-Net's network contract is honoured: ``input_channels`` / ``num_classes`` / ``deep_supervision`` keywords,
``decoder.deep_supervision`` as a plain flag with every segmentation head always built (so a checkpoint loads with
the flag on or off), outputs at full resolution first, logits (no softmax), any input size (inputs are padded to
a multiple of the network's stride and every output is cropped back), ``compute_conv_feature_map_size`` for
nnU-Net's memory estimate and a static ``initialize`` (He init) applied by the caller.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from dynamic_network_architectures.initialization.weight_init import InitWeights_He
from torch import nn

# The resolutions the decoder fuses, deepest first. "stem" is the output of conv1/bn1/relu (stride 2).
SKIP_SOURCES = ("layer3", "layer2", "layer1", "stem")


@dataclass(frozen=True)
class ResUnetConfig:
    """One network of the family. Every field is one architectural choice; the ladder changes a few per step.

    Attributes:
        name: Short name of the variant, e.g. ``"v1_0"``.
        change: What this variant changes relative to the one it derives from (one line, for tables).
        blocks: BasicBlocks per ResNet layer (ResNet-34: 3, 4, 6, 3).
        widths: Output channels of layer1 .. layer4 (ResNet: 64, 128, 256, 512).
        stem_width: Output channels of the 7x7 stride-2 stem (``conv1``).
        stem_maxpool: Keep the stem's 3x3 stride-2 max-pool (torchvision's ResNet has it; fix 1 removes it).
        skips: Which of ``SKIP_SOURCES`` are concatenated into their decoder stage. A source not listed is a skip
            of width 0: its stage still exists and upsamples, it just fuses nothing.
        bottleneck_convs: Number of 3x3 conv-BN-ReLU (width ``widths[-1]``) appended to the encoder tail (fix 3a).
        decoder_widths: Output width of the decoder stages that fuse layer3, layer2, layer1 and the stem.
        final_width: Width of the full-resolution stage after the stem's stage.
        imagenet_init: Initialise the encoder from a local torchvision ImageNet checkpoint (see ``pretrained``).
    """

    name: str
    change: str
    blocks: tuple[int, ...] = (3, 4, 6, 3)
    widths: tuple[int, ...] = (64, 128, 256, 512)
    stem_width: int = 64
    stem_maxpool: bool = True
    skips: tuple[str, ...] = SKIP_SOURCES
    bottleneck_convs: int = 0
    decoder_widths: tuple[int, int, int, int] = (256, 192, 96, 64)
    final_width: int = 32
    imagenet_init: bool = False

    def __post_init__(self):
        if len(self.blocks) != 4 or len(self.widths) != 4:
            raise ValueError(f"{self.name}: blocks and widths need 4 entries (layer1..layer4), got "
                             f"blocks={self.blocks}, widths={self.widths}")
        unknown = set(self.skips) - set(SKIP_SOURCES)
        if unknown:
            raise ValueError(f"{self.name}: unknown skip sources {sorted(unknown)}; choose from {SKIP_SOURCES}")
        if len(self.decoder_widths) != len(SKIP_SOURCES):
            raise ValueError(f"{self.name}: decoder_widths needs {len(SKIP_SOURCES)} entries "
                             f"({', '.join(SKIP_SOURCES)}), got {self.decoder_widths}")


def conv_bn_relu(in_channels: int, out_channels: int) -> nn.Sequential:
    """3x3 conv (no bias) -> BatchNorm -> ReLU, resolution kept."""
    return nn.Sequential(
        nn.Conv2d(in_channels, out_channels, 3, padding=1, bias=False),
        nn.BatchNorm2d(out_channels),
        nn.ReLU(inplace=True),
    )


class BasicBlock(nn.Module):
    """torchvision's ResNet BasicBlock, with its parameter names (conv1, bn1, conv2, bn2, downsample.0/1)."""

    def __init__(self, in_channels: int, out_channels: int, stride: int = 1):
        super().__init__()
        self.conv1 = nn.Conv2d(in_channels, out_channels, 3, stride=stride, padding=1, bias=False)
        self.bn1 = nn.BatchNorm2d(out_channels)
        self.relu = nn.ReLU(inplace=True)
        self.conv2 = nn.Conv2d(out_channels, out_channels, 3, padding=1, bias=False)
        self.bn2 = nn.BatchNorm2d(out_channels)
        self.downsample = None
        if stride != 1 or in_channels != out_channels:
            self.downsample = nn.Sequential(
                nn.Conv2d(in_channels, out_channels, 1, stride=stride, bias=False),
                nn.BatchNorm2d(out_channels),
            )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        identity = x if self.downsample is None else self.downsample(x)
        out = self.relu(self.bn1(self.conv1(x)))
        out = self.bn2(self.conv2(out))
        # In place, as torchvision does: BN's backward needs its input, not its output, so this saves an allocation.
        out += identity
        return self.relu(out)


class ResNetEncoder(nn.Module):
    """ResNet encoder with torchvision's names, returning the features of the stem and of every layer.

    Attributes:
        output_channels: Channels of the returned features: stem, layer1, layer2, layer3, layer4 (after the tail).
        strides: Their downsampling factor relative to the input.
    """

    def __init__(self, input_channels: int, config: ResUnetConfig):
        super().__init__()
        self.conv1 = nn.Conv2d(input_channels, config.stem_width, 7, stride=2, padding=3, bias=False)
        self.bn1 = nn.BatchNorm2d(config.stem_width)
        self.relu = nn.ReLU(inplace=True)
        self.maxpool = nn.MaxPool2d(3, stride=2, padding=1) if config.stem_maxpool else nn.Identity()
        layer_strides = (1, 2, 2, 2)
        in_channels = config.stem_width
        for index, (n_blocks, width, stride) in enumerate(zip(config.blocks, config.widths, layer_strides), 1):
            blocks = [BasicBlock(in_channels, width, stride)] + [BasicBlock(width, width) for _ in range(n_blocks - 1)]
            self.add_module(f"layer{index}", nn.Sequential(*blocks))
            in_channels = width
        # Fix 3a: the bottleneck enhancement. Not a torchvision module, so it keeps its own initialisation.
        self.tail = nn.Sequential(*[conv_bn_relu(in_channels, in_channels) for _ in range(config.bottleneck_convs)])

        layer1_stride = 4 if config.stem_maxpool else 2
        self.output_channels = (config.stem_width, *config.widths)
        self.strides = (2, layer1_stride, layer1_stride * 2, layer1_stride * 4, layer1_stride * 8)
        self.feature_names = ("stem", "layer1", "layer2", "layer3", "layer4")

    def forward(self, x: torch.Tensor) -> dict[str, torch.Tensor]:
        stem = self.relu(self.bn1(self.conv1(x)))
        layer1 = self.layer1(self.maxpool(stem))
        layer2 = self.layer2(layer1)
        layer3 = self.layer3(layer2)
        layer4 = self.tail(self.layer4(layer3))
        return {"stem": stem, "layer1": layer1, "layer2": layer2, "layer3": layer3, "layer4": layer4}


class DecoderStage(nn.Module):
    """Upsample into the skip's resolution, concatenate the skip, two 3x3 conv-BN-ReLU.

    The upsampler is a 2x2 (in general ``scale`` x ``scale``) transposed conv, or a 1x1 conv where the skip has
    the input's resolution already.
    """

    def __init__(self, in_channels: int, up_channels: int, skip_channels: int, out_channels: int, scale: int):
        super().__init__()
        if scale > 1:
            self.up = nn.ConvTranspose2d(in_channels, up_channels, scale, stride=scale, bias=False)
        else:
            self.up = nn.Conv2d(in_channels, up_channels, 1, bias=False)
        self.skip_channels = skip_channels
        self.convs = nn.Sequential(conv_bn_relu(up_channels + skip_channels, out_channels),
                                   conv_bn_relu(out_channels, out_channels))

    def forward(self, x: torch.Tensor, skip: torch.Tensor | None) -> torch.Tensor:
        x = self.up(x)
        if self.skip_channels:
            x = torch.cat((x, skip), dim=1)
        return self.convs(x)


class ResUnetDecoder(nn.Module):
    """Decoder stages from the deepest skip to full resolution, with a 1x1 segmentation head per stage.

    Attributes:
        deep_supervision: Return one output per stage (full resolution first) instead of the full-resolution one.
        output_strides: Downsampling factor of each output relative to the input, full resolution first.
    """

    def __init__(self, encoder: ResNetEncoder, config: ResUnetConfig, num_classes: int, deep_supervision: bool):
        super().__init__()
        self.deep_supervision = deep_supervision
        channels = dict(zip(encoder.feature_names, encoder.output_channels))
        strides = dict(zip(encoder.feature_names, encoder.strides))
        # The upsampler into a stage maps to the nominal width of the encoder level just below the skip's
        # (512 into layer3's stage, 256 into layer2's, 128 into layer1's, 64 into the stem's).
        deeper = dict(zip(encoder.feature_names[:-1], encoder.feature_names[1:]))

        stages, previous, in_channels = [], "layer4", channels["layer4"]
        for source, out_channels in zip(SKIP_SOURCES, config.decoder_widths):
            skip_channels = channels[source] if source in config.skips else 0
            scale = strides[previous] // strides[source]
            stages.append(DecoderStage(in_channels, channels[deeper[source]], skip_channels, out_channels, scale))
            previous, in_channels = source, out_channels
        # The full-resolution stage has no skip: upsample from the stem's stride to the input's.
        stages.append(DecoderStage(in_channels, config.final_width, 0, config.final_width, strides["stem"]))
        self.stages = nn.ModuleList(stages)
        self.skip_sources = SKIP_SOURCES + (None,)
        # All heads are always built, so the state dict is the same with deep supervision on or off.
        self.seg_layers = nn.ModuleList(
            nn.Conv2d(stage.convs[-1][0].out_channels, num_classes, 1) for stage in self.stages)
        self.output_strides = (1,) + tuple(strides[source] for source in reversed(SKIP_SOURCES))

    def forward(self, features: dict[str, torch.Tensor]) -> list[torch.Tensor] | torch.Tensor:
        x = features["layer4"]
        stage_outputs = []
        for stage, source in zip(self.stages, self.skip_sources):
            x = stage(x, features[source] if source is not None else None)
            stage_outputs.append(x)
        if not self.deep_supervision:
            return self.seg_layers[-1](x)
        # Full resolution first, as nnU-Net's loss and target downsampling expect.
        return [head(out) for head, out in zip(reversed(self.seg_layers), reversed(stage_outputs))]


class ResUnet(nn.Module):
    """ResNet encoder + U-Net decoder for 2D segmentation, configured by a :class:`ResUnetConfig`.

    Args:
        input_channels: Image channels (nnU-Net's number of input modalities).
        num_classes: Segmentation outputs (nnU-Net's ``num_segmentation_heads``).
        config: The variant to build.
        deep_supervision: Return a list of logits, one per decoder stage, full resolution first.

    Shapes:
        input ``(B, input_channels, H, W)`` with any H, W; output ``(B, num_classes, H, W)``, or with deep
        supervision a list whose i-th entry is ``(B, num_classes, round(H / s_i), round(W / s_i))`` with
        ``s_i = output_strides[i]`` (the sizes nnU-Net's target downsampling produces).
    """

    def __init__(self, input_channels: int, num_classes: int, config: ResUnetConfig, deep_supervision: bool = False):
        super().__init__()
        if input_channels < 1 or num_classes < 1:
            raise ValueError(f"input_channels and num_classes must be positive, got {input_channels}, {num_classes}")
        self.config = config
        self.encoder = ResNetEncoder(input_channels, config)
        self.decoder = ResUnetDecoder(self.encoder, config, num_classes, deep_supervision)

    @property
    def output_strides(self) -> tuple[int, ...]:
        """Downsampling factor of each deep-supervision output, full resolution first."""
        return self.decoder.output_strides

    @property
    def total_stride(self) -> int:
        """Inputs are padded to a multiple of this (the encoder's deepest stride)."""
        return self.encoder.strides[-1]

    def forward(self, x: torch.Tensor) -> list[torch.Tensor] | torch.Tensor:
        size = x.shape[2:]
        padded = [-(-s // self.total_stride) * self.total_stride for s in size]
        if list(size) != padded:
            # Pad at the end (bottom/right) so that output pixel i at stride s still covers input pixels [i*s, (i+1)*s).
            x = F.pad(x, (0, padded[1] - size[1], 0, padded[0] - size[0]))
        out = self.decoder(self.encoder(x))
        if list(size) == padded:
            return out
        if not self.decoder.deep_supervision:
            return out[:, :, :size[0], :size[1]]
        return [o[:, :, :round(size[0] * (1 / s)), :round(size[1] * (1 / s))]
                for o, s in zip(out, self.output_strides)]

    def compute_conv_feature_map_size(self, input_size: Sequence[int]) -> int:
        """Elements in the outputs of every conv and transposed conv for one sample of ``input_size`` (H, W).

        The same quantity dynamic_network_architectures' networks estimate, which nnU-Net's planner compares
        against its GPU-memory reference. Measured, not modelled: a forward pass on the meta device (no memory,
        no compute) with hooks on the conv layers, so it stays exact for every config.
        """
        if len(input_size) != 2:
            raise ValueError(f"give the image size (H, W) without batch or channel axes, got {tuple(input_size)}")
        total = 0

        def count(module, inputs, output):
            nonlocal total
            total += output.numel()

        convs = [m for m in self.modules() if isinstance(m, (nn.Conv2d, nn.ConvTranspose2d))]
        handles = [m.register_forward_hook(count) for m in convs]
        meta_state = {k: torch.empty_like(v, device="meta") for k, v in self.state_dict(keep_vars=True).items()}
        try:
            with torch.no_grad():
                x = torch.empty((1, self.encoder.conv1.in_channels, *input_size), device="meta")
                torch.func.functional_call(self, meta_state, (x,))
        finally:
            for handle in handles:
                handle.remove()
        return total

    @staticmethod
    def initialize(module: nn.Module) -> None:
        """He initialisation as nnU-Net's networks use it: ``net.apply(ResUnet.initialize)``."""
        InitWeights_He(1e-2)(module)
