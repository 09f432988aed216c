"""TransUNet's encoder: a ResNet-50 (three stages) whose 1/16 features feed a ViT-B/16, built from timm's modules.

timm's ``vit_base_r50_s16_224`` is the same R50+ViT-B/16 hybrid (Dosovitskiy et al.; the encoder of TransUNet,
Chen et al. 2021): a ``ResNetV2`` with layers (3, 4, 9), weight-standardised convs and GroupNorm, a 1x1 patch
projection to 768 channels and 12 transformer blocks. It is assembled here from the same timm classes with the
arguments of TransUNet's ``vit_seg_modeling_resnet_skip.py`` where the two differ:

- padding: timm's hybrid pads "same" (TensorFlow style: one pixel more at the bottom/right of every strided conv
  and of the stem pool); TransUNet pads symmetrically (``padding=3`` / ``1``) and max-pools the stem without
  padding, so its 1/4 features are one pixel short and zero-padded at the bottom/right before they become a skip;
- normalisation: GroupNorm eps 1e-6 in the blocks, a per-channel GroupNorm (``GroupNorm(cout, cout)``, eps 1e-5)
  on the projection shortcut, weight standardisation with eps 1e-5;
- dropout: 0.1 after the position embeddings and in the MLPs, none after attention;
- no class token: the position embeddings cover the patch grid only, sized from the patch nnU-Net plans (a grid
  of another size, e.g. in a test, gets them bilinearly resized, as TransUNet resizes the pretrained ones).

A one-channel image is repeated to RGB, as TransUNet does: summing the RGB filters (what the other encoders do)
would not be exact here, because weight standardisation rescales the summed filter. The features are the skips
TransUNet's decoder fuses plus the transformer's output: ``root`` (1/2, 64), ``block1`` (1/4, 256), ``block2``
(1/8, 512) and ``transformer`` (1/16, 768).
"""

from __future__ import annotations

from collections.abc import Sequence
from functools import partial

import torch
import torch.nn.functional as F
from timm.layers import GroupNormAct, HybridEmbed, StdConv2d
from timm.models.resnetv2 import ResNetV2
from timm.models.vision_transformer import VisionTransformer
from torch import nn

from nnunetv2_resunet.architectures.precision import fp16_safe

# TransUNet's R50 (vit_seg_modeling_resnet_skip.py) and ViT-B/16 (vit_seg_configs.get_r50_b16_config).
R50_LAYERS = (3, 4, 9)
VIT_WIDTH, VIT_DEPTH, VIT_HEADS = 768, 12, 12
VIT_STRIDE = 16
DROPOUT = 0.1


def position_embedding_for(position_embedding: torch.Tensor, grid: Sequence[int], new_grid: Sequence[int]
                           ) -> torch.Tensor:
    """Resize ``(1, gh * gw, C)`` position embeddings of a ``grid`` to ``new_grid`` by bilinear interpolation.

    The interpolation TransUNet applies to the pretrained embeddings (``scipy.ndimage.zoom(order=1)``, which maps
    corner to corner: ``align_corners=True``), here for any, also non-square, grid.
    """
    if tuple(grid) == tuple(new_grid):
        return position_embedding
    channels = position_embedding.shape[-1]
    image = position_embedding.reshape(1, grid[0], grid[1], channels).permute(0, 3, 1, 2)
    image = F.interpolate(image.float(), size=tuple(new_grid), mode="bilinear", align_corners=True)
    return image.permute(0, 2, 3, 1).reshape(1, new_grid[0] * new_grid[1], channels).to(position_embedding.dtype)


def transunet_resnet(in_chans: int) -> ResNetV2:
    """timm's ResNetV2 as TransUNet configures it: three stages, symmetric padding, TransUNet's norms."""
    backbone = ResNetV2(layers=R50_LAYERS, num_classes=0, global_pool="", in_chans=in_chans, preact=False,
                        stem_type="", conv_layer=partial(StdConv2d, eps=1e-5),
                        norm_layer=partial(GroupNormAct, num_groups=32, eps=1e-6))
    backbone.stem.pool = nn.MaxPool2d(kernel_size=3, stride=2, padding=0)
    for stage in backbone.stages:
        for block in stage.blocks:
            if block.downsample is not None:
                norm = block.downsample.norm  # TransUNet: gn_proj = nn.GroupNorm(cout, cout), eps 1e-5
                norm.num_groups, norm.eps = norm.num_channels, 1e-5
    return backbone


class ViTHybridEncoder(nn.Module):
    """R50 + ViT-B/16 with TransUNet's skips, on timm's modules (see the module docstring).

    Args:
        input_channels: Image channels; one channel is repeated to RGB, other counts go to the stem directly.
        patch_size: The planned patch (H, W): the position embeddings cover its 1/16 grid (rounded up).

    Attributes:
        feature_names, output_channels, strides: ``root``/64/2, ``block1``/256/4, ``block2``/512/8,
            ``transformer``/768/16.
        vit: timm's ``VisionTransformer``; its ``patch_embed.backbone`` is the ResNet.
    """

    feature_names = ("root", "block1", "block2", "transformer")
    strides = (2, 4, 8, VIT_STRIDE)

    def __init__(self, input_channels: int, patch_size: Sequence[int] = (224, 224)):
        super().__init__()
        self.repeat_grey = input_channels == 1
        in_chans = 3 if self.repeat_grey else input_channels
        self.grid = tuple(-(-int(s) // VIT_STRIDE) for s in patch_size)
        backbone = transunet_resnet(in_chans)
        self.vit = VisionTransformer(
            img_size=tuple(g * VIT_STRIDE for g in self.grid), patch_size=1, in_chans=in_chans, num_classes=0,
            global_pool="", class_token=False, embed_dim=VIT_WIDTH, depth=VIT_DEPTH, num_heads=VIT_HEADS,
            embed_layer=partial(HybridEmbed, backbone=backbone), pos_drop_rate=DROPOUT, proj_drop_rate=DROPOUT)
        for block in self.vit.blocks:
            block.attn.proj_drop = nn.Identity()  # TransUNet's attention_dropout_rate is 0
        widths = [stage.blocks[-1].conv3.out_channels for stage in backbone.stages]
        self.output_channels = (backbone.stem.conv.out_channels, widths[0], widths[1], VIT_WIDTH)

    def forward(self, x: torch.Tensor) -> dict[str, torch.Tensor]:
        return fp16_safe(self._features, x)

    def _features(self, x: torch.Tensor) -> dict[str, torch.Tensor]:
        if self.repeat_grey:
            x = x.expand(-1, 3, -1, -1)
        backbone = self.vit.patch_embed.backbone
        root = backbone.stem.norm(backbone.stem.conv(x))
        block1 = backbone.stages[0](backbone.stem.pool(root))
        block2 = backbone.stages[1](block1)
        deepest = backbone.stages[2](block2)
        # TransUNet zero-pads the unpadded pool's 1/4 features at the bottom/right to the skip's size.
        size = [s // 4 for s in x.shape[2:]]
        block1 = F.pad(block1, (0, size[1] - block1.shape[3], 0, size[0] - block1.shape[2]))
        tokens = self.vit.patch_embed.proj(deepest)
        grid = tokens.shape[2:]
        tokens = tokens.flatten(2).transpose(1, 2)
        tokens = self.vit.pos_drop(tokens + position_embedding_for(self.vit.pos_embed, self.grid, grid))
        tokens = self.vit.norm(self.vit.blocks(tokens))
        transformer = tokens.transpose(1, 2).reshape(tokens.shape[0], VIT_WIDTH, *grid)
        return {"root": root, "block1": block1, "block2": block2, "transformer": transformer}
