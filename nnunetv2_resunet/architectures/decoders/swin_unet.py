"""Swin-Unet's decoder (Cao et al., 2022; ``swin_transformer_unet_skip_expand_decoder_sys.py``), on timm's blocks.

The bottleneck (1/32) is expanded to 1/16 by a patch expanding layer (``layers_up.0``). Each further stage
concatenates the skip of its resolution, maps the doubled width back with a linear layer (``concat_back_dim``)
and runs Swin Transformer blocks (``layers_up.k``: the depth and heads of the encoder stage of that width, the
official code's ``depths[num_layers - 1 - k]``), then expands 2x, except the last (1/4). After ``norm_up`` a final
4x patch expanding (``up``) and a 1x1 conv without bias (the official ``output``) give full resolution. The blocks
are timm's ``SwinTransformerBlock`` (the same block as the encoder's, names included: Swin-Unet initialises them
from the encoder's pretrained stages); linear layers start as in the official ``_init_weights`` (truncated normal,
std 0.02).

Swin-Unet has no 1/2 stage: with deep supervision the outputs are the final one and 1x1 heads on the stages at
1/4 (after ``norm_up``), 1/8 and 1/16, i.e. strides 1, 4, 8, 16. Heads live in ``seg_layers``; the last one is the
official ``output``. Features arrive NCHW (the encoder contract) and are computed on NHWC, as Swin's layers are.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from timm.layers import trunc_normal_
from timm.models.swin_transformer import SwinTransformerBlock
from torch import nn

from nnunetv2_resunet.architectures.precision import fp16_safe


class PatchExpand(nn.Module):
    """Swin-Unet's patch expanding: a linear layer to ``scale**2 / scale`` times the width, pixel shuffle to a
    ``scale``x finer grid, LayerNorm. ``scale`` 2 halves the width (``PatchExpand``); 4 keeps it
    (``FinalPatchExpand_X4``). NHWC in and out."""

    def __init__(self, dim: int, scale: int = 2):
        super().__init__()
        self.scale = scale
        out_dim = dim // 2 if scale == 2 else dim
        self.expand = nn.Linear(dim, out_dim * scale * scale, bias=False)
        self.norm = nn.LayerNorm(out_dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b, h, w, _ = x.shape
        x = self.expand(x)
        s = self.scale
        # einops 'b h w (p1 p2 c) -> b (h p1) (w p2) c' of the official code.
        x = x.reshape(b, h, w, s, s, -1).permute(0, 1, 3, 2, 4, 5).reshape(b, h * s, w * s, -1)
        return self.norm(x)


class SwinUpStage(nn.Module):
    """``BasicLayer_up``: Swin Transformer blocks (shifted every other one), then an optional 2x patch expanding."""

    def __init__(self, dim: int, resolution: Sequence[int], depth: int, num_heads: int, window_size: int,
                 mlp_ratio: float, drop_path: Sequence[float], upsample: bool):
        super().__init__()
        self.blocks = nn.Sequential(*[
            SwinTransformerBlock(dim=dim, input_resolution=tuple(resolution), num_heads=num_heads,
                                 window_size=window_size, shift_size=0 if i % 2 == 0 else window_size // 2,
                                 dynamic_mask=True, mlp_ratio=mlp_ratio, qkv_bias=True, drop_path=drop_path[i])
            for i in range(depth)])
        self.upsample = PatchExpand(dim) if upsample else None


class SwinUnetDecoder(nn.Module):
    """The Swin-Unet decoder on an encoder publishing three skips and a bottleneck, each level half the last.

    Args:
        encoder: Publishes ``feature_names``, ``output_channels``, ``strides`` (Swin-T: 96/4, 192/8, 384/16,
            768/32).
        num_classes: Segmentation outputs.
        deep_supervision: Initial value of the flag.
        depths, num_heads: Of the encoder's stages, shallowest first (Swin-Unet: 2, 2, 2, 2 and 3, 6, 12, 24);
            decoder stage k takes those of encoder stage ``len(depths) - 1 - k``.
        window_size: Attention window (7).
        patch_size: The planned patch (H, W), rounded up to the total stride: the blocks' windows follow it.
        mlp_ratio: Hidden width of the blocks' MLPs, relative to their width (4).
        drop_path_rate: Stochastic depth, linear over the encoder's blocks; a decoder stage reuses the rates of
            its encoder stage, as the official code does (0.2 in Swin-Unet's config).

    Attributes:
        deep_supervision: Return the outputs at strides 1, 4, 8, 16 instead of the full-resolution one.
        output_strides: ``(1, 4, 8, 16)`` for Swin-T.
    """

    def __init__(self, encoder: nn.Module, num_classes: int, deep_supervision: bool,
                 depths: Sequence[int] = (2, 2, 2, 2), num_heads: Sequence[int] = (3, 6, 12, 24),
                 window_size: int = 7, patch_size: Sequence[int] = (224, 224), mlp_ratio: float = 4.0,
                 drop_path_rate: float = 0.2):
        super().__init__()
        names, channels, strides = encoder.feature_names, encoder.output_channels, encoder.strides
        levels = len(depths)
        if len(names) != levels or any(c != 2 * p for c, p in zip(channels[1:], channels[:-1])):
            raise ValueError(f"Swin-Unet's decoder needs {levels} encoder features, each twice as wide as the "
                             f"last, got {tuple(names)} with {tuple(channels)}")
        self.deep_supervision = deep_supervision
        self.sources = tuple(reversed(names))  # bottleneck first, then the skips from the deepest
        rates = torch.linspace(0, drop_path_rate, sum(depths), device="cpu").tolist()
        stage_rates = [rates[sum(depths[:i]):sum(depths[:i + 1])] for i in range(levels)]
        self.concat_back_dim = nn.ModuleList([nn.Identity()])
        self.layers_up = nn.ModuleList([PatchExpand(channels[-1])])
        for k in range(1, levels):
            level = levels - 1 - k
            dim = channels[level]
            resolution = [s // strides[level] for s in patch_size]
            self.concat_back_dim.append(nn.Linear(2 * dim, dim))
            self.layers_up.append(SwinUpStage(dim, resolution, depths[level], num_heads[level], window_size,
                                              mlp_ratio, stage_rates[level], upsample=k < levels - 1))
        self.norm_up = nn.LayerNorm(channels[0])
        self.up = PatchExpand(channels[0], scale=strides[0])
        self.apply(_official_init)
        # Deep-supervision heads on the stages at 1/16 .. 1/4, then the official output; all always built.
        self.seg_layers = nn.ModuleList([*(nn.Conv2d(channels[levels - 1 - k], num_classes, 1)
                                           for k in range(1, levels)),
                                         nn.Conv2d(channels[0], num_classes, 1, bias=False)])
        self.output_strides = (1, *(strides[levels - 1 - k] for k in range(levels - 1, 0, -1)))

    def forward(self, features: dict[str, torch.Tensor]) -> list[torch.Tensor] | torch.Tensor:
        nhwc = [features[name].permute(0, 2, 3, 1) for name in self.sources]
        final, stage_outputs = fp16_safe(self._upsample, nhwc)
        final = self.seg_layers[-1](final.permute(0, 3, 1, 2))
        if not self.deep_supervision:
            return final
        heads = [head(out.permute(0, 3, 1, 2)) for head, out in zip(self.seg_layers[:-1], stage_outputs)]
        return [final, *reversed(heads)]

    def _upsample(self, nhwc: list[torch.Tensor]) -> tuple[torch.Tensor, list[torch.Tensor]]:
        """The transformer stages (NHWC): the full-resolution features and each stage's output."""
        x = self.layers_up[0](nhwc[0])
        stage_outputs = []
        for k in range(1, len(self.layers_up)):
            x = self.concat_back_dim[k](torch.cat((x, nhwc[k]), dim=-1))
            stage = self.layers_up[k]
            x = stage.blocks(x)
            if stage.upsample is None:
                x = self.norm_up(x)
            stage_outputs.append(x)
            if stage.upsample is not None:
                x = stage.upsample(x)
        return self.up(x), stage_outputs


def _official_init(module: nn.Module) -> None:
    """Swin-Unet's ``_init_weights``: linear layers truncated normal (std 0.02, bias 0), LayerNorms 1 and 0."""
    if isinstance(module, nn.Linear):
        trunc_normal_(module.weight, std=0.02)
        if module.bias is not None:
            nn.init.zeros_(module.bias)
    elif isinstance(module, nn.LayerNorm):
        nn.init.ones_(module.weight)
        nn.init.zeros_(module.bias)
