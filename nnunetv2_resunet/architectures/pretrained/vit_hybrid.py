"""Google's ``R50+ViT-B_16.npz`` (the ViT paper's ImageNet-21k hybrid, Flax names) into TransUNet's encoder.

The names and layouts are those of ``google-research/vision_transformer`` that TransUNet's ``load_from`` reads:
convolution kernels HWIO, attention kernels per head (``(768, 12, 64)`` for query/key/value, ``(12, 64, 768)`` for
the output), dense kernels ``(in, out)``, GroupNorm/LayerNorm ``scale`` and ``bias``. As in TransUNet, the class
token and its position embedding are dropped (the segmentation model has none) and the 14 x 14 grid of position
embeddings is resized bilinearly to the planned patch's grid; the ImageNet heads (``head``, ``pre_logits``) are
not used. timm's own ``vision_transformer._load_weights`` reads the same file into the same modules; the tests
check both agree.
"""

from __future__ import annotations

import math
import re
from collections.abc import Mapping

import torch

from nnunetv2_resunet.architectures.encoders.vit_hybrid import ViTHybridEncoder, position_embedding_for
from nnunetv2_resunet.architectures.pretrained.common import (
    LoadReport,
    PretrainedWeightsError,
    adapt_input_conv,
    copy_into,
    finish,
)

UNUSED = {r"^cls$": "the class token (TransUNet has none)",
          r"^(head|pre_logits)/": "the ImageNet-21k classifier"}
RESNET_UNIT = re.compile(r"^block(\d+)/unit(\d+)/(conv[123]|gn[123]|conv_proj|gn_proj)/(kernel|scale|bias)$")
BLOCK = re.compile(r"^Transformer/encoderblock_(\d+)/(.+)$")


def _conv(kernel: torch.Tensor) -> torch.Tensor:
    return kernel.permute(3, 2, 0, 1)  # HWIO -> OIHW


def _vector(value: torch.Tensor) -> torch.Tensor:
    return value.reshape(-1)


def _resnet_name(key: str) -> str | None:
    """The timm ResNetV2 name of a Flax ResNet tensor, or None."""
    if key == "conv_root/kernel":
        return "stem.conv.weight"
    if key.startswith("gn_root/"):
        return "stem.norm." + ("weight" if key.endswith("scale") else "bias")
    match = RESNET_UNIT.match(key)
    if match is None:
        return None
    stage, block, layer, kind = int(match[1]) - 1, int(match[2]) - 1, match[3], match[4]
    module = {"conv_proj": "downsample.conv", "gn_proj": "downsample.norm"}.get(layer, layer.replace("gn", "norm"))
    return f"stages.{stage}.blocks.{block}.{module}." + ("weight" if kind in ("kernel", "scale") else "bias")


def _block_tensors(weights: Mapping[str, torch.Tensor], index: int, width: int) -> dict[str, torch.Tensor]:
    """timm Block tensors of ``Transformer/encoderblock_{index}``: query/key/value fused into ``qkv``."""
    root = f"Transformer/encoderblock_{index}/"
    attention = root + "MultiHeadDotProductAttention_1/"
    tensors = {f"{part}.{name}": _vector(weights[root + f"{layer}/{flax}"])
               for part, layer in (("norm1", "LayerNorm_0"), ("norm2", "LayerNorm_2"))
               for name, flax in (("weight", "scale"), ("bias", "bias"))}
    tensors["attn.qkv.weight"] = torch.cat([weights[attention + f"{q}/kernel"].reshape(width, width).t()
                                            for q in ("query", "key", "value")])
    tensors["attn.qkv.bias"] = torch.cat([_vector(weights[attention + f"{q}/bias"]) for q in ("query", "key", "value")])
    tensors["attn.proj.weight"] = weights[attention + "out/kernel"].reshape(width, width).t()
    tensors["attn.proj.bias"] = _vector(weights[attention + "out/bias"])
    for fc, dense in (("fc1", "Dense_0"), ("fc2", "Dense_1")):
        tensors[f"mlp.{fc}.weight"] = weights[root + f"MlpBlock_3/{dense}/kernel"].t()
        tensors[f"mlp.{fc}.bias"] = _vector(weights[root + f"MlpBlock_3/{dense}/bias"])
    return tensors


def load_google_vit_hybrid(network: torch.nn.Module, weights: Mapping[str, torch.Tensor], source: str
                           ) -> LoadReport:
    """``R50+ViT-B_16.npz`` into ``network.encoder`` (a :class:`ViTHybridEncoder`).

    Raises:
        PretrainedWeightsError: The file lacks tensors of the encoder, has others it cannot place, or shapes differ.
    """
    encoder: ViTHybridEncoder = network.encoder
    vit = encoder.vit
    report = LoadReport(source, "Google ViT .npz (R50+ViT-B/16)")
    used = set()
    try:
        resnet = {}
        for key, value in weights.items():
            name = _resnet_name(key)
            if name is not None:
                resnet[name] = _conv(value) if key.endswith("kernel") else _vector(value)
                used.add(key)
        stem = vit.patch_embed.backbone.stem.conv
        if stem.in_channels != resnet["stem.conv.weight"].shape[1]:
            resnet["stem.conv.weight"] = adapt_input_conv(resnet["stem.conv.weight"], stem.in_channels)
            report.adapted["encoder.vit.patch_embed.backbone.stem.conv.weight"] = \
                f"RGB filters mapped to {stem.in_channels} input channel(s)"
        blocks = {f"{i}.{name}": value for i in range(len(vit.blocks))
                  for name, value in _block_tensors(weights, i, vit.embed_dim).items()}
        used |= {key for key in weights if BLOCK.match(key) and int(BLOCK.match(key)[1]) < len(vit.blocks)}
        projection = {"weight": _conv(weights["embedding/kernel"]), "bias": _vector(weights["embedding/bias"])}
        norm = {"weight": _vector(weights["Transformer/encoder_norm/scale"]),
                "bias": _vector(weights["Transformer/encoder_norm/bias"])}
        position = weights["Transformer/posembed_input/pos_embedding"]
        used |= {"embedding/kernel", "embedding/bias", "Transformer/encoder_norm/scale",
                 "Transformer/encoder_norm/bias", "Transformer/posembed_input/pos_embedding"}
    except KeyError as error:
        raise PretrainedWeightsError(f"{source} lacks {error.args[0]!r}: is it Google's R50+ViT-B_16.npz?") from error

    copy_into(vit.patch_embed.backbone, resnet, source, "encoder.vit.patch_embed.backbone.", report)
    copy_into(vit.blocks, blocks, source, "encoder.vit.blocks.", report)
    copy_into(vit.patch_embed.proj, projection, source, "encoder.vit.patch_embed.proj.", report)
    copy_into(vit.norm, norm, source, "encoder.vit.norm.", report)

    tokens = position.shape[1]
    old = math.isqrt(tokens - 1)
    if old * old != tokens - 1:
        raise PretrainedWeightsError(f"{source}: expected a class token and a square grid of position embeddings, "
                                     f"got {tokens} tokens")
    with torch.no_grad():
        vit.pos_embed.copy_(position_embedding_for(position[:, 1:], (old, old), encoder.grid))
    report.loaded.append("encoder.vit.pos_embed")
    if encoder.grid != (old, old):
        report.adapted["encoder.vit.pos_embed"] = (f"class token dropped, {old} x {old} grid resized bilinearly to "
                                                   f"{encoder.grid[0]} x {encoder.grid[1]}")
    else:
        report.adapted["encoder.vit.pos_embed"] = "class token dropped"

    for key in weights:
        if key in used:
            continue
        reason = next((why for pattern, why in UNUSED.items() if re.search(pattern, key)), None)
        if reason is None:
            raise PretrainedWeightsError(f"{source} has tensors this loader cannot place, e.g. {key!r}: is it "
                                         "Google's R50+ViT-B_16.npz?")
        report.unused[key] = reason
    return finish(network, report)
