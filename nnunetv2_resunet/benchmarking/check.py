"""``nnUNetv2_resunet_check``: is the plugin healthy on this machine's GPU, and what does it cost there.

One command, nothing but what ``pip install .`` brings, a few minutes on one GPU. It runs nnU-Net's real training
step (``train_step``: fp16 autocast and GradScaler on CUDA) for nnU-Net's default and every trainer of ours on
synthetic Synapse-like plans (512 x 512, batch 12, 14 classes), compiled as well for the networks users compile
most (nnU-Net's default, v0.1, v1.0, the transformers), and reports per trainer: finite losses, the GradScaler's
scale, peak allocated and reserved memory, the step time and its ratio to nnU-Net's default, model FLOPs
utilisation. Then the planner's memory prediction against the real peak (``nnUNetv2_resunet_plan``'s batch for
8 and 24 GB, trained at that batch), and CUDA against CPU prediction on one small case (nnU-Net's predictor). It
writes ``check.json`` and ``check.md`` under ``results/gpu/<device>/`` and exits non-zero when something is
unhealthy (an error, a non-finite loss, a plan that does not fit its target, predictions that disagree).

On CPU it runs the same code at whatever sizes it is given (the tests run it at 32 x 32), so the suite covers it;
its CPU times say nothing about a GPU.
"""

from __future__ import annotations

import contextlib
import io
import math
import platform
import statistics
import time
import traceback
from collections.abc import Sequence
from importlib.metadata import PackageNotFoundError, version

import torch

from nnunetv2_resunet.architectures.precision import fp16_safe_dtype, native_bf16
from nnunetv2_resunet.benchmarking.measure import PeakMemory, Timer, count_forward_flops, device_peak_tflops
from nnunetv2_resunet.benchmarking.trainer_steps import bare_network, build_trainer, make_batch
from nnunetv2_resunet.experiment_planning.synthetic_plans import synthetic_plans

#: What the check times besides our trainers, first: the reference of every ratio.
NNUNET_DEFAULT = "nnUNetTrainer"
#: Compiled as well by default: the networks users compile most (compiling costs about a minute a network).
COMPILED_BY_DEFAULT = (NNUNET_DEFAULT, "ResUnetTrainer_v0_1", "ResUnetTrainer", "TransUNetTrainer",
                       "SwinUnetTrainer", "EMCADTrainer", "ResUnetTrainer_PVTv2B2")
#: Our aims, printed beside the figures.
AIM_STEP_RATIO = 2.0  # ResUnet v1.0's step at most 2x nnU-Net's 2d network on the same plan
AIM_MFU = 0.40  # at least 40 % MFU (16-bit tensor cores) on an H100
#: Prediction agreement below this fraction of voxels is reported as unhealthy.
MIN_AGREEMENT = 0.99
PACKAGES = ("nnunetv2", "nnunetv2-resunet", "torch", "timm", "dynamic-network-architectures", "batchgenerators",
            "batchgeneratorsv2", "numpy", "SimpleITK")


def _version(package: str) -> str:
    try:
        return version(package)
    except PackageNotFoundError:
        return "not installed"


def describe_environment(device: torch.device) -> dict:
    """Versions, the device, and the precision the transformer parts take on it under nnU-Net's fp16 autocast."""
    info = {"python": platform.python_version(), "platform": platform.platform(),
            "packages": {p: _version(p) for p in PACKAGES}, "cuda": torch.version.cuda,
            "cudnn": torch.backends.cudnn.version() if torch.backends.cudnn.is_available() else None,
            "device_type": device.type}
    if device.type == "cuda":
        properties = torch.cuda.get_device_properties(device)
        info.update(device=properties.name, compute_capability=f"{properties.major}.{properties.minor}",
                    memory_gib=round(properties.total_memory / 2 ** 30, 1))
    else:
        info.update(device=f"CPU {platform.processor() or platform.machine()}, {torch.get_num_threads()} threads")
    with torch.autocast(device.type, dtype=torch.float16):
        transformer_dtype = fp16_safe_dtype(device)
    info.update(native_bf16=native_bf16(device),
                transformer_parts_under_fp16=str(transformer_dtype).replace("torch.", ""))
    return info


def train_steps(trainer_name: str, plans: dict, dataset_json: dict, device: torch.device, warmup: int, steps: int,
                compiled: bool = False, compile_backend: str | None = None) -> dict:
    """``warmup + steps`` of the trainer's own ``train_step`` on one batch of the plans' patch and batch size.

    Returns the figures of one row (see :func:`run_check`); an error (out of memory included) is a row with
    ``error`` set, not an exception.
    """
    row = {"trainer": trainer_name, "compiled": compiled}
    trainer = None
    try:
        with PeakMemory(device) as peak:
            trainer = build_trainer(trainer_name, plans, dataset_json, "2d", device, compile_network=compiled,
                                    compile_backend=compile_backend)
            batch_size = trainer.configuration_manager.batch_size
            data, target = make_batch(trainer, batch_size, device)
            batch, train_step = {"data": data, "target": target}, trainer.train_step
            losses, seconds = [], []
            timer = Timer(device)
            started = time.perf_counter()
            with contextlib.redirect_stdout(io.StringIO()):
                for step in range(warmup + steps):
                    elapsed = timer(lambda: losses.append(float(train_step(batch)["loss"])))
                    if step >= warmup:
                        seconds.append(elapsed)
            row["wall_s"] = time.perf_counter() - started
        network = bare_network(trainer)
        patch_size = list(trainer.configuration_manager.patch_size)
        flops = count_forward_flops(network, (1, trainer.num_input_channels, *patch_size))
        step_s = statistics.median(seconds)
        peak_tflops = device_peak_tflops(device, "fp16")
        row.update(
            patch_size=patch_size, batch_size=batch_size, parameters=sum(p.numel() for p in network.parameters()),
            finite=all(math.isfinite(v) for v in losses), first_loss=losses[0], last_loss=losses[-1],
            grad_scale=None if trainer.grad_scaler is None else float(trainer.grad_scaler.get_scale()),
            peak_allocated_gib=_gib(peak.peak_bytes if device.type == "cuda" else None),
            peak_reserved_gib=_gib(peak.reserved_bytes), step_ms=step_s * 1e3,
            forward_gflops_per_patch=flops / 1e9,
            mfu=None if peak_tflops is None else 3 * flops * batch_size / step_s / 1e12 / peak_tflops)
    except Exception as error:  # reported per row: one broken trainer must not hide the others
        row["error"] = f"{type(error).__name__}: {error}".splitlines()[0][:300]
        row["traceback"] = traceback.format_exc()
    finally:
        del trainer
        if device.type == "cuda":
            torch.cuda.empty_cache()
    return row


def _gib(size: int | None) -> float | None:
    return None if size is None else size / 2 ** 30


def add_step_ratios(rows: list[dict]) -> None:
    """Each row's step time over nnU-Net's default's, compiled to compiled and eager to eager."""
    reference = {r["compiled"]: r.get("step_ms") for r in rows if r["trainer"] == NNUNET_DEFAULT}
    for row in rows:
        base = reference.get(row["compiled"])
        row["step_ratio"] = row["step_ms"] / base if row.get("step_ms") and base else None


def check_planner(device: torch.device, patch_size: Sequence[int], num_classes: int, targets_gb: Sequence[float],
                  warmup: int, steps: int) -> list[dict]:
    """For each GPU memory target: the 2d batch nnU-Net's planner gives its own network and ours gives ResUnet v1.0
    at this patch (``nnUNetv2_resunet_plan``), each trained at that batch; the real peak against the target."""
    from nnunetv2_resunet.architectures.configs.ladder import LADDER
    from nnunetv2_resunet.experiment_planning.resunet_planner import (
        NNUNET_REFERENCE_VAL_2D,
        RESUNET_REFERENCE_VAL_2D,
        planned_2d_batch_size,
        resunet_feature_map_size,
    )

    plans, _ = synthetic_plans(patch_size, 2, num_classes=num_classes)
    architecture = plans["configurations"]["2d"]["architecture"]
    from nnunetv2.utilities.get_network_from_plans import get_network_from_plans

    with torch.device("meta"):
        plain = get_network_from_plans(architecture["network_class_name"], architecture["arch_kwargs"],
                                       architecture["_kw_requires_import"], 1, num_classes, deep_supervision=True)
    estimates = {NNUNET_DEFAULT: (plain.compute_conv_feature_map_size(list(patch_size)), NNUNET_REFERENCE_VAL_2D),
                 "ResUnetTrainer": (resunet_feature_map_size(LADDER["v1_0"], patch_size, 1, num_classes),
                                    RESUNET_REFERENCE_VAL_2D)}
    rows = []
    for target in targets_gb:
        for trainer_name, (estimate, reference) in estimates.items():
            batch = planned_2d_batch_size(estimate, reference, target)
            plans, dataset_json = synthetic_plans(patch_size, batch, num_classes=num_classes)
            measured = train_steps(trainer_name, plans, dataset_json, device, warmup, steps)
            peak = measured.get("peak_reserved_gib")
            rows.append({"target_gb": target, "trainer": trainer_name, "planned_batch": batch,
                         "peak_allocated_gib": measured.get("peak_allocated_gib"), "peak_reserved_gib": peak,
                         "fits": None if peak is None else peak * 2 ** 30 <= target * 1e9,
                         "error": measured.get("error")})
    return rows


def check_prediction(device: torch.device, patch_size: Sequence[int], num_classes: int) -> dict:
    """nnU-Net's sliding-window predictor with ResUnet v1.0 on one small case (1.5 patches per axis, 2 slices), on
    ``device`` (fp16 autocast on CUDA, as nnUNetv2_predict) and on the CPU (fp32): how many voxels get the same
    label, and the largest difference of the softmax probabilities."""
    from nnunetv2.inference.predict_from_raw_data import nnUNetPredictor

    plans, dataset_json = synthetic_plans(patch_size, 2, num_classes=num_classes)
    trainer = build_trainer("ResUnetTrainer", plans, dataset_json, "2d", torch.device("cpu"))
    trainer.set_deep_supervision_enabled(False)  # as nnU-Net's predictor builds it
    network = bare_network(trainer)
    generator = torch.Generator().manual_seed(0)
    with torch.no_grad():  # BatchNorm statistics that are not the identity, as after training
        network.train()
        for _ in range(3):
            network(torch.randn((2, 1, *patch_size), generator=generator))
    parameters = [{k: v.clone() for k, v in network.state_dict().items()}]
    size = [2, *(p * 3 // 2 for p in patch_size)]
    image = torch.randn((1, *size), generator=generator)
    probabilities = {}
    for where in (device, torch.device("cpu")):
        with contextlib.redirect_stdout(io.StringIO()):
            predictor = nnUNetPredictor(tile_step_size=0.5, use_mirroring=False, device=where, allow_tqdm=False)
            predictor.manual_initialization(network, trainer.plans_manager, trainer.configuration_manager, parameters,
                                            dataset_json, "ResUnetTrainer", None)
            logits = predictor.predict_logits_from_preprocessed_data(image)
        probabilities[where.type] = torch.softmax(logits.float(), 0)
    compared, cpu = probabilities[device.type], probabilities["cpu"]
    agreement = (compared.argmax(0) == cpu.argmax(0)).float().mean().item()
    return {"devices": f"{device.type} vs cpu", "case_shape": size, "label_agreement": agreement,
            "max_probability_difference": (compared - cpu).abs().max().item(),
            "healthy": agreement >= MIN_AGREEMENT}


def run_check(device: torch.device, trainers: Sequence[str], compiled: Sequence[str], patch_size: Sequence[int],
              batch_size: int, num_classes: int, warmup: int, steps: int, memory_targets_gb: Sequence[float],
              compile_backend: str | None = None, progress=None) -> dict:
    """Everything the command reports, as one dict (``environment``, ``training``, ``planner``, ``prediction``,
    ``healthy``, ``aims``). ``progress(label)`` is called before each piece of work."""
    if device.type == "cuda":
        torch.backends.cudnn.benchmark = True  # as nnU-Net's run_training
        torch.backends.cudnn.deterministic = False
    say = progress or (lambda label: None)
    plans, dataset_json = synthetic_plans(patch_size, batch_size, num_classes=num_classes)
    rows = []
    for trainer_name in [NNUNET_DEFAULT, *(t for t in trainers if t != NNUNET_DEFAULT)]:
        for is_compiled in ((False, True) if trainer_name in compiled else (False,)):
            say(f"{trainer_name}{' (compiled)' if is_compiled else ''}")
            if is_compiled:
                torch._dynamo.reset()
            rows.append(train_steps(trainer_name, plans, dataset_json, device, warmup, steps, is_compiled,
                                    compile_backend))
    add_step_ratios(rows)
    say("planner's memory targets")
    planner = check_planner(device, patch_size, num_classes, memory_targets_gb, warmup, min(steps, 3))
    say("prediction, this device against the CPU")
    try:
        prediction = check_prediction(device, patch_size, num_classes)
    except Exception as error:
        prediction = {"error": f"{type(error).__name__}: {error}".splitlines()[0][:300], "healthy": False}
    healthy = (all(not r.get("error") and r.get("finite") for r in rows)
               and all(not r["error"] and r["fits"] is not False for r in planner) and prediction["healthy"])
    v1 = next((r for r in rows if r["trainer"] == "ResUnetTrainer" and not r["compiled"]), {})
    return {"environment": describe_environment(device),
            "settings": {"patch_size": list(patch_size), "batch_size": batch_size, "num_classes": num_classes,
                         "warmup": warmup, "steps": steps, "compile_backend": compile_backend or "inductor",
                         "memory_targets_gb": list(memory_targets_gb),
                         "step": "the trainer's own train_step (fp16 autocast + GradScaler on CUDA, fp32 on CPU)"},
            "training": rows, "planner": planner, "prediction": prediction, "healthy": healthy,
            "aims": {"resunet_step_ratio_at_most": AIM_STEP_RATIO, "resunet_step_ratio": v1.get("step_ratio"),
                     "mfu_at_least_on_h100": AIM_MFU, "resunet_mfu": v1.get("mfu")}}
