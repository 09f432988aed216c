"""Measure how fast and how big nnU-Net trainers' networks train: ``nnUNetv2_resunet_benchmark``.

Every trainer is found by name as nnU-Net finds it (``recursive_find_trainer_class_by_name``, so ours come through
``nnUNet_extTrainer``) and instantiated for real on the plans of a dataset (``-d -c [-p]``) or on synthetic 2d plans
for a given patch and batch size. Its own ``build_network_architecture``, ``configure_optimizers`` (SGD, lr 1e-2,
Nesterov momentum 0.99), ``_build_loss`` (Dice + CE in ``DeepSupervisionWrapper`` with the trainer's deep-supervision
scales) and, in nnU-Net's default precision, ``train_step`` (autocast and GradScaler on CUDA) are what is timed; the
targets at each scale come from nnU-Net's ``DownsampleSegForDSTransform``. Only ``initialize`` is not called: it
needs a preprocessed dataset on disk, and the benchmark needs none.

Measurement lives here; :mod:`nnunetv2_resunet.benchmark_report` turns the numbers into tables and files.
"""

from __future__ import annotations

import argparse
import contextlib
import copy
import io
import os
import statistics
import sys
import tempfile
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass

import torch
from torch import nn
from torch._dynamo import OptimizedModule
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


# ------------------------------------------------------------------------------------------------------------ plans


def synthetic_plans(patch_size: Sequence[int], batch_size: int, plans_identifier: str = "nnUNetPlans",
                    num_input_channels: int = 1, num_classes: int = 14) -> tuple[dict, dict]:
    """Minimal 2d plans and dataset.json that nnU-Net's PlansManager and trainers accept, with no dataset on disk.

    The network topology is what nnU-Net's planner derives for this patch at isotropic spacing
    (``get_pool_and_conv_props``): a PlainConvUNet for ``nnUNetPlans``, a ResidualEncoderUNet with the ResEnc
    presets' blocks for any ``nnUNetResEncUNet*Plans`` (M, L and XL share the architecture; they differ in patch and
    batch size only, which are given here).

    Returns:
        ``(plans, dataset_json)``.
    """
    from nnunetv2.experiment_planning.experiment_planners.network_topology import get_pool_and_conv_props

    if len(patch_size) != 2 or min(patch_size) < 8:
        raise ValueError(f"synthetic plans are 2d: give two patch edges of at least 8, got {list(patch_size)}")
    if batch_size < 1:
        raise ValueError(f"batch size must be positive, got {batch_size}")
    _, pool_op_kernel_sizes, conv_kernel_sizes, padded_patch, _ = get_pool_and_conv_props(
        [1.0, 1.0], list(patch_size), 4, 999999)
    if [int(p) for p in padded_patch] != list(patch_size):
        raise ValueError(f"patch {list(patch_size)} is not a multiple of nnU-Net's stride for it; nnU-Net would plan "
                         f"{[int(p) for p in padded_patch]}")
    n_stages = len(pool_op_kernel_sizes)
    arch_kwargs = {
        "n_stages": n_stages,
        "features_per_stage": [min(512, 32 * 2 ** i) for i in range(n_stages)],
        "conv_op": "torch.nn.modules.conv.Conv2d",
        "kernel_sizes": conv_kernel_sizes,
        "strides": pool_op_kernel_sizes,
        "conv_bias": True,
        "norm_op": "torch.nn.modules.instancenorm.InstanceNorm2d",
        "norm_op_kwargs": {"eps": 1e-5, "affine": True},
        "dropout_op": None,
        "dropout_op_kwargs": None,
        "nonlin": "torch.nn.LeakyReLU",
        "nonlin_kwargs": {"inplace": True},
    }
    if plans_identifier.startswith("nnUNetResEncUNet"):
        network_class = "dynamic_network_architectures.architectures.unet.ResidualEncoderUNet"
        arch_kwargs["n_blocks_per_stage"] = [1, 3, 4, 6, 6, 6, 6, 6, 6, 6, 6, 6, 6][:n_stages]
        arch_kwargs["n_conv_per_stage_decoder"] = [1] * (n_stages - 1)
    else:
        network_class = "dynamic_network_architectures.architectures.unet.PlainConvUNet"
        arch_kwargs["n_conv_per_stage"] = [2] * n_stages
        arch_kwargs["n_conv_per_stage_decoder"] = [2] * (n_stages - 1)
    configuration = {
        "data_identifier": f"{plans_identifier}_2d",
        "preprocessor_name": "DefaultPreprocessor",
        "batch_size": batch_size,
        "patch_size": list(patch_size),
        "median_image_size_in_voxels": list(patch_size),
        "spacing": [1.0, 1.0],
        "normalization_schemes": ["ZScoreNormalization"] * num_input_channels,
        "use_mask_for_norm": [False] * num_input_channels,
        "resampling_fn_data": "resample_data_or_seg_to_shape",
        "resampling_fn_seg": "resample_data_or_seg_to_shape",
        "resampling_fn_data_kwargs": {"is_seg": False, "order": 3, "order_z": 0, "force_separate_z": None},
        "resampling_fn_seg_kwargs": {"is_seg": True, "order": 1, "order_z": 0, "force_separate_z": None},
        "resampling_fn_probabilities": "resample_data_or_seg_to_shape",
        "resampling_fn_probabilities_kwargs": {"is_seg": False, "order": 1, "order_z": 0, "force_separate_z": None},
        "architecture": {"network_class_name": network_class, "arch_kwargs": arch_kwargs,
                         "_kw_requires_import": ["conv_op", "norm_op", "dropout_op", "nonlin"]},
        "batch_dice": True,
    }
    plans = {
        "dataset_name": "Dataset999_Synthetic",
        "plans_name": plans_identifier,
        "original_median_spacing_after_transp": [1.0, 1.0, 1.0],
        "original_median_shape_after_transp": [1, *patch_size],
        "image_reader_writer": "SimpleITKIO",
        "transpose_forward": [0, 1, 2],
        "transpose_backward": [0, 1, 2],
        "configurations": {"2d": configuration},
        "experiment_planner_used": "synthetic (nnunetv2_resunet.benchmark)",
        "label_manager": "LabelManager",
        "foreground_intensity_properties_per_channel": {
            str(c): {"max": 1.0, "mean": 0.0, "median": 0.0, "min": -1.0, "percentile_00_5": -1.0,
                     "percentile_99_5": 1.0, "std": 1.0} for c in range(num_input_channels)},
    }
    dataset_json = {
        "channel_names": {str(c): "CT" for c in range(num_input_channels)},
        "labels": {"background": 0, **{f"class_{i}": i for i in range(1, num_classes)}},
        "numTraining": 1000,
        "file_ending": ".nii.gz",
    }
    return plans, dataset_json


def dataset_plans(dataset: str, plans_identifier: str) -> tuple[dict, dict]:
    """Plans and dataset.json of a planned dataset in ``nnUNet_preprocessed``."""
    from batchgenerators.utilities.file_and_folder_operations import isfile, join, load_json
    from nnunetv2.paths import nnUNet_preprocessed
    from nnunetv2.utilities.dataset_name_id_conversion import maybe_convert_to_dataset_name

    folder = join(nnUNet_preprocessed.require(), maybe_convert_to_dataset_name(dataset))
    plans_file = join(folder, plans_identifier + ".json")
    if not isfile(plans_file):
        raise FileNotFoundError(f"no plans {plans_file}; plan the dataset first (nnUNetv2_plan_experiment or "
                                f"nnUNetv2_resunet_plan)")
    return load_json(plans_file), load_json(join(folder, "dataset.json"))


# --------------------------------------------------------------------------------------------------------- trainers


@contextlib.contextmanager
def _scratch_nnunet_env(compile_network: bool) -> Iterator[None]:
    """nnU-Net's trainer writes a log file under ``nnUNet_results`` when constructed: point it at a scratch folder.
    ``nnUNet_compile`` is set so that the trainer's own compile decisions (the Dice loss) follow ``--compile``."""
    saved = {k: os.environ.get(k) for k in ("nnUNet_results", "nnUNet_compile")}
    with tempfile.TemporaryDirectory(prefix="resunet_benchmark_") as scratch:
        os.environ["nnUNet_results"] = scratch
        os.environ["nnUNet_compile"] = "true" if compile_network else "false"
        try:
            yield
        finally:
            for key, value in saved.items():
                if value is None:
                    os.environ.pop(key, None)
                else:
                    os.environ[key] = value


def build_trainer(trainer_name: str, plans: dict, dataset_json: dict, configuration: str, device: torch.device,
                  compile_network: bool = False, channels_last: bool | None = None):
    """Construct the trainer and give it what ``initialize`` would: network, optimizer, loss.

    The network is built by the trainer's own ``build_network_architecture`` with nnU-Net's arguments; nothing is
    read from a preprocessed dataset. ``channels_last=None`` does what the trainer's ``initialize`` does on this
    device (ours: NHWC on a single CUDA device, see ``ResUnetTrainer.channels_last_on_cuda``; nnU-Net's: never).
    """
    from nnunetv2.utilities.find_objects import recursive_find_trainer_class_by_name
    from nnunetv2.utilities.label_handling.label_handling import determine_num_input_channels

    with contextlib.redirect_stdout(io.StringIO()):
        trainer_class = recursive_find_trainer_class_by_name(trainer_name)
    if trainer_class is None:
        raise ValueError(f"trainer {trainer_name!r} not found in nnunetv2 or in nnUNet_extTrainer")
    if channels_last is None:
        channels_last = device.type == "cuda" and getattr(trainer_class, "channels_last_on_cuda", False)
    plans = copy.deepcopy(plans)
    plans["continue_training"] = False  # nnU-Net's run_training adds this key; the trainer pops it
    with _scratch_nnunet_env(compile_network), contextlib.redirect_stdout(io.StringIO()):
        trainer = trainer_class(plans, configuration, 0, dataset_json, device)
        trainer.num_input_channels = determine_num_input_channels(trainer.plans_manager,
                                                                  trainer.configuration_manager, dataset_json)
        network = trainer.build_network_architecture(
            trainer.plans_manager, trainer.configuration_manager, trainer.num_input_channels,
            trainer.label_manager.num_segmentation_heads, trainer.enable_deep_supervision).to(device)
        if channels_last:
            network = network.to(memory_format=torch.channels_last)
        trainer.network = torch.compile(network) if compile_network else network
        trainer.optimizer, trainer.lr_scheduler = trainer.configure_optimizers()
        trainer.loss = trainer._build_loss()
    trainer.benchmark_channels_last = channels_last
    return trainer


def bare_network(trainer) -> nn.Module:
    network = trainer.network
    return network._orig_mod if isinstance(network, OptimizedModule) else network


def make_batch(trainer, batch_size: int, device: torch.device,
               seed: int = 0) -> tuple[torch.Tensor, list[torch.Tensor] | torch.Tensor]:
    """Random images and labels of the plans' patch size, with the targets nnU-Net's data pipeline would give the
    loss: one per deep-supervision scale, made by ``DownsampleSegForDSTransform`` itself."""
    from batchgeneratorsv2.transforms.utils.deep_supervision_downsampling import DownsampleSegForDSTransform

    generator = torch.Generator().manual_seed(seed)
    patch_size = list(trainer.configuration_manager.patch_size)
    data = torch.randn((batch_size, trainer.num_input_channels, *patch_size), generator=generator)
    label_manager = trainer.label_manager
    if label_manager.has_regions:
        seg = torch.randint(0, 2, (batch_size, len(label_manager.foreground_regions), *patch_size),
                            generator=generator, dtype=torch.int16)
    else:
        seg = torch.randint(0, len(label_manager.all_labels), (batch_size, 1, *patch_size), generator=generator,
                            dtype=torch.int16)
    scales = trainer._get_deep_supervision_scales()
    if scales is None:
        target = seg.to(device)
    else:
        downsample = DownsampleSegForDSTransform(ds_scales=scales)
        per_sample = [downsample(segmentation=s)["segmentation"] for s in seg]
        target = [torch.stack([sample[i] for sample in per_sample]).to(device) for i in range(len(scales))]
    # NCHW even for a channels_last network, as nnU-Net's data loader delivers it; the first conv converts.
    return data.to(device), target


# ------------------------------------------------------------------------------------------------------ measuring


def count_forward_flops(network: nn.Module, input_shape: Sequence[int]) -> int:
    """FLOPs (a multiply-add is 2) of one training-mode forward of ``input_shape``, counted on the meta device."""
    meta_network = copy.deepcopy(network).to("meta")
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


def training_step(trainer, data: torch.Tensor, target, autocast_dtype: torch.dtype | None) -> Callable[[], object]:
    """One optimisation step. ``None``: nnU-Net's own ``train_step`` (autocast fp16 + GradScaler on CUDA, plain fp32
    on CPU). A dtype: the same step (zero_grad, forward, loss, backward, clip to 12, SGD step) under autocast with
    that dtype; the GradScaler only for fp16, as bf16 needs none."""
    if autocast_dtype is None:
        return lambda: trainer.train_step({"data": data, "target": target})

    scaler = trainer.grad_scaler if autocast_dtype == torch.float16 else None

    def step() -> float:
        trainer.optimizer.zero_grad(set_to_none=True)
        with torch.autocast(data.device.type, dtype=autocast_dtype, enabled=autocast_dtype != torch.float32):
            loss = trainer.loss(trainer.network(data), target)
        if scaler is not None:
            scaler.scale(loss).backward()
            scaler.unscale_(trainer.optimizer)
            torch.nn.utils.clip_grad_norm_(trainer.network.parameters(), 12)
            scaler.step(trainer.optimizer)
            scaler.update()
        else:
            loss.backward()
            torch.nn.utils.clip_grad_norm_(trainer.network.parameters(), 12)
            trainer.optimizer.step()
        return loss.detach().cpu().item()

    return step


def inference_step(trainer, patch: torch.Tensor, autocast_dtype: torch.dtype | None) -> Callable[[], object]:
    """One patch through the network as nnU-Net's predictor runs it: eval mode, no deep supervision, no grad,
    autocast on CUDA (fp16 unless a dtype is given)."""
    device_type = patch.device.type
    use_autocast = autocast_dtype not in (None, torch.float32) or (autocast_dtype is None and device_type == "cuda")
    dtype = autocast_dtype if autocast_dtype is not None else torch.float16

    def step() -> torch.Tensor:
        with torch.no_grad(), torch.autocast(device_type, dtype=dtype, enabled=use_autocast):
            return trainer.network(patch)

    return step


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
    are not counted). CPU (Linux): the growth of the process's resident set high-water mark (VmHWM), reset at entry
    through ``/proc/self/clear_refs``; it includes everything the process touched (also the allocator's and
    OpenMP's buffers), and memory that glibc kept from an earlier trainer can hide part of a later one's growth.
    ``None`` where neither is available.
    """

    def __init__(self, device: torch.device):
        self.device = device
        self.baseline: int | None = None
        self.peak_bytes: int | None = None

    def __enter__(self) -> PeakMemory:
        if self.device.type == "cuda":
            torch.cuda.synchronize(self.device)
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
    activations = (saved_activation_bytes(network, data[:1].repeat(2, 1, 1, 1), activation_autocast)
                   - saved_activation_bytes(network, data[:1], activation_autocast))

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


# ---------------------------------------------------------------------------------------------------------- CLI


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="nnUNetv2_resunet_benchmark",
        description="Parameters, FLOPs, training-step and inference time, memory and MFU of nnU-Net trainers' "
                    "networks, each as a ratio to the first trainer. Plans come from a dataset (-d -c [-p]) or are "
                    "synthetic 2d plans for --patch-size and --batch-size.")
    parser.add_argument("-tr", "--trainers", nargs="+",
                        default=["nnUNetTrainer", "ResUnetTrainer_v0_1", "ResUnetTrainer"],
                        help="Trainer names, optionally TRAINER:PLANS_IDENTIFIER to use other plans for one of them "
                             "(e.g. nnUNetTrainer:nnUNetResEncUNetMPlans). The first is the reference for ratios.")
    parser.add_argument("-d", "--dataset", help="Dataset name or id whose plans to use (needs nnUNet_preprocessed).")
    parser.add_argument("-c", "--configuration", default="2d", help="Configuration in the plans (default 2d).")
    parser.add_argument("-p", "--plans", default="nnUNetPlans", help="Plans identifier (default nnUNetPlans).")
    parser.add_argument("--patch-size", nargs=2, type=int, metavar=("H", "W"),
                        help="Synthetic 2d plans with this patch (without -d; default 512 512).")
    parser.add_argument("--batch-size", type=int,
                        help="Batch size (default: the plans'; 12 for synthetic plans, nnU-Net's 2d reference).")
    parser.add_argument("--num-classes", type=int, default=14,
                        help="Outputs of synthetic plans, background included (default 14, as Synapse).")
    parser.add_argument("--input-channels", type=int, default=1, help="Input channels of synthetic plans.")
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu",
                        help="cuda, cuda:N or cpu (default: cuda if available).")
    parser.add_argument("--dtype", choices=sorted(DTYPES), default="auto",
                        help="auto: nnU-Net's train_step (autocast fp16 + GradScaler on CUDA, fp32 on CPU); "
                             "bf16/fp16/fp32: the same step under autocast with that dtype.")
    parser.add_argument("--compile", action="store_true", help="torch.compile the network (and the Dice loss, as "
                        "nnU-Net does with nnUNet_compile).")
    parser.add_argument("--channels-last", choices=("auto", "on", "off"), default="auto",
                        help="Network and inputs in channels_last: auto does what each trainer does on the device "
                             "(ResUnet trainers: on with CUDA; nnU-Net's: off), on/off force it for all.")
    parser.add_argument("--warmup", type=int, default=3, help="Untimed steps before timing (default 3).")
    parser.add_argument("--steps", type=int, default=10, help="Timed steps; the median is reported (default 10).")
    parser.add_argument("--peak-tflops", type=float,
                        help="Device peak in TFLOP/s for MFU (default: a table of known GPUs; none on CPU).")
    parser.add_argument("--threads", type=int, help="CPU threads for torch (default: torch's).")
    parser.add_argument("--cpu-time", action="store_true",
                        help="On CPU, time with the process's CPU time instead of wall time (robust on a shared "
                             "machine; with N threads it counts N cores' time).")
    parser.add_argument("-o", "--output-dir", default=os.path.join("results", "benchmarks"),
                        help="Where the .json and .md go (default results/benchmarks).")
    parser.add_argument("--name", help="Base name of the output files (default: date, device and plans).")
    args = parser.parse_args(argv)
    if args.dataset is not None and args.patch_size is not None:
        parser.error("give either -d (the dataset's plans) or --patch-size (synthetic plans), not both")
    if args.warmup < 0 or args.steps < 1:
        parser.error(f"need --warmup >= 0 and --steps >= 1, got {args.warmup} and {args.steps}")
    return args


def run(args: argparse.Namespace) -> tuple[dict, list[dict]]:
    """Benchmark every trainer of ``args``; returns the run's metadata and the results with ratios."""
    from nnunetv2_resunet import benchmark_report

    if args.threads:
        torch.set_num_threads(args.threads)
    device = torch.device(args.device)
    if device.type == "cuda":
        # As nnU-Net's run_training does.
        torch.backends.cudnn.deterministic = False
        torch.backends.cudnn.benchmark = True
    specs = [TrainerSpec.parse(t) for t in args.trainers]
    synthetic = args.dataset is None
    patch_size = args.patch_size or [512, 512]
    results = []
    for spec in specs:
        plans_identifier = spec.plans_identifier or args.plans
        if synthetic:
            plans, dataset_json = synthetic_plans(patch_size, args.batch_size or 12, plans_identifier,
                                                  args.input_channels, args.num_classes)
            configuration = "2d"
        else:
            plans, dataset_json = dataset_plans(args.dataset, plans_identifier)
            configuration = args.configuration
        print(f"benchmarking {spec.label} ...", file=sys.stderr, flush=True)
        channels_last = {"auto": None, "on": True, "off": False}[args.channels_last]
        results.append(benchmark_trainer(spec, plans, dataset_json, configuration, device, args.batch_size,
                                         args.dtype, args.compile, channels_last, args.warmup, args.steps,
                                         args.peak_tflops, args.cpu_time))
    meta = {
        "device": describe_device(device),
        "device_type": device.type,
        "torch": torch.__version__,
        "dtype": effective_dtype_name(device, args.dtype),
        "nnunet_default_step": args.dtype == "auto",
        "compile": args.compile,
        "clock": "CUDA events" if device.type == "cuda" else ("process CPU time" if args.cpu_time else "wall"),
        "channels_last": args.channels_last,
        "plans": "synthetic 2d" if synthetic else f"{args.dataset} {args.plans} {args.configuration}",
        "warmup": args.warmup,
        "steps": args.steps,
        "date": time.strftime("%Y-%m-%d %H:%M:%S"),
        "peak_memory_measures": benchmark_report.PEAK_MEMORY_NOTE[device.type],
    }
    return meta, add_ratios(results)


def main(argv: Sequence[str] | None = None) -> None:
    from nnunetv2_resunet import benchmark_report

    args = parse_args(argv)
    meta, results = run(args)
    print(benchmark_report.format_table(meta, results))
    paths = benchmark_report.write_results(meta, results, args.output_dir, args.name)
    print("\n".join(f"wrote {p}" for p in paths))
