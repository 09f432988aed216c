"""How the transformer parts of a network stay finite under nnU-Net's fp16 autocast.

nnU-Net trains (``train_step``) and predicts (``nnUNetPredictor``) under ``torch.autocast`` with float16 on CUDA.
float16 tops out at 65504: attention logits, the query/key projections that feed them and a transformer's residual
stream can exceed it, and one ``inf`` turns the softmax into NaN. Convolutional networks rarely get there; the
transformers here can (nnU-Net issue #2197 reports Swin-Unet going NaN under nnU-Net).

Our decision: the transformer parts of a network (a timm encoder, Swin-Unet's decoder blocks) run through
:func:`fp16_safe`, which computes them in bfloat16 whenever the caller's autocast is float16. bfloat16 has float32's
exponent range, so nothing that fits in float32 overflows, and on the GPUs that compute it natively (compute
capability 8.0 and newer: Ampere, Hopper, Ada, Blackwell) it is as fast as float16. Older GPUs (V100, T4, RTX 20xx)
have no bfloat16 tensor cores and cuDNN has no bfloat16 convolutions for them, so there those parts run in float32
(``torch.cuda.is_bf16_supported()`` is no guide: by default it counts emulation and answers True on a V100). The
decision is the device's compute capability, and :func:`assume_compute_capability` lets a test play any GPU.
Nothing changes outside an fp16 autocast region (fp32 training, bf16 autocast, CPU). The convolutional decoders stay
in nnU-Net's float16. Tensors cross the border as float32: what enters a float32 region is cast up (autocast is off
there, and a float16 input would meet float32 weights), and what leaves a bfloat16 region into the float16 one
around it is handed over as float32 (autocast refuses to mix float16 and bfloat16 in one operation, ``torch.cat``
of a skip and an upsampled map, and float32 keeps the range).
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator
from typing import TypeVar

import torch
from torch.utils._pytree import tree_leaves, tree_map

T = TypeVar("T")

#: The compute capability from which CUDA GPUs compute bfloat16 natively (Ampere).
NATIVE_BF16_CAPABILITY = (8, 0)

_assumed_capability: tuple[int, int] | None = None


@contextlib.contextmanager
def assume_compute_capability(capability: tuple[int, int]) -> Iterator[None]:
    """Decide precision as on a CUDA GPU of ``capability`` (e.g. ``(7, 0)`` for a V100, ``(8, 0)`` for an A100),
    whatever the device, while the context is active: how tests take a GPU's precision path under CPU autocast."""
    global _assumed_capability
    saved, _assumed_capability = _assumed_capability, tuple(capability)
    try:
        yield
    finally:
        _assumed_capability = saved


def native_bf16(device: torch.device) -> bool:
    """Whether ``device`` computes bfloat16 natively: CUDA GPUs from compute capability 8.0 (ROCm GPUs and CPUs
    always); under :func:`assume_compute_capability`, the assumed GPU's answer."""
    if _assumed_capability is not None:
        return _assumed_capability >= NATIVE_BF16_CAPABILITY
    if device.type != "cuda" or torch.version.hip:
        return True
    # get_device_properties, not get_device_capability: torch.compile folds it into a constant.
    properties = torch.cuda.get_device_properties(device)
    return (properties.major, properties.minor) >= NATIVE_BF16_CAPABILITY


def _in_fp16_autocast(device_type: str) -> bool:
    return (torch.amp.is_autocast_available(device_type)  # not e.g. the meta device of the memory estimate
            and torch.is_autocast_enabled(device_type) and torch.get_autocast_dtype(device_type) == torch.float16)


def fp16_safe_dtype(device: torch.device) -> torch.dtype | None:
    """The dtype :func:`fp16_safe` computes in on ``device`` now: None outside a float16 autocast region (nothing
    changes), else bfloat16 where it is native, float32 where not."""
    if not _in_fp16_autocast(device.type):
        return None
    return torch.bfloat16 if native_bf16(device) else torch.float32


def _as_float32(tensor):
    if isinstance(tensor, torch.Tensor) and tensor.dtype in (torch.float16, torch.bfloat16):
        return tensor.float()
    return tensor


def fp16_safe(function: Callable[..., T], *inputs) -> T:
    """``function(*inputs)`` computed as a transformer part under nnU-Net's fp16 autocast (see the module docstring).

    Args:
        function: The part's computation; takes ``inputs``, returns tensors (a tensor, or a list, tuple or dict of
            them).
        inputs: Its inputs; the first tensor among them gives the device.

    Returns:
        ``function(*inputs)`` unchanged outside a float16 autocast region. Inside one, computed under bfloat16
        autocast (native bfloat16) or with autocast off on float32 inputs (no native bfloat16), and every float16
        or bfloat16 tensor it returns as float32.
    """
    device = next(x.device for x in tree_leaves(inputs) if isinstance(x, torch.Tensor))
    dtype = fp16_safe_dtype(device)
    if dtype is None:
        return function(*inputs)
    if dtype == torch.float32:
        with torch.autocast(device.type, enabled=False):
            outputs = function(*tree_map(_as_float32, inputs))
    else:
        with torch.autocast(device.type, dtype=dtype):
            outputs = function(*inputs)
    return tree_map(_as_float32, outputs)
