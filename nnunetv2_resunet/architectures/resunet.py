"""The ResUnet network family: a ResNet encoder and a U-Net decoder, configured by a frozen dataclass.

One configurable 2D network serves every step of the ablation ladder (``configs/ladder.py``) and every
ResNet-encoder comparison model (``configs/comparisons.py``); a variant is data, never a code path of its
own. The encoder is a ResNet-18/34/50/101/152 (``block`` and ``blocks``, ``encoders/resnet.py``) that keeps
torchvision's module names (``conv1``, ``bn1``, ``layer1`` .. ``layer4``) so that a torchvision ResNet state dict
loads by name. The decoder is chosen by ``decoder`` (the ResUnet decoder, or U-Net, UNet++, UNet3+ from
``decoders/``) and derives every width from what the encoder publishes (``output_channels``, ``strides``) and
from the config.

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

from torch import nn

from nnunetv2_resunet.architectures.base import SegmentationNetwork
from nnunetv2_resunet.architectures.decoders.resunet import ResUnetDecoder
from nnunetv2_resunet.architectures.decoders.unet import UNetDecoder
from nnunetv2_resunet.architectures.decoders.unet3p import UNet3PlusDecoder
from nnunetv2_resunet.architectures.decoders.unetpp import UNetPlusPlusDecoder
from nnunetv2_resunet.architectures.encoders.resnet import RESNET_BLOCKS, RESNET_FEATURES, ResNetEncoder

# The resolutions the decoder fuses, deepest first. "stem" is the output of conv1/bn1/relu (stride 2).
SKIP_SOURCES = tuple(reversed(RESNET_FEATURES[:-1]))
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
        imagenet_init: The variant is defined by an ImageNet-pretrained encoder: its trainer refuses to train from
            scratch (the weights come with nnU-Net's ``-pretrained_weights``, see ``pretrained/``).
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
        if self.block not in RESNET_BLOCKS:
            raise ValueError(f"{self.name}: block must be one of {tuple(RESNET_BLOCKS)}, got {self.block!r}")
        if self.decoder not in DECODERS:
            raise ValueError(f"{self.name}: decoder must be one of {DECODERS}, got {self.decoder!r}")

    @property
    def nominal_widths(self) -> tuple[int, ...]:
        """torchvision's ``planes`` of the stem and layer1 .. layer4: what every decoder is sized by."""
        return (self.stem_width, *self.widths)


def build_encoder(input_channels: int, config: ResUnetConfig) -> ResNetEncoder:
    """The ResNet encoder ``config`` describes."""
    return ResNetEncoder(input_channels, config.blocks, config.widths, config.block, config.stem_width,
                         config.stem_maxpool, config.bottleneck_convs)


def build_decoder(encoder: ResNetEncoder, config: ResUnetConfig, num_classes: int, deep_supervision: bool
                  ) -> nn.Module:
    """The decoder ``config.decoder`` names, sized by the config's nominal widths (see the module docstring)."""
    nominal = config.nominal_widths
    if config.decoder == "resunet":
        # The upsampler into a stage maps to the nominal width of the encoder level just below the skip's
        # (512 into layer3's stage, 256 into layer2's, 128 into layer1's, 64 into the stem's).
        return ResUnetDecoder(encoder, num_classes, deep_supervision, config.skips, config.decoder_widths,
                              tuple(reversed(nominal[1:])), config.final_width)
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
    :class:`nnunetv2_resunet.architectures.base.SegmentationNetwork`.

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
        self.encoder = build_encoder(input_channels, config)
        self.decoder = build_decoder(self.encoder, config, num_classes, deep_supervision)
