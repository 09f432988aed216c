"""The multi-GPU run every trainer test here shares: one pair of gloo processes (``gpu_path.run_ddp``) trains each job
of ``gpu_path.DDP_JOBS`` through nnU-Net's DDP path; test_ddp.py and test_compile.py check their own jobs."""

import pytest
from gpu_path import DDP_JOBS, nnunet_environment, run_ddp
from nnunet_workspace import SYNTHETIC_NAME

PATCH_SIZE = [32, 32]  # the smallest patch every network takes at its full depth (v0.1's total stride is 32)
STEPS = 2  # DDP fails at the second step when a parameter got no gradient in the first


@pytest.fixture(scope="session")
def ddp_ranks(nnunet_workspace, tmp_path_factory) -> list[dict]:
    """Both ranks' results for every job, from one pair of processes (nnU-Net's mp.spawn, as run_training does)."""
    return run_ddp(nnunet_environment(nnunet_workspace), SYNTHETIC_NAME, PATCH_SIZE, DDP_JOBS, STEPS,
                   tmp_path_factory.mktemp("ddp"))
