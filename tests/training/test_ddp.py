"""Every trainer under ``nnUNetv2_train -num_gpus 2`` as nnU-Net wraps it (SyncBatchNorm, DistributedDataParallel
without ``find_unused_parameters``), deep supervision on and off, taken on CPU with two gloo processes
(``gpu_path.py`` says what is replaced to get there: only what binds it to CUDA)."""

import json
import math
import time

import pytest
import torch.multiprocessing as mp
from gpu_path import train_under_ddp
from nnunet_workspace import SYNTHETIC_NAME

from nnunetv2_resunet.training import ALL_TRAINERS, ResUnetTrainer_ThesisRecipe

# Every trainer with deep supervision on and off; the thesis recipe trains without it by definition (its loss is
# not nnU-Net's deep-supervision wrapper), so only off.
JOBS = [(t.__name__, deep_supervision) for t in ALL_TRAINERS
        for deep_supervision in ((False,) if t is ResUnetTrainer_ThesisRecipe else (True, False))]
PATCH_SIZE = [32, 32]  # the smallest patch every network takes at its full depth (v0.1's total stride is 32)
STEPS = 2  # DDP fails at the second step when a parameter got no gradient in the first
TIMEOUT_S = 900


@pytest.fixture(scope="module")
def ranks(nnunet_workspace, tmp_path_factory) -> list[dict]:
    """Both ranks' results for every job, from one pair of processes (nnU-Net's mp.spawn, as run_training does)."""
    folder = tmp_path_factory.mktemp("ddp")
    environment = {k: nnunet_workspace.env[k] for k in ("nnUNet_raw", "nnUNet_preprocessed", "nnUNet_results",
                                                        "nnUNet_compile")}
    arguments = (2, str(folder / "store"), environment, SYNTHETIC_NAME, PATCH_SIZE, JOBS, STEPS, str(folder))
    context = mp.start_processes(train_under_ddp, args=arguments, nprocs=2, join=False, start_method="spawn")
    deadline = time.monotonic() + TIMEOUT_S
    try:
        # join() returns as each rank ends (and raises when one fails); False while another is still running.
        while not context.join(timeout=max(deadline - time.monotonic(), 0)):
            if time.monotonic() >= deadline:
                raise AssertionError(f"the DDP ranks did not finish within {TIMEOUT_S} s")
    finally:
        for process in context.processes:
            if process.is_alive():
                process.kill()
    return [json.loads((folder / f"rank{rank}.json").read_text()) for rank in range(2)]


@pytest.mark.parametrize("trainer, deep_supervision", JOBS, ids=[f"{t}-ds_{'on' if d else 'off'}" for t, d in JOBS])
def test_trains_under_ddp(ranks, trainer, deep_supervision):
    key = f"{trainer} deep_supervision={deep_supervision}"
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
