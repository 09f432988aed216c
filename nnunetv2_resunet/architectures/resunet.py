"""The ResUnet network family: a ResNet encoder and a U-Net decoder, configured by a frozen dataclass.

One configurable 2D network serves every step of the ablation ladder (``nnunetv2_resunet.configs``) and every
ResNet-encoder comparison model (``nnunetv2_resunet.comparisons``); a variant is data, never a code path of its
own. The encoder is a ResNet-18/34/50/101/152 (``block`` and ``blocks``) that keeps torchvision's module names
(``conv1``, ``bn1``, ``layer1`` .. ``layer4``) so that a torchvision ResNet state dict loads by name. The decoder
is chosen by ``decoder`` (the ResUnet decoder, or U-Net, UNet++, UNet3+ from ``nnunetv2_resunet.decoders``) and
derives every width from what the encoder publishes (``output_channels``, ``strides``) and from the config.

Decoder widths for deeper encoders: every decoder is sized by the encoder's *nominal* widths, torchvision's
``planes`` (``stem_width`` and ``widths``: 64, 64, 128, 256, 512), never by the expanded output widths of
Bottleneck layers (256 .. 2048). A ResNet-50 .. 152 therefore gets the same decoder as a ResNet-34; only the
skips it concatenates are wider. For the ResUnet decoder this keeps the ladder's numbers exactly (the upsampler
into a stage maps to the nominal width of the level below the skip; the stage outputs ``decoder_widths``). The
fix-3a tail works at layer4's nominal width too (512; for Bottleneck encoders its first conv compresses 2048).

nnU-Net's network contract is honoured: ``input_channels`` / ``num_classes`` / ``deep_supervision`` keywords,
``decoder.deep_supervision`` as a plain flag with every segmentation head always built (so a checkpoint loads with
the flag on or off), outputs at full resolution first, logits (no softmax), any input size (inputs are padded to
a multiple of the network's stride and every output is cropped back), ``compute_conv_feature_map_size`` for
nnU-Net's memory estimate and a static ``initialize`` (He init) applied by the caller.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

from nnunetv2_resunet.base import SegmentationNetwork
from nnunetv2_resunet.blocks import BasicBlock, Bottleneck, DecoderStage, conv_bn_relu
from nnunetv2_resunet.decoders import StagedDecoder, UNet3PlusDecoder, UNetDecoder, UNetPlusPlusDecoder

# The resolutions the decoder fuses, deepest first. "stem" is the output of conv1/bn1/relu (stride 2).
SKIP_SOURCES = ("layer3", "layer2", "layer1", "stem")
# The encoder's residual blocks, by the name a config gives.
BLOCKS = {"basic": BasicBlock, "bottleneck": Bottleneck}
# The decoders a config can choose: the ResUnet decoder and the comparison decoders.
DECODERS = ("resunet", "unet", "unetpp", "unet3p")


@dataclass(frozen=True)
class ResUnetConfig:
    """One network of the family. Every field is one architectural choice; the ladder changes a few per step.

    Attributes:
        name: Short name of the variant, e.g. ``"v1_0"``.
        change: What this variant changes relative to the one it derives from (one line, for tables).
        blocks: Residual blocks per ResNet layer (ResNet-34: 3, 4, 6, 3).
        widths: Nominal widths (torchvision's ``planes``) of layer1 .. layer4 (ResNet: 64, 128, 256, 512); a
            layer outputs ``width * expansion`` channels (1 for BasicBlock, 4 for Bottleneck).
        stem_width: Output channels of the 7x7 stride-2 stem (``conv1``).
        stem_maxpool: Keep the stem's 3x3 stride-2 max-pool (torchvision's ResNet has it; fix 1 removes it).
        skips: Which of ``SKIP_SOURCES`` are concatenated into their decoder stage. A source not listed is a skip
            of width 0: its stage still exists and upsamples, it just fuses nothing.
        bottleneck_convs: Number of 3x3 conv-BN-ReLU (width ``widths[-1]``) appended to the encoder tail (fix 3a).
            With a Bottleneck encoder the first of them also maps layer4's 2048 channels to that nominal width.
        decoder_widths: Output width of the ResUnet decoder's stages that fuse layer3, layer2, layer1 and the stem
            (only the ``"resunet"`` decoder reads it; the others derive their widths, see the module docstring).
        final_width: Width of the full-resolution stage after the stem's stage.
        imagenet_init: Initialise the encoder from a local torchvision ImageNet checkpoint (see ``pretrained``).
        block: The encoder's residual block, ``"basic"`` (ResNet-18/34) or ``"bottleneck"`` (ResNet-50/101/152).
        decoder: One of ``DECODERS``: ``"resunet"`` (the ladder's), ``"unet"`` (classic U-Net decoder),
            ``"unetpp"`` (UNet++), ``"unet3p"`` (UNet3+).
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
    block: str = "basic"
    decoder: str = "resunet"

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
        if self.block not in BLOCKS:
            raise ValueError(f"{self.name}: block must be one of {tuple(BLOCKS)}, got {self.block!r}")
        if self.decoder not in DECODERS:
            raise ValueError(f"{self.name}: decoder must be one of {DECODERS}, got {self.decoder!r}")

    @property
    def nominal_widths(self) -> tuple[int, ...]:
        """torchvision's ``planes`` of the stem and layer1 .. layer4: what every decoder is sized by."""
        return (self.stem_width, *self.widths)


class ResNetEncoder(nn.Module):
    """ResNet encoder with torchvision's names, returning the features of the stem and of every layer.

    ResNet-18/34 use :class:`BasicBlock`, ResNet-50/101/152 :class:`Bottleneck` (config ``block``).

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
        block = BLOCKS[config.block]
        in_channels = config.stem_width
        layer_channels = []
        for index, (n_blocks, planes, stride) in enumerate(zip(config.blocks, config.widths, layer_strides), 1):
            out_channels = planes * block.expansion
            blocks = [block(in_channels, planes, stride)] + [block(out_channels, planes) for _ in range(n_blocks - 1)]
            self.add_module(f"layer{index}", nn.Sequential(*blocks))
            in_channels = out_channels
            layer_channels.append(out_channels)
        # Fix 3a: the bottleneck enhancement. Not a torchvision module, so it keeps its own initialisation.
        # Its width is layer4's nominal one (512), like every decoder width: for ResNet-18/34 that is layer4's own
        # width; for ResNet-50+ the first conv compresses 2048 -> 512 (at 2048 wide the two convs would be 75M
        # parameters, more than the rest of the network).
        tail_widths = [in_channels] + [config.widths[-1]] * config.bottleneck_convs
        self.tail = nn.Sequential(*[conv_bn_relu(a, b) for a, b in zip(tail_widths[:-1], tail_widths[1:])])
        if config.bottleneck_convs:
            layer_channels[-1] = config.widths[-1]

        layer1_stride = 4 if config.stem_maxpool else 2
        self.output_channels = (config.stem_width, *layer_channels)
        self.strides = (2, layer1_stride, layer1_stride * 2, layer1_stride * 4, layer1_stride * 8)
        self.feature_names = ("stem", "layer1", "layer2", "layer3", "layer4")

    def forward(self, x: torch.Tensor) -> dict[str, torch.Tensor]:
        stem = self.relu(self.bn1(self.conv1(x)))
        layer1 = self.layer1(self.maxpool(stem))
        layer2 = self.layer2(layer1)
        layer3 = self.layer3(layer2)
        layer4 = self.tail(self.layer4(layer3))
        return {"stem": stem, "layer1": layer1, "layer2": layer2, "layer3": layer3, "layer4": layer4}


class ResUnetDecoder(StagedDecoder):
    """Decoder stages from the deepest skip to full resolution, with a 1x1 segmentation head per stage.

    Attributes:
        deep_supervision: Return one output per stage (full resolution first) instead of the full-resolution one.
        output_strides: Downsampling factor of each output relative to the input, full resolution first.
    """

    def __init__(self, encoder: ResNetEncoder, config: ResUnetConfig, num_classes: int, deep_supervision: bool):
        super().__init__("layer4", deep_supervision)
        channels = dict(zip(encoder.feature_names, encoder.output_channels))
        strides = dict(zip(encoder.feature_names, encoder.strides))
        nominal = dict(zip(encoder.feature_names, config.nominal_widths))
        # The upsampler into a stage maps to the nominal width of the encoder level just below the skip's
        # (512 into layer3's stage, 256 into layer2's, 128 into layer1's, 64 into the stem's).
        deeper = dict(zip(encoder.feature_names[:-1], encoder.feature_names[1:]))

        stages, previous, in_channels = [], "layer4", channels["layer4"]
        for source, out_channels in zip(SKIP_SOURCES, config.decoder_widths):
            skip_channels = channels[source] if source in config.skips else 0
            scale = strides[previous] // strides[source]
            stages.append(DecoderStage(in_channels, nominal[deeper[source]], skip_channels, out_channels, scale))
            previous, in_channels = source, out_channels
        # The full-resolution stage has no skip: upsample from the stem's stride to the input's.
        stages.append(DecoderStage(in_channels, config.final_width, 0, config.final_width, strides["stem"]))
        self.stages = nn.ModuleList(stages)
        self.skip_sources = SKIP_SOURCES + (None,)
        self._build_heads(num_classes, [strides[source] for source in SKIP_SOURCES] + [1])


def build_decoder(encoder: ResNetEncoder, config: ResUnetConfig, num_classes: int, deep_supervision: bool
                  ) -> nn.Module:
    """The decoder ``config.decoder`` names, sized by the config's nominal widths (see the module docstring)."""
    if config.decoder == "resunet":
        return ResUnetDecoder(encoder, config, num_classes, deep_supervision)
    nominal = config.nominal_widths
    if config.decoder == "unet":
        return UNetDecoder(encoder, num_classes, deep_supervision, config.skips, nominal[:-1], config.final_width)
    if config.decoder == "unetpp":
        return UNetPlusPlusDecoder(encoder, num_classes, deep_supervision, config.skips, nominal[:-1],
                                   config.final_width)
    # UNet3+ maps every source to the first level's width, as the paper does (CatChannels = filters[0] = 64).
    return UNet3PlusDecoder(encoder, num_classes, deep_supervision, config.skips, nominal[0], config.final_width)


class ResUnet(SegmentationNetwork):
    """ResNet encoder + U-Net-style decoder for 2D segmentation, configured by a :class:`ResUnetConfig`.

    Padding, cropping, ``compute_conv_feature_map_size`` and ``initialize`` come from
    :class:`nnunetv2_resunet.base.SegmentationNetwork`.

    Args:
        input_channels: Image channels (nnU-Net's number of input modalities).
        num_classes: Segmentation outputs (nnU-Net's ``num_segmentation_heads``).
        config: The variant to build.
        deep_supervision: Return a list of logits, one per decoder output, full resolution first.

    Shapes:
        input ``(B, input_channels, H, W)`` with any H, W; output ``(B, num_classes, H, W)``, or with deep
        supervision a list whose i-th entry is ``(B, num_classes, round(H / s_i), round(W / s_i))`` with
        ``s_i = output_strides[i]`` (the sizes nnU-Net's target downsampling produces).
    """

    def __init__(self, input_channels: int, num_classes: int, config: ResUnetConfig, deep_supervision: bool = False):
        super().__init__(input_channels, num_classes, config)
        self.encoder = ResNetEncoder(input_channels, config)
        self.decoder = build_decoder(self.encoder, config, num_classes, deep_supervision)
