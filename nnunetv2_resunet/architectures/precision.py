"""How the transformer parts of a network stay finite under nnU-Net's fp16 autocast.

nnU-Net trains (``train_step``) and predicts (``nnUNetPredictor``) under ``torch.autocast`` with float16 on CUDA.
float16 tops out at 65504: attention logits, the query/key projections that feed them and a transformer's residual
stream can exceed it, and one ``inf`` turns the softmax into NaN. Convolutional networks rarely get there; the
transformers here can (nnU-Net issue #2197 reports Swin-Unet going NaN under nnU-Net).

Our decision: the transformer parts of a network (a timm encoder, Swin-Unet's decoder blocks) run under bfloat16
autocast whenever the caller's autocast is float16. bfloat16 has float32's exponent range, so nothing that fits in
float32 overflows, and on the GPUs nnU-Net runs on (Ampere and newer) it is as fast as float16. On a CUDA device
without bfloat16 those parts run in float32. Nothing changes outside an fp16 autocast region (fp32 training,
bf16 autocast, CPU). The convolutional decoders stay in nnU-Net's float16.
"""

from __future__ import annotations

import contextlib

import torch


def fp16_safe_autocast(device_type: str) -> contextlib.AbstractContextManager:
    """A context that replaces an active float16 autocast by bfloat16 (float32 where bfloat16 is unsupported).

    Args:
        device_type: The device type of the tensors the enclosed code computes on (``"cuda"``, ``"cpu"``).

    Returns:
        ``torch.autocast(device_type, dtype=torch.bfloat16)`` inside a float16 autocast region; a context that
        disables autocast there on a CUDA device without bfloat16; otherwise a no-op context.
    """
    if not torch.amp.is_autocast_available(device_type):  # e.g. the meta device of the memory estimate
        return contextlib.nullcontext()
    if not torch.is_autocast_enabled(device_type) or torch.get_autocast_dtype(device_type) != torch.float16:
        return contextlib.nullcontext()
    if device_type == "cuda" and not torch.cuda.is_bf16_supported():
        return torch.autocast(device_type, enabled=False)
    return torch.autocast(device_type, dtype=torch.bfloat16)
