"""nnU-Net's GPU training path, taken on CPU: DDP over gloo, SyncBatchNorm, fp16 autocast, torch.compile.

Our users train with ``nnUNetv2_train ... -num_gpus N`` (nnU-Net spawns one process per GPU, wraps the network in
``SyncBatchNorm`` and ``DistributedDataParallel``), under fp16 autocast with a GradScaler, and with torch.compile.
CI has no GPU, so the tests take that path here with only what binds it to CUDA replaced:

- the device: nnU-Net's ``__init__`` sets ``cuda:<rank>`` under DDP; the rank's trainer gets the CPU back (and, as
  nnU-Net does on CPU, no GradScaler);
- ``DistributedDataParallel(network, device_ids=[rank])``: ``device_ids`` is for GPU modules; a CPU module takes
  none, and DDP refuses SyncBatchNorm in a CPU module (:class:`CpuDDP`);
- SyncBatchNorm's CUDA-only kernels (``batch_norm_stats`` etc.): the same statistics reduced over the ranks with an
  autograd-aware ``all_reduce`` (:func:`cpu_sync_batch_norm`), so the gradients flow through the synchronised
  statistics as they do on the GPU;
- torch.compile: nnU-Net compiles only on CUDA; :func:`compiled_on_cpu` makes its ``_do_i_compile`` say yes and
  gives ``torch.compile`` a backend that needs no C++ toolchain.

Everything else is nnU-Net's: ``initialize()`` builds, compiles, converts and wraps the network, builds the
optimizer and the loss; ``train_step`` trains.
"""

from __future__ import annotations

import contextlib
import copy
import functools
import gc
import io
import math
import os
import time
from collections.abc import Iterator
from pathlib import Path

import torch
import torch.distributed as dist
from torch import nn


def cpu_sync_batch_norm(module: nn.SyncBatchNorm, x: torch.Tensor) -> torch.Tensor:
    """``SyncBatchNorm.forward`` for CPU tensors: batch statistics over every rank's batch, as the CUDA kernels
    compute them (mean and biased variance for normalising, unbiased variance for the running estimate)."""
    if not (module.training and dist.is_available() and dist.is_initialized() and dist.get_world_size() > 1):
        return nn.functional.batch_norm(x, module.running_mean, module.running_var, module.weight, module.bias,
                                        module.training or module.running_mean is None, module.momentum or 0.0,
                                        module.eps)
    channels = x.shape[1]
    reduce_dims = [0, *range(2, x.dim())]
    x32 = x.float()
    local = torch.cat([x32.sum(reduce_dims), (x32 * x32).sum(reduce_dims),
                       x32.new_tensor([x32.numel() / channels])])
    total = dist.nn.functional.all_reduce(local)  # autograd-aware: the backward all-reduces the gradients
    count = total[-1]
    mean = total[:channels] / count
    var = total[channels:2 * channels] / count - mean * mean
    if module.track_running_stats and module.running_mean is not None:
        with torch.no_grad():
            module.num_batches_tracked.add_(1)
            momentum = module.momentum if module.momentum is not None else 1.0 / module.num_batches_tracked.item()
            module.running_mean.mul_(1 - momentum).add_(momentum * mean.detach())
            module.running_var.mul_(1 - momentum).add_(momentum * var.detach() * count / (count - 1))
    shape = (1, channels) + (1,) * (x.dim() - 2)
    out = (x32 - mean.view(shape)) * torch.rsqrt(var.view(shape) + module.eps)
    if module.weight is not None:
        out = out * module.weight.view(shape) + module.bias.view(shape)
    return out.to(x.dtype)


class CpuDDP(torch.nn.parallel.DistributedDataParallel):
    """nnU-Net's ``DDP(network, device_ids=[rank])`` for a CPU module: no ``device_ids`` (they name GPUs), and
    SyncBatchNorm allowed (DDP refuses it on CPU only because its kernels are CUDA's, replaced here)."""

    def __init__(self, module: nn.Module, device_ids=None, **kwargs):
        super().__init__(module, **kwargs)

    def _passing_sync_batchnorm_handle(self, module: nn.Module) -> None:
        pass


@contextlib.contextmanager
def cpu_ddp_patches() -> Iterator[None]:
    """Replace what binds nnU-Net's DDP path to CUDA (see the module docstring); undone on exit."""
    from nnunetv2.training.nnUNetTrainer import nnUNetTrainer as trainer_module

    saved = trainer_module.DDP, nn.SyncBatchNorm.forward
    trainer_module.DDP = CpuDDP
    nn.SyncBatchNorm.forward = cpu_sync_batch_norm
    try:
        yield
    finally:
        trainer_module.DDP, nn.SyncBatchNorm.forward = saved


@contextlib.contextmanager
def compiled_on_cpu(backend: str = "aot_eager", fullgraph: bool = False) -> Iterator[None]:
    """nnU-Net's torch.compile path on CPU: ``_do_i_compile`` answers as on CUDA with ``nnUNet_compile=t``, and
    ``torch.compile`` uses ``backend`` (``aot_eager``: Dynamo's graph capture and AOTAutograd's joint forward and
    backward graphs, run by eager kernels; no C++ compiler); ``fullgraph=True`` makes any graph break an error."""
    from nnunetv2.training.nnUNetTrainer.nnUNetTrainer import nnUNetTrainer

    original_compile, original_decision = torch.compile, nnUNetTrainer._do_i_compile

    def compile_with_backend(model=None, **kwargs):
        kwargs.setdefault("backend", backend)
        kwargs.setdefault("fullgraph", fullgraph)
        return original_compile(model, **kwargs)

    torch.compile = compile_with_backend
    nnUNetTrainer._do_i_compile = lambda self: True
    try:
        yield
    finally:
        torch.compile, nnUNetTrainer._do_i_compile = original_compile, original_decision


@functools.cache
def find_trainer(trainer_name: str) -> type:
    """The trainer class as nnU-Net finds it by name (once per process: the lookup walks nnU-Net's modules)."""
    from nnunetv2.utilities.find_objects import recursive_find_trainer_class_by_name

    return recursive_find_trainer_class_by_name(trainer_name)


def rank_trainer(trainer_name: str, plans: dict, dataset_json: dict, configuration: str = "2d"):
    """The trainer nnU-Net's ``run_ddp`` constructs on this rank, given the CPU back (see the module docstring)."""
    with contextlib.redirect_stdout(io.StringIO()):
        trainer_class = find_trainer(trainer_name)
        plans = copy.deepcopy(plans)
        plans["continue_training"] = False
        trainer = trainer_class(plans, configuration, 0, dataset_json, torch.device("cuda"))
    assert trainer.device.type == "cuda", "nnU-Net's __init__ binds a DDP rank to its GPU"
    trainer.device, trainer.grad_scaler = torch.device("cpu"), None  # what nnU-Net's __init__ does for CPU
    return trainer


def what_initialize_made(trainer) -> dict:
    """The optimizer and schedule ``initialize()`` built (the first parameter group's settings), whether the loss
    has deep-supervision scales, and for our trainers whether the trained network's state dict has exactly the keys
    and shapes of its config's network (what nnU-Net's strict load of the checkpoint needs)."""
    from torch.nn.parallel import DistributedDataParallel

    from nnunetv2_resunet.architectures.registry import build_network

    group = trainer.optimizer.param_groups[0]
    made = {"optimizer": type(trainer.optimizer).__name__, "scheduler": type(trainer.lr_scheduler).__name__,
            "group": {k: list(v) if isinstance(v, tuple) else v for k, v in group.items() if k in OPTIMIZER_SETTINGS},
            "deep_supervision_scales": trainer._get_deep_supervision_scales() is not None}
    config = getattr(trainer, "resunet_config", None)
    if config is not None:
        network = trainer.network.module if isinstance(trainer.network, DistributedDataParallel) else trainer.network
        network = getattr(network, "_orig_mod", network)
        with torch.device("meta"):
            reference = build_network(config, trainer.num_input_channels, trainer.label_manager.num_segmentation_heads,
                                      trainer.enable_deep_supervision, trainer.configuration_manager.patch_size)
        shapes = {k: list(v.shape) for k, v in network.state_dict().items()}
        made["config_state_dict"] = shapes == {k: list(v.shape) for k, v in reference.state_dict().items()}
    return made


OPTIMIZER_SETTINGS = ("lr", "momentum", "nesterov", "weight_decay", "betas")


# Integers of each element width, to read a tensor's bits as numbers.
BITS_AS_INTEGERS = {1: torch.uint8, 2: torch.int16, 4: torch.int32, 8: torch.int64}


def parameter_digest(module: nn.Module) -> list[int]:
    """A checksum of every parameter and buffer, in state-dict order: the sum of its elements' bit patterns read as
    integers (exact, so independent of summation order and memory layout). Equal on two ranks that hold the same
    tensors bit for bit; changed by any step that changes an element (unless changes cancel exactly). One integer
    pass over the bits: a float64 sum and sum of squares cost 6x more on TransUNet's 105 M parameters."""
    with torch.no_grad():
        return [int(t.detach().view(BITS_AS_INTEGERS[t.element_size()]).sum(dtype=torch.int64))
                for t in module.state_dict().values()]


def init_gloo(rank: int, world_size: int, store_file: str) -> None:
    os.environ.setdefault("OMP_NUM_THREADS", "1")
    torch.set_num_threads(1)
    dist.init_process_group("gloo", init_method=f"file://{store_file}", rank=rank, world_size=world_size)


def _ddp_jobs() -> tuple[list[tuple[str, bool, bool]], list[tuple[str, bool, bool]]]:
    from nnunetv2_resunet.training import ALL_TRAINERS, ResUnetTrainer_ThesisRecipe

    # Every trainer with deep supervision on and off (the thesis recipe trains without it by definition: its loss is
    # not nnU-Net's deep-supervision wrapper) ...
    eager = [(t.__name__, deep_supervision, False) for t in ALL_TRAINERS
             for deep_supervision in ((False,) if t is ResUnetTrainer_ThesisRecipe else (True, False))]
    # ... and compiled, as on CUDA by default: ResUnet v1.0 with deep supervision, Swin-Unet without.
    compiled = [("ResUnetTrainer", True, True), ("SwinUnetTrainer", False, True)]
    return eager, compiled


#: The jobs of the tests' DDP run (tests/training/conftest.py): (trainer, deep supervision, compiled).
EAGER_DDP_JOBS, COMPILED_DDP_JOBS = _ddp_jobs()
DDP_JOBS = EAGER_DDP_JOBS + COMPILED_DDP_JOBS


def job_key(trainer: str, deep_supervision: bool, compiled: bool) -> str:
    return f"{trainer} deep_supervision={deep_supervision}{' compiled' if compiled else ''}"


def train_under_ddp(rank: int, world_size: int, store_file: str, environment: dict[str, str], dataset: str,
                    patch_size: list[int], jobs: list[tuple[str, bool, bool]], steps: int,
                    results_folder: str) -> None:
    """One rank of ``nnUNetv2_train -num_gpus``, for each ``(trainer, deep_supervision, compiled)`` of ``jobs`` in
    turn: the trainer's own ``initialize()`` on the DDP path (with torch.compile if ``compiled``, as on CUDA by
    default; the CPU SyncBatchNorm's all-reduce breaks the graph at every batch norm, which the GPU kernels do not),
    then ``steps`` real ``train_step`` calls on this rank's own random batch of ``patch_size`` (the dataset's 2d
    plans with that patch; nnU-Net's deep-supervision targets).

    Writes ``rank<N>.json``: per job the losses, the digests of the parameters and buffers before and after the
    steps, and what ``initialize()`` made (:func:`what_initialize_made`); or the error that stopped the run (later
    jobs are not tried: a rank that failed mid-collective leaves the other waiting)."""
    import json
    import traceback

    os.environ.update(environment)
    init_gloo(rank, world_size, store_file)
    from nnunetv2_resunet.experiment_planning.synthetic_plans import dataset_plans

    plans, dataset_json = dataset_plans(dataset, "nnUNetPlans")
    plans["configurations"]["2d"]["patch_size"] = patch_size
    results = {}
    with cpu_ddp_patches():
        for trainer_name, deep_supervision, compiled in jobs:
            key = job_key(trainer_name, deep_supervision, compiled)
            try:
                results[key] = train_one_job(trainer_name, deep_supervision, compiled, plans, dataset_json, rank, steps)
            except Exception:
                results[key] = {"error": traceback.format_exc()}
                break
            finally:
                gc.collect()  # DDP's hooks and the trainer hold reference cycles: free this job's memory now
    with open(os.path.join(results_folder, f"rank{rank}.json"), "w") as f:
        json.dump(results, f)
    dist.destroy_process_group()


def train_one_job(trainer_name: str, deep_supervision: bool, compiled: bool, plans: dict, dataset_json: dict,
                  rank: int, steps: int) -> dict:
    """One job of :func:`train_under_ddp` on this rank; its results."""
    from nnunetv2_resunet.benchmarking.trainer_steps import make_batch

    with compiled_on_cpu() if compiled else contextlib.nullcontext():
        if compiled:
            torch._dynamo.reset()
        trainer = rank_trainer(trainer_name, plans, dataset_json)
        own_deep_supervision = trainer.enable_deep_supervision
        trainer.enable_deep_supervision = deep_supervision  # as a subclass's __init__ would set it
        with contextlib.redirect_stdout(io.StringIO()):
            trainer.initialize()
            trainer.set_deep_supervision_enabled(trainer.enable_deep_supervision)  # on_train_start's
        network = trainer.network.module
        before = parameter_digest(network)
        losses = []
        for step in range(steps):
            data, target = make_batch(trainer, trainer.batch_size, trainer.device, seed=1000 * rank + step)
            losses.append(float(trainer.train_step({"data": data, "target": target})["loss"]))
        return {"losses": losses, "before": before, "after": parameter_digest(network),
                "wrapped": type(trainer.network).__name__, "batch_size": trainer.batch_size,
                "compiled": type(network).__name__ == "OptimizedModule",
                "sync_batch_norm": any(isinstance(m, nn.SyncBatchNorm) for m in network.modules()),
                "own_deep_supervision": own_deep_supervision, **what_initialize_made(trainer)}


def run_ddp(environment: dict[str, str], dataset: str, patch_size: list[int], jobs: list[tuple[str, bool, bool]],
            steps: int, folder: Path, timeout_s: float = 900) -> list[dict]:
    """:func:`train_under_ddp` on two ranks started as nnU-Net's ``run_training`` starts them (``mp.spawn``);
    returns each rank's results. Fails if the ranks do not finish within ``timeout_s``."""
    import json

    import torch.multiprocessing as mp

    arguments = (2, str(folder / "store"), environment, dataset, patch_size, jobs, steps, str(folder))
    context = mp.start_processes(train_under_ddp, args=arguments, nprocs=2, join=False, start_method="spawn")
    deadline = time.monotonic() + timeout_s
    try:
        # join() returns as each rank ends (and raises when one fails); False while another is still running.
        while not context.join(timeout=max(deadline - time.monotonic(), 0)):
            if time.monotonic() >= deadline:
                raise AssertionError(f"the DDP ranks did not finish within {timeout_s} s")
    finally:
        for process in context.processes:
            if process.is_alive():
                process.kill()
    return [json.loads((folder / f"rank{rank}.json").read_text()) for rank in range(2)]


def nnunet_environment(workspace) -> dict[str, str]:
    """nnU-Net's folders of a test workspace, for the ranks (their nnUNet_extTrainer is what their start made it)."""
    return {k: workspace.env[k] for k in ("nnUNet_raw", "nnUNet_preprocessed", "nnUNet_results", "nnUNet_compile")}


def check_ddp_job(ranks: list[dict], trainer: str, deep_supervision: bool, compiled: bool = False) -> dict:
    """Assert that both ranks trained this job of :func:`run_ddp`: finite losses on their own batches, and the same
    parameters and buffers afterwards, from the same start. Returns rank 0's results."""
    key = job_key(trainer, deep_supervision, compiled)
    for rank, results in enumerate(ranks):
        assert key in results, f"rank {rank} stopped before this job: {list(results.values())[-1]}"
        assert "error" not in results[key], f"rank {rank}:\n{results[key]['error']}"
    first, second = (results[key] for results in ranks)
    assert first["wrapped"] == "CpuDDP" and first["sync_batch_norm"] == second["sync_batch_norm"]
    assert first["batch_size"] + second["batch_size"] == 2  # the plans' batch, split over the ranks
    assert all(math.isfinite(loss) for loss in first["losses"] + second["losses"])
    assert first["losses"] != second["losses"]  # each rank trained on its own batch ...
    assert first["after"] == second["after"]  # ... and both hold the same parameters and buffers afterwards
    assert first["before"] == second["before"] and first["after"] != first["before"]  # from the same start; trained
    return first
