"""Synthetic weight files in the formats the authors released, with the real key names and shapes.

Each writer lays a file out from the original format's specification (the key lists of the released checkpoints,
as the official code reads them), not from our loaders, so a test that loads one checks the loader against the
format. Values are random; only the classifiers are smaller than released (their tensors go unused and would make
the files needlessly large). ``conftest.py`` writes each file once per session.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

# R50+ViT-B/16 (vit_jax, the file TransUNet loads): ResNet stages (units, out, mid), ViT width, blocks, heads.
R50_STAGES = ((3, 256, 64), (4, 512, 128), (9, 1024, 256))
VIT_WIDTH, VIT_BLOCKS, VIT_HEADS, VIT_GRID = 768, 12, 12, 14
# Swin-T as Microsoft released it: depths, heads, window; patch merging at the end of stages 0..2.
SWIN_DEPTHS, SWIN_HEADS, SWIN_WINDOW, SWIN_DIM, SWIN_RESOLUTION = (2, 2, 6, 2), (3, 6, 12, 24), 7, 96, 56
# PVTv2-B2 as whai362/PVT released it (the file EMCAD loads).
PVT_DIMS, PVT_DEPTHS, PVT_MLP_RATIOS, PVT_SR = (64, 128, 320, 512), (3, 4, 6, 3), (8, 8, 4, 4), (8, 4, 2, 1)
CLASSIFIER_CLASSES = 10  # released: 21843 (ViT), 1000 (Swin, PVT)


def _random(rng: np.random.Generator, *shape: int) -> np.ndarray:
    return (rng.standard_normal(shape, dtype=np.float32) * 0.02).astype(np.float32)


def google_r50_vit_b16(rng: np.random.Generator) -> dict[str, np.ndarray]:
    """``R50+ViT-B_16.npz``: Flax names, HWIO kernels, per-head attention kernels."""
    w = {"conv_root/kernel": _random(rng, 7, 7, 3, 64), "gn_root/scale": 1 + _random(rng, 64),
         "gn_root/bias": _random(rng, 64)}
    cin = 64
    for b, (units, cout, cmid) in enumerate(R50_STAGES, 1):
        for u in range(1, units + 1):
            p = f"block{b}/unit{u}/"
            w[p + "conv1/kernel"] = _random(rng, 1, 1, cin if u == 1 else cout, cmid)
            w[p + "conv2/kernel"] = _random(rng, 3, 3, cmid, cmid)
            w[p + "conv3/kernel"] = _random(rng, 1, 1, cmid, cout)
            for gn, width in (("gn1", cmid), ("gn2", cmid), ("gn3", cout)):
                w[p + f"{gn}/scale"], w[p + f"{gn}/bias"] = 1 + _random(rng, width), _random(rng, width)
            if u == 1:
                w[p + "conv_proj/kernel"] = _random(rng, 1, 1, cin, cout)
                w[p + "gn_proj/scale"], w[p + "gn_proj/bias"] = 1 + _random(rng, cout), _random(rng, cout)
        cin = cout
    d, head_dim = VIT_WIDTH, VIT_WIDTH // VIT_HEADS
    w["embedding/kernel"], w["embedding/bias"] = _random(rng, 1, 1, cin, d), _random(rng, d)
    w["cls"] = _random(rng, 1, 1, d)
    w["Transformer/posembed_input/pos_embedding"] = _random(rng, 1, 1 + VIT_GRID ** 2, d)
    w["Transformer/encoder_norm/scale"], w["Transformer/encoder_norm/bias"] = 1 + _random(rng, d), _random(rng, d)
    for i in range(VIT_BLOCKS):
        p = f"Transformer/encoderblock_{i}/"
        for norm in ("LayerNorm_0", "LayerNorm_2"):
            w[p + f"{norm}/scale"], w[p + f"{norm}/bias"] = 1 + _random(rng, d), _random(rng, d)
        for q in ("query", "key", "value"):
            w[p + f"MultiHeadDotProductAttention_1/{q}/kernel"] = _random(rng, d, VIT_HEADS, head_dim)
            w[p + f"MultiHeadDotProductAttention_1/{q}/bias"] = _random(rng, VIT_HEADS, head_dim)
        w[p + "MultiHeadDotProductAttention_1/out/kernel"] = _random(rng, VIT_HEADS, head_dim, d)
        w[p + "MultiHeadDotProductAttention_1/out/bias"] = _random(rng, d)
        for dense, (fan_in, fan_out) in (("Dense_0", (d, 4 * d)), ("Dense_1", (4 * d, d))):
            w[p + f"MlpBlock_3/{dense}/kernel"] = _random(rng, fan_in, fan_out)
            w[p + f"MlpBlock_3/{dense}/bias"] = _random(rng, fan_out)
    w["pre_logits/kernel"], w["pre_logits/bias"] = _random(rng, d, d), _random(rng, d)
    w["head/kernel"], w["head/bias"] = _random(rng, d, CLASSIFIER_CLASSES), _random(rng, CLASSIFIER_CLASSES)
    return w


def _swin_attn_mask(resolution: int) -> torch.Tensor:
    """The shifted-window mask Microsoft's Swin registers as a (persistent) buffer."""
    window, shift = SWIN_WINDOW, SWIN_WINDOW // 2
    img = torch.zeros(1, resolution, resolution, 1)
    cnt = 0
    for h in (slice(0, -window), slice(-window, -shift), slice(-shift, None)):
        for w in (slice(0, -window), slice(-window, -shift), slice(-shift, None)):
            img[:, h, w, :] = cnt
            cnt += 1
    windows = img.view(1, resolution // window, window, resolution // window, window, 1).permute(0, 1, 3, 2, 4, 5)
    windows = windows.reshape(-1, window * window)
    mask = windows.unsqueeze(1) - windows.unsqueeze(2)
    return mask.masked_fill(mask != 0, -100.0).masked_fill(mask == 0, 0.0)


def microsoft_swin_tiny(rng: np.random.Generator) -> dict[str, torch.Tensor]:
    """``swin_tiny_patch4_window7_224.pth``'s ``model``: Microsoft's names, merging at the end of a stage."""
    t = {}

    def put(key, *shape, one=False):
        t[key] = torch.from_numpy((1 if one else 0) + _random(rng, *shape))

    put("patch_embed.proj.weight", SWIN_DIM, 3, 4, 4), put("patch_embed.proj.bias", SWIN_DIM)
    put("patch_embed.norm.weight", SWIN_DIM, one=True), put("patch_embed.norm.bias", SWIN_DIM)
    index = torch.arange(SWIN_WINDOW ** 2).view(SWIN_WINDOW ** 2, 1).expand(-1, SWIN_WINDOW ** 2).contiguous()
    for i, (depth, heads) in enumerate(zip(SWIN_DEPTHS, SWIN_HEADS)):
        d, resolution = SWIN_DIM * 2 ** i, SWIN_RESOLUTION // 2 ** i
        for j in range(depth):
            p = f"layers.{i}.blocks.{j}."
            put(p + "norm1.weight", d, one=True), put(p + "norm1.bias", d)
            put(p + "attn.relative_position_bias_table", (2 * SWIN_WINDOW - 1) ** 2, heads)
            t[p + "attn.relative_position_index"] = index
            put(p + "attn.qkv.weight", 3 * d, d), put(p + "attn.qkv.bias", 3 * d)
            put(p + "attn.proj.weight", d, d), put(p + "attn.proj.bias", d)
            put(p + "norm2.weight", d, one=True), put(p + "norm2.bias", d)
            put(p + "mlp.fc1.weight", 4 * d, d), put(p + "mlp.fc1.bias", 4 * d)
            put(p + "mlp.fc2.weight", d, 4 * d), put(p + "mlp.fc2.bias", d)
            if j % 2 and resolution > SWIN_WINDOW:
                t[p + "attn_mask"] = _swin_attn_mask(resolution)
        if i < len(SWIN_DEPTHS) - 1:
            put(f"layers.{i}.downsample.reduction.weight", 2 * d, 4 * d)
            put(f"layers.{i}.downsample.norm.weight", 4 * d, one=True), put(f"layers.{i}.downsample.norm.bias", 4 * d)
    width = SWIN_DIM * 2 ** (len(SWIN_DEPTHS) - 1)
    put("norm.weight", width, one=True), put("norm.bias", width)
    put("head.weight", CLASSIFIER_CLASSES, width), put("head.bias", CLASSIFIER_CLASSES)
    return t


def pvt_v2_b2(rng: np.random.Generator) -> dict[str, torch.Tensor]:
    """``pvt_v2_b2.pth`` as whai362/PVT released it: ``patch_embedN``, ``blockN.j``, ``normN``, ``head``."""
    t = {}

    def put(key, *shape, one=False):
        t[key] = torch.from_numpy((1 if one else 0) + _random(rng, *shape))

    previous = 3
    for s, (d, depth, ratio, sr) in enumerate(zip(PVT_DIMS, PVT_DEPTHS, PVT_MLP_RATIOS, PVT_SR), 1):
        kernel = 7 if s == 1 else 3
        put(f"patch_embed{s}.proj.weight", d, previous, kernel, kernel), put(f"patch_embed{s}.proj.bias", d)
        put(f"patch_embed{s}.norm.weight", d, one=True), put(f"patch_embed{s}.norm.bias", d)
        for j in range(depth):
            p = f"block{s}.{j}."
            put(p + "norm1.weight", d, one=True), put(p + "norm1.bias", d)
            put(p + "attn.q.weight", d, d), put(p + "attn.q.bias", d)
            put(p + "attn.kv.weight", 2 * d, d), put(p + "attn.kv.bias", 2 * d)
            if sr > 1:
                put(p + "attn.sr.weight", d, d, sr, sr), put(p + "attn.sr.bias", d)
                put(p + "attn.norm.weight", d, one=True), put(p + "attn.norm.bias", d)
            put(p + "attn.proj.weight", d, d), put(p + "attn.proj.bias", d)
            put(p + "norm2.weight", d, one=True), put(p + "norm2.bias", d)
            put(p + "mlp.fc1.weight", d * ratio, d), put(p + "mlp.fc1.bias", d * ratio)
            put(p + "mlp.dwconv.dwconv.weight", d * ratio, 1, 3, 3), put(p + "mlp.dwconv.dwconv.bias", d * ratio)
            put(p + "mlp.fc2.weight", d, d * ratio), put(p + "mlp.fc2.bias", d)
        put(f"norm{s}.weight", d, one=True), put(f"norm{s}.bias", d)
        previous = d
    put("head.weight", CLASSIFIER_CLASSES, PVT_DIMS[-1]), put("head.bias", CLASSIFIER_CLASSES)
    return t


def write_published_file(kind: str, folder: Path, seed: int = 0) -> Path:
    """Write the synthetic file of ``kind`` (``resnet34``, ``r50_vit_b16``, ``swin_tiny``, ``pvt_v2_b2``) into
    ``folder`` under its released name; return its path."""
    import torchvision  # installed with nnunetv2 (dynamic-network-architectures -> timm); only tests use it

    rng = np.random.default_rng(seed)
    if kind == "resnet34":
        torch.manual_seed(seed)
        path = folder / "resnet34-b627a593.pth"
        torch.save(torchvision.models.resnet34(weights=None).state_dict(), path)
    elif kind == "r50_vit_b16":
        path = folder / "R50+ViT-B_16.npz"
        np.savez(path, **google_r50_vit_b16(rng))
    elif kind == "swin_tiny":
        path = folder / "swin_tiny_patch4_window7_224.pth"
        torch.save({"model": microsoft_swin_tiny(rng)}, path)
    elif kind == "pvt_v2_b2":
        path = folder / "pvt_v2_b2.pth"
        torch.save(pvt_v2_b2(rng), path)
    else:
        raise ValueError(f"unknown published file {kind!r}")
    return path
