"""Swin-Unet's encoder: timm's Swin Transformer, tapped where the official Swin-Unet takes its skips.

Swin-Unet (Cao et al., 2022; ``swin_transformer_unet_skip_expand_decoder_sys.py``) appends the input of every
stage to its skip list *before* the stage runs (``x_downsample.append(x); x = layer(x)``). Its stages are
Microsoft's (blocks, then patch merging), so those inputs are the patch embedding and the outputs of each patch
merging. timm's stages put the merging first (merging, then blocks), so the same tensors are timm's
``patch_embed`` output and the outputs of ``layers.1.downsample`` and ``layers.2.downsample``; the bottleneck is
``norm`` after the last stage. The input of the last stage (``layers.3.downsample``) is a skip Swin-Unet never
reads, so it is not returned.

timm's Swin returns NHWC tensors; the encoder contract is NCHW, so features are permuted at this boundary (the
Swin-Unet decoder permutes back). The model is built for the planned patch (``img_size``), so windows are those
the official code would use at that size; ``strict_img_size=False`` lets other sizes through (windows padded,
masks computed per call).
"""

from __future__ import annotations

from collections.abc import Sequence

import timm
import torch
from torch import nn

from nnunetv2_resunet.architectures.precision import fp16_safe

# The last stage's input is no skip of Swin-Unet; the features are the skips, then the bottleneck.
SKIP_STAGES = (1, 2)
# Patch size 4 and three patch mergings: the input size the windows are built for is a multiple of this.
SWIN_STRIDE = 32


class SwinEncoder(nn.Module):
    """A timm Swin Transformer returning Swin-Unet's skips (features before each stage's blocks) and bottleneck.

    Args:
        input_channels: Image channels (timm's ``in_chans``).
        model_name: A timm Swin Transformer, e.g. ``"swin_tiny_patch4_window7_224"``.
        patch_size: The planned patch (H, W); windows and masks are built for it, rounded up to ``SWIN_STRIDE``.
        model_args: More keyword arguments for ``timm.create_model`` (Swin-Unet: ``depths=(2, 2, 2, 2)``,
            ``drop_path_rate=0.2``).

    Attributes:
        feature_names: ``patch_embed``, ``layers.1.downsample``, ``layers.2.downsample``, ``norm``.
        output_channels, strides: Their channels and downsampling factors (Swin-T: 96/4, 192/8, 384/16, 768/32).
        patch_size: The size the model is built for (the planned patch rounded up to ``SWIN_STRIDE``).
        depths, num_heads, window_size: Of the stages, shallowest first (what Swin-Unet's decoder mirrors).
        swin: timm's ``SwinTransformer`` (without classifier).
    """

    def __init__(self, input_channels: int, model_name: str, patch_size: Sequence[int] = (224, 224),
                 model_args: dict | None = None):
        super().__init__()
        self.patch_size = tuple(-(-int(s) // SWIN_STRIDE) * SWIN_STRIDE for s in patch_size)
        self.swin = timm.create_model(model_name, pretrained=False, num_classes=0, in_chans=input_channels,
                                      img_size=self.patch_size, strict_img_size=False, **(model_args or {}))
        info = self.swin.feature_info  # timm's facts per stage: channels and reduction after the stage
        if info[-1]["reduction"] != SWIN_STRIDE:
            raise ValueError(f"{model_name} downsamples by {info[-1]['reduction']}; Swin-Unet's layout needs "
                             f"{SWIN_STRIDE} (patch 4, four stages)")
        self.depths = tuple(len(stage.blocks) for stage in self.swin.layers)
        self.num_heads = tuple(stage.blocks[0].attn.num_heads for stage in self.swin.layers)
        self.window_size = max(self.swin.layers[0].blocks[0].window_size)
        self.feature_names = ("patch_embed", *(f"layers.{i}.downsample" for i in SKIP_STAGES), "norm")
        self.output_channels = (info[0]["num_chs"], *(info[i]["num_chs"] for i in SKIP_STAGES), info[-1]["num_chs"])
        self.strides = (info[0]["reduction"], *(info[i]["reduction"] for i in SKIP_STAGES), info[-1]["reduction"])

    def forward(self, x: torch.Tensor) -> dict[str, torch.Tensor]:
        return {name: feature.permute(0, 3, 1, 2) for name, feature in fp16_safe(self._features, x).items()}

    def _features(self, x: torch.Tensor) -> dict[str, torch.Tensor]:
        x = self.swin.patch_embed(x)
        features = {"patch_embed": x}
        for index, stage in enumerate(self.swin.layers):
            x = stage.downsample(x)
            if index in SKIP_STAGES:
                features[f"layers.{index}.downsample"] = x
            x = stage.blocks(x)
        features["norm"] = self.swin.norm(x)
        return features
