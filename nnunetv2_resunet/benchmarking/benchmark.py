"""Measure how fast and how big nnU-Net trainers' networks train (``nnUNetv2_resunet_benchmark``).

Every trainer is found by name as nnU-Net finds it (``recursive_find_trainer_class_by_name``, so ours come through
``nnUNet_extTrainer``) and instantiated for real on the plans of a dataset (``-d -c [-p]``) or on synthetic 2d plans
for a given patch and batch size. Its own ``build_network_architecture``, ``configure_optimizers`` (SGD, lr 1e-2,
Nesterov momentum 0.99), ``_build_loss`` (Dice + CE in ``DeepSupervisionWrapper`` with the trainer's deep-supervision
scales) and, in nnU-Net's default precision, ``train_step`` (autocast and GradScaler on CUDA) are what is timed; the
targets at each scale come from nnU-Net's ``DownsampleSegForDSTransform``. Only ``initialize`` is not called: it
needs a preprocessed dataset on disk, and the benchmark needs none.

This module benchmarks one trainer and relates trainers to each other; :mod:`.measure` measures, :mod:`.trainer_steps`
prepares a trainer without a dataset, :mod:`.tables` turns the numbers into tables and files, :mod:`.cli` is the
command.
"""

from __future__ import annotations

import contextlib
import io
from dataclasses import dataclass

import torch

from nnunetv2_resunet.benchmarking.measure import (
    DTYPES,
    PeakMemory,
    count_forward_flops,
    device_peak_tflops,
    effective_dtype_name,
    median_time,
    saved_activation_bytes,
)
from nnunetv2_resunet.benchmarking.trainer_steps import (
    bare_network,
    build_trainer,
    inference_step,
    make_batch,
    training_step,
)


@dataclass(frozen=True)
class TrainerSpec:
    """A trainer to benchmark, optionally with its own plans identifier (``TRAINER:PLANS`` on the command line)."""

    trainer_name: str
    plans_identifier: str | None = None

    @classmethod
    def parse(cls, text: str) -> TrainerSpec:
        name, _, plans = text.partition(":")
        if not name:
            raise ValueError(f"expected TRAINER or TRAINER:PLANS_IDENTIFIER, got {text!r}")
        return cls(name, plans or None)

    @property
    def label(self) -> str:
        return self.trainer_name if self.plans_identifier is None else f"{self.trainer_name}:{self.plans_identifier}"


def benchmark_trainer(spec: TrainerSpec, plans: dict, dataset_json: dict, configuration: str, device: torch.device,
                      batch_size: int | None = None, dtype: str = "auto", compile_network: bool = False,
                      channels_last: bool | None = None, warmup: int = 3, steps: int = 10,
                      peak_tflops: float | None = None, cpu_time: bool = False) -> dict:
    """All figures for one trainer. Times are medians in seconds; FLOPs per patch (one sample)."""
    with PeakMemory(device) as peak:
        trainer = build_trainer(spec.trainer_name, plans, dataset_json, configuration, device, compile_network,
                                channels_last)
        batch_size = batch_size or trainer.configuration_manager.batch_size
        data, target = make_batch(trainer, batch_size, device)
        autocast_dtype = DTYPES[dtype]
        with contextlib.redirect_stdout(io.StringIO()):
            step_seconds = median_time(training_step(trainer, data, target, autocast_dtype), device, warmup, steps,
                                       cpu_time)
    network = bare_network(trainer)
    patch_size = list(trainer.configuration_manager.patch_size)
    forward_flops = count_forward_flops(network, (1, trainer.num_input_channels, *patch_size))
    parameters = sum(p.numel() for p in network.parameters())

    activation_autocast = autocast_dtype if dtype != "auto" else (torch.float16 if device.type == "cuda" else None)
    if activation_autocast == torch.float32:
        activation_autocast = None
    # Two patches minus one: what one more patch adds, without autocast's cast copies of the weights (saved once).
    # The patch gets a storage of its own: a view into the batch would count the whole batch's input as saved.
    patch = data[:1].clone()
    activations = (saved_activation_bytes(network, patch.repeat(2, 1, 1, 1), activation_autocast)
                   - saved_activation_bytes(network, patch, activation_autocast))

    with contextlib.redirect_stdout(io.StringIO()):
        trainer.set_deep_supervision_enabled(False)
    trainer.network.eval()
    inference_seconds = median_time(inference_step(trainer, data[:1], autocast_dtype), device, warmup, steps,
                                    cpu_time)

    dtype_name = effective_dtype_name(device, dtype)
    peak_tflops = peak_tflops or device_peak_tflops(device, dtype_name)
    # A training step costs about 3 forwards (the backward computes gradients w.r.t. inputs and weights).
    achieved_tflops = 3 * forward_flops * batch_size / step_seconds / 1e12
    result = {
        "trainer": spec.label,
        "network": type(network).__name__,
        "patch_size": patch_size,
        "batch_size": batch_size,
        "channels_last": trainer.benchmark_channels_last,
        "parameters": parameters,
        "forward_gflops_per_patch": forward_flops / 1e9,
        "train_step_ms": step_seconds * 1e3,
        "train_ms_per_patch": step_seconds * 1e3 / batch_size,
        "inference_ms_per_patch": inference_seconds * 1e3,
        "peak_memory_mib": None if peak.peak_bytes is None else peak.peak_bytes / 2 ** 20,
        "activation_mib_per_patch": activations / 2 ** 20,
        "achieved_tflops": achieved_tflops,
        "mfu": None if peak_tflops is None else achieved_tflops / peak_tflops,
    }
    del trainer, network, data, target
    if device.type == "cuda":
        torch.cuda.empty_cache()
    return result


RATIO_FIELDS = ("parameters", "forward_gflops_per_patch", "train_step_ms", "train_ms_per_patch",
                "inference_ms_per_patch", "peak_memory_mib", "activation_mib_per_patch", "mfu")


def add_ratios(results: list[dict]) -> list[dict]:
    """Each figure as a ratio to the first trainer's (measured in the same run); a copy, inputs untouched."""
    reference = results[0]
    with_ratios = []
    for result in results:
        ratios = {}
        for field in RATIO_FIELDS:
            value, base = result.get(field), reference.get(field)
            ratios[field] = value / base if value is not None and base else None
        with_ratios.append({**result, "ratio_to_first": ratios})
    return with_ratios


def describe_device(device: torch.device) -> str:
    if device.type == "cuda":
        return torch.cuda.get_device_name(device)
    import platform

    return f"CPU {platform.processor() or platform.machine()}, {torch.get_num_threads()} threads"
