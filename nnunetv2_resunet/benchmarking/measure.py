"""Measuring a network: FLOPs, activation memory saved for backward, wall or CPU time, peak memory, device peaks.

Device-independent where it can be (FLOPs and saved bytes are counted, not timed); what needs a clock or an
allocator says which one it used.
"""

from __future__ import annotations

import contextlib
import copy
import statistics
import time
from collections.abc import Callable, Sequence

import torch
from torch import nn
from torch.utils.flop_counter import FlopCounterMode

DTYPES = {"auto": None, "fp32": torch.float32, "fp16": torch.float16, "bf16": torch.bfloat16}

# Dense (no 2:4 sparsity) tensor-core peaks in TFLOP/s from the vendors' datasheets and whitepapers, by dtype.
# fp16/bf16 are with fp32 accumulation (what autocast uses); fp32 is TF32 on tensor cores, which PyTorch uses for
# convolutions by default (torch.backends.cudnn.allow_tf32). First matching substring of the device name wins, so
# more specific names come first. Override with --peak-tflops for anything else (or for clocks below boost).
PEAK_TFLOPS: tuple[tuple[str, dict[str, float]], ...] = (
    ("H100 PCIe", {"bf16": 756.0, "fp16": 756.0, "fp32": 378.0}),
    ("H100 NVL", {"bf16": 835.0, "fp16": 835.0, "fp32": 418.0}),
    ("H100", {"bf16": 989.0, "fp16": 989.0, "fp32": 495.0}),  # SXM5
    ("H200 NVL", {"bf16": 835.0, "fp16": 835.0, "fp32": 418.0}),
    ("H200", {"bf16": 989.0, "fp16": 989.0, "fp32": 495.0}),  # SXM, same compute as H100 SXM
    ("A100", {"bf16": 312.0, "fp16": 312.0, "fp32": 156.0}),
    ("RTX 4090", {"bf16": 165.0, "fp16": 165.0, "fp32": 82.6}),
    ("RTX 3090", {"bf16": 71.0, "fp16": 71.0, "fp32": 35.6}),  # GA102: 142 with fp16 accumulation, 71 with fp32
)


def count_forward_flops(network: nn.Module, input_shape: Sequence[int]) -> int:
    """FLOPs (a multiply-add is 2) of one forward of ``input_shape`` in the network's deep-supervision mode, counted
    on the meta device. Batch norm runs in eval mode there (it counts no FLOPs either way, and a batch of one at a
    1 x 1 feature map is no batch for training-mode statistics)."""
    meta_network = copy.deepcopy(network).to("meta").eval()
    counter = FlopCounterMode(display=False)
    with counter, torch.no_grad():
        meta_network(torch.empty(tuple(input_shape), device="meta"))
    return int(counter.get_total_flops())


def saved_activation_bytes(network: nn.Module, data: torch.Tensor, autocast_dtype: torch.dtype | None = None) -> int:
    """Bytes of the tensors one forward saves for backward, parameters excluded (each storage counted once).

    This is the activation memory a training step holds at its peak, and it does not depend on the device: the same
    figure on CPU and GPU for the same dtypes. Allocator caches, cuDNN workspaces and gradients come on top.
    """
    parameters = {p.untyped_storage().data_ptr() for p in network.parameters()}
    saved: dict[int, int] = {}

    def pack(tensor: torch.Tensor) -> torch.Tensor:
        storage = tensor.untyped_storage()
        if storage.data_ptr() not in parameters and tensor.device.type != "meta":
            saved[storage.data_ptr()] = storage.nbytes()
        return tensor

    autocast = (torch.autocast(data.device.type, dtype=autocast_dtype) if autocast_dtype is not None
                else contextlib.nullcontext())
    with torch.autograd.graph.saved_tensors_hooks(pack, lambda tensor: tensor), autocast:
        network(data)
    return sum(saved.values())


class Timer:
    """Wall time of a callable: CUDA events on a GPU (the work is asynchronous), ``time.perf_counter`` on CPU, or
    with ``cpu_time`` on CPU the process's CPU time (``time.process_time``, summed over threads), which other
    processes on a shared machine disturb far less than wall time."""

    def __init__(self, device: torch.device, cpu_time: bool = False):
        self.device = device
        self.clock = time.process_time if cpu_time else time.perf_counter

    def __call__(self, fn: Callable[[], object]) -> float:
        if self.device.type == "cuda":
            start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
            start.record()
            fn()
            end.record()
            torch.cuda.synchronize(self.device)
            return start.elapsed_time(end) / 1000
        start_time = self.clock()
        fn()
        return self.clock() - start_time


def median_time(fn: Callable[[], object], device: torch.device, warmup: int, steps: int,
                cpu_time: bool = False) -> float:
    """Median seconds of ``steps`` calls after ``warmup`` calls (compilation, cuDNN autotuning, allocator warm-up)."""
    timer = Timer(device, cpu_time)
    for _ in range(warmup):
        timer(fn)
    return statistics.median(timer(fn) for _ in range(steps))


def _rss_bytes(field: str) -> int | None:
    try:
        with open("/proc/self/status") as status:
            for line in status:
                if line.startswith(field + ":"):
                    return int(line.split()[1]) * 1024
    except OSError:
        return None
    return None


class PeakMemory:
    """Peak memory of what runs inside the ``with`` block, over what was held when it began.

    CUDA: ``torch.cuda.max_memory_allocated`` (tensors only; the caching allocator's reserve and the CUDA context
    are not counted); ``reserved_bytes`` is the allocator's peak reserve in the block (absolute: what the process
    asked the GPU for, the figure that runs out first). CPU (Linux): the growth of the process's resident set
    high-water mark (VmHWM), reset at entry through ``/proc/self/clear_refs``; it includes everything the process
    touched (also the allocator's and OpenMP's buffers), and memory that glibc kept from an earlier trainer can hide
    part of a later one's growth.
    ``None`` where neither is available.
    """

    def __init__(self, device: torch.device):
        self.device = device
        self.baseline: int | None = None
        self.peak_bytes: int | None = None
        self.reserved_bytes: int | None = None

    def __enter__(self) -> PeakMemory:
        if self.device.type == "cuda":
            torch.cuda.synchronize(self.device)
            torch.cuda.empty_cache()
            torch.cuda.reset_peak_memory_stats(self.device)
            self.baseline = torch.cuda.memory_allocated(self.device)
        else:
            try:
                with open("/proc/self/clear_refs", "w") as clear_refs:
                    clear_refs.write("5")
                self.baseline = _rss_bytes("VmRSS")
            except OSError:
                self.baseline = None
        return self

    def __exit__(self, *exc) -> None:
        if self.baseline is None:
            return
        if self.device.type == "cuda":
            torch.cuda.synchronize(self.device)
            self.peak_bytes = torch.cuda.max_memory_allocated(self.device) - self.baseline
            self.reserved_bytes = torch.cuda.max_memory_reserved(self.device)
        else:
            peak = _rss_bytes("VmHWM")
            self.peak_bytes = None if peak is None else max(peak - self.baseline, 0)


def device_peak_tflops(device: torch.device, dtype_name: str) -> float | None:
    """Dense tensor-core peak of a known GPU for ``dtype_name`` (fp16, bf16 or fp32/TF32), else ``None``."""
    if device.type != "cuda":
        return None
    name = torch.cuda.get_device_name(device)
    for pattern, peaks in PEAK_TFLOPS:
        if pattern in name:
            return peaks.get(dtype_name)
    return None


def effective_dtype_name(device: torch.device, dtype: str) -> str:
    """What ``auto`` means: nnU-Net autocasts to fp16 on CUDA and runs fp32 elsewhere."""
    if dtype != "auto":
        return dtype
    return "fp16" if device.type == "cuda" else "fp32"
