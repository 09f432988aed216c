"""The timm-encoder family: a timm model as the encoder, one of our decoders on what it publishes.

One configurable network, :class:`TimmUNet`, configured by a frozen :class:`TimmUNetConfig`; the named variants are
rows in ``configs/transformers.py``: the three transformer baselines of the thesis (TransUNet, Swin-Unet, EMCAD)
and ResUnet's decoder on EMCAD's encoder. How the encoder's features are taken is the ``taps`` field:

- ``"features"``: any timm model with ``forward_intermediates`` (``encoders/timm.py``; PVTv2-B2 for EMCAD);
- ``"vit_hybrid"``: TransUNet's R50+ViT-B/16 with its skips (``encoders/vit_hybrid.py``);
- ``"swin"``: a Swin Transformer tapped before each stage's blocks, Swin-Unet's skips (``encoders/swin.py``).

Initialisation: the network initialises itself when built. Encoders keep timm's initialisation (and are meant to
receive published weights, see ``pretrained/``); the papers' decoders use their official initialisation, our
decoders nnU-Net's He init. So :meth:`TimmUNet.initialize` is a no-op: nnU-Net's ``net.apply(net.initialize)``
leaves all of that as it is.

Primus's ablation (Wald et al., 2025): with ``transformer_blocks=False`` every transformer block (attention and MLP,
with their norms and residual branches: timm's ViT ``Block``, ``SwinTransformerBlock`` and PVTv2 ``Block``, in the
encoder and, for Swin-Unet, in the decoder) is an identity; everything else (patch embeddings, patch merging and
expanding, position embeddings, norms between stages, the decoder's other layers, the heads) is unchanged. The
config rows are in ``configs/transformers.py`` (``NO_TRANSFORMER_BLOCKS``).

Patch size: TransUNet's position embeddings and Swin's windows are sized for the patch nnU-Net plans, so these
networks take ``patch_size`` (``NEEDS_PATCH_SIZE``); any other input size still works (position embeddings are
interpolated, windows padded), and inputs are padded to the encoder's stride and outputs cropped back as for every
network here (``base.SegmentationNetwork``).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from dynamic_network_architectures.initialization.weight_init import InitWeights_He
from torch import nn

from nnunetv2_resunet.architectures.base import SegmentationNetwork
from nnunetv2_resunet.architectures.decoders.emcad import EMCADDecoder
from nnunetv2_resunet.architectures.decoders.resunet import ResUnetDecoder
from nnunetv2_resunet.architectures.decoders.transunet import TransUNetDecoder

# timm (and our modules built on it) is imported where a network needs it, not with this module: every nnU-Net
# process that looks up one of our trainers imports this module, and importing timm's models costs a second.

TAPS = ("features", "vit_hybrid", "swin")
DECODERS = ("resunet", "transunet", "swin_unet", "emcad")
# The timm model the vit_hybrid taps are written for (the only one with TransUNet's skips).
VIT_HYBRID_MODEL = "vit_base_r50_s16_224"
# Where nnU-Net gives none (tests, tables): the papers' 224 x 224.
DEFAULT_PATCH_SIZE = (224, 224)
Args = tuple[tuple[str, object], ...]


def transformer_blocks() -> tuple[type[nn.Module], ...]:
    """What Primus's ablation removes: a transformer block (attention + MLP, with norms and residuals)."""
    from timm.models.pvt_v2 import Block as PvtBlock
    from timm.models.swin_transformer import SwinTransformerBlock
    from timm.models.vision_transformer import Block as VitBlock

    return VitBlock, SwinTransformerBlock, PvtBlock


@dataclass(frozen=True)
class TimmUNetConfig:
    """One network of the family: which timm encoder, how its features are taken, which decoder.

    Attributes:
        name: Short name of the variant, e.g. ``"transunet"``.
        change: What it is, in one line (for tables).
        encoder: timm's model name (``vit_base_r50_s16_224``, ``swin_tiny_patch4_window7_224``, ``pvt_v2_b2``).
        decoder: One of ``DECODERS``.
        taps: One of ``TAPS`` (see the module docstring).
        encoder_args: More keyword arguments for ``timm.create_model``, as (name, value) pairs.
        decoder_args: Keyword arguments of the decoder, as (name, value) pairs.
        rgb_stem: Map nnU-Net's input channels to RGB with a 1x1 conv-BN-ReLU before the encoder (EMCAD's
            ``EMCADNet.conv``); otherwise the encoder's first layer takes them itself.
        transformer_blocks: False replaces every transformer block by an identity (Primus's ablation).
    """

    name: str
    change: str
    encoder: str
    decoder: str
    taps: str = "features"
    encoder_args: Args = ()
    decoder_args: Args = ()
    rgb_stem: bool = False
    transformer_blocks: bool = True

    def __post_init__(self):
        if self.taps not in TAPS:
            raise ValueError(f"{self.name}: taps must be one of {TAPS}, got {self.taps!r}")
        if self.decoder not in DECODERS:
            raise ValueError(f"{self.name}: decoder must be one of {DECODERS}, got {self.decoder!r}")
        if self.taps == "vit_hybrid" and self.encoder != VIT_HYBRID_MODEL:
            raise ValueError(f"{self.name}: the vit_hybrid taps are TransUNet's, for {VIT_HYBRID_MODEL}; got "
                             f"{self.encoder!r}")


def build_encoder(input_channels: int, config: TimmUNetConfig, patch_size: Sequence[int]) -> nn.Module:
    """The encoder ``config`` describes, taking ``input_channels`` (3 behind an RGB stem)."""
    from nnunetv2_resunet.architectures.encoders.swin import SwinEncoder
    from nnunetv2_resunet.architectures.encoders.timm import TimmEncoder
    from nnunetv2_resunet.architectures.encoders.vit_hybrid import ViTHybridEncoder

    args = dict(config.encoder_args)
    if config.taps == "vit_hybrid":
        return ViTHybridEncoder(input_channels, patch_size)
    if config.taps == "swin":
        return SwinEncoder(input_channels, config.encoder, patch_size, args)
    return TimmEncoder(input_channels, config.encoder, args)


def build_decoder(encoder: nn.Module, config: TimmUNetConfig, num_classes: int, deep_supervision: bool
                  ) -> nn.Module:
    """The decoder ``config.decoder`` names, on what ``encoder`` publishes."""
    args = dict(config.decoder_args)
    if config.decoder == "transunet":
        return TransUNetDecoder(encoder, num_classes, deep_supervision, **args)
    if config.decoder == "swin_unet":
        from nnunetv2_resunet.architectures.decoders.swin_unet import SwinUnetDecoder

        return SwinUnetDecoder(encoder, num_classes, deep_supervision, depths=encoder.depths,
                               num_heads=encoder.num_heads, window_size=encoder.window_size,
                               patch_size=encoder.patch_size, **args)
    if config.decoder == "emcad":
        return EMCADDecoder(encoder, num_classes, deep_supervision, **args)
    # ResUnet's decoder: the upsampler into a stage maps to the width of the encoder level below the skip (as on
    # ResNet-34), the stages output ``stage_widths``; all levels but the deepest are skips.
    decoder = ResUnetDecoder(encoder, num_classes, deep_supervision, skips=encoder.feature_names[:-1],
                             up_widths=tuple(reversed(encoder.output_channels[1:])), **args)
    decoder.apply(InitWeights_He(1e-2))
    return decoder


class TimmUNet(SegmentationNetwork):
    """A timm encoder and one of our decoders, configured by a :class:`TimmUNetConfig`.

    Args:
        input_channels: Image channels (nnU-Net's number of input modalities).
        num_classes: Segmentation outputs.
        config: The variant to build.
        deep_supervision: Return one output per decoder stage, full resolution first.
        patch_size: The planned patch (H, W); position embeddings and windows are sized for it.

    Shapes:
        As :class:`nnunetv2_resunet.architectures.base.SegmentationNetwork`.
    """

    NEEDS_PATCH_SIZE = True

    def __init__(self, input_channels: int, num_classes: int, config: TimmUNetConfig, deep_supervision: bool = False,
                 patch_size: Sequence[int] = DEFAULT_PATCH_SIZE):
        super().__init__(input_channels, num_classes, config)
        if len(patch_size) != 2:
            raise ValueError(f"{config.name} is a 2D network: patch_size must be (H, W), got {tuple(patch_size)}")
        self.patch_size = tuple(patch_size)
        self.rgb_stem = None
        encoder_channels = input_channels
        if config.rgb_stem and input_channels != 3:
            self.rgb_stem = nn.Sequential(nn.Conv2d(input_channels, 3, 1), nn.BatchNorm2d(3), nn.ReLU(inplace=True))
            encoder_channels = 3
        self.encoder = build_encoder(encoder_channels, config, patch_size)
        self.decoder = build_decoder(self.encoder, config, num_classes, deep_supervision)
        if not config.transformer_blocks:
            removed = remove_transformer_blocks(self)
            if not removed:
                raise ValueError(f"{config.name}: transformer_blocks=False, but {config.encoder} with the "
                                 f"{config.decoder} decoder has no transformer block to remove")

    def forward(self, x):
        if self.rgb_stem is not None:
            x = self.rgb_stem(x)
        return super().forward(x)

    @staticmethod
    def initialize(module: nn.Module) -> None:
        """A no-op: the network initialised itself when built (see the module docstring)."""


class RemovedBlock(nn.Module):
    """Where a transformer block was: returns its input (and accepts the block's extra arguments, e.g. PVTv2's
    feature size)."""

    def forward(self, x, *args, **kwargs):
        return x


def remove_transformer_blocks(module: nn.Module) -> int:
    """Replace every :func:`transformer_blocks` module inside ``module`` by a :class:`RemovedBlock`; return how
    many."""
    blocks = transformer_blocks()

    def remove(parent: nn.Module) -> int:
        removed = 0
        for name, child in list(parent.named_children()):
            if isinstance(child, blocks):
                setattr(parent, name, RemovedBlock())
                removed += 1
            else:
                removed += remove(child)
        return removed

    return remove(module)
