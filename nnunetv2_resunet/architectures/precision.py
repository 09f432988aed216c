"""How the transformer parts of a network stay finite under nnU-Net's fp16 autocast.

nnU-Net trains (``train_step``) and predicts (``nnUNetPredictor``) under ``torch.autocast`` with float16 on CUDA.
float16 tops out at 65504: attention logits, the query/key projections that feed them and a transformer's residual
stream can exceed it, and one ``inf`` turns the softmax into NaN. Convolutional networks rarely get there; the
transformers here can (nnU-Net issue #2197 reports Swin-Unet going NaN under nnU-Net).

Our decision: the transformer parts of a network (a timm encoder, Swin-Unet's decoder blocks) run under bfloat16
autocast whenever the caller's autocast is float16. bfloat16 has float32's exponent range, so nothing that fits in
float32 overflows, and on the GPUs nnU-Net runs on (Ampere and newer) it is as fast as float16. On a CUDA device
without bfloat16 those parts run in float32. Nothing changes outside an fp16 autocast region (fp32 training,
bf16 autocast, CPU). The convolutional decoders stay in nnU-Net's float16. What leaves a bfloat16 region into the
float16 region around it is handed over as float32 (:func:`leave_bf16`): autocast refuses to mix float16 and
bfloat16 in one operation (``torch.cat`` of a skip and an upsampled map), and float32 keeps the range.
"""

from __future__ import annotations

import contextlib

import torch


def _in_fp16_autocast(device_type: str) -> bool:
    return (torch.amp.is_autocast_available(device_type)  # not e.g. the meta device of the memory estimate
            and torch.is_autocast_enabled(device_type) and torch.get_autocast_dtype(device_type) == torch.float16)


def fp16_safe_autocast(device_type: str) -> contextlib.AbstractContextManager:
    """A context that replaces an active float16 autocast by bfloat16 (float32 where bfloat16 is unsupported).

    Args:
        device_type: The device type of the tensors the enclosed code computes on (``"cuda"``, ``"cpu"``).

    Returns:
        ``torch.autocast(device_type, dtype=torch.bfloat16)`` inside a float16 autocast region; a context that
        disables autocast there on a CUDA device without bfloat16; otherwise a no-op context.
    """
    if not _in_fp16_autocast(device_type):
        return contextlib.nullcontext()
    if device_type == "cuda" and not torch.cuda.is_bf16_supported():
        return torch.autocast(device_type, enabled=False)
    return torch.autocast(device_type, dtype=torch.bfloat16)


def leave_bf16(tensor: torch.Tensor) -> torch.Tensor:
    """A tensor computed under :func:`fp16_safe_autocast`, as float32 if the code around runs under float16
    autocast and the tensor is bfloat16; otherwise the tensor itself."""
    if tensor.dtype == torch.bfloat16 and _in_fp16_autocast(tensor.device.type):
        return tensor.float()
    return tensor
