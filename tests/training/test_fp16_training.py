"""Every transformer trainer's training step under nnU-Net's fp16 autocast, on a GPU with native bfloat16 (Ampere
and newer) and on one without (V100, T4), played on CPU (``assume_compute_capability`` and CPU autocast): finite
loss, finite float32 gradients, and the transformer parts in the precision each GPU gets. Before the precision was
decided by compute capability, EMCAD failed on the second (its RGB stem's float16 output met the float32 encoder)."""

import pytest
import torch
from torch import nn

from nnunetv2_resunet.architectures.precision import assume_compute_capability
from nnunetv2_resunet.benchmarking.trainer_steps import build_trainer, make_batch
from nnunetv2_resunet.experiment_planning.synthetic_plans import synthetic_plans
from nnunetv2_resunet.training import TRANSFORMER_TRAINERS

GPUS = {"A100": ((8, 0), torch.bfloat16), "V100": ((7, 0), torch.float32)}


@pytest.fixture(scope="module", params=[t.__name__ for t in TRANSFORMER_TRAINERS.values()])
def trainer(request, tmp_path_factory):
    plans, dataset_json = synthetic_plans([32, 32], 2, num_classes=3)
    return build_trainer(request.param, plans, dataset_json, "2d", torch.device("cpu"))


@pytest.mark.parametrize("gpu", list(GPUS))
def test_fp16_step_is_finite_in_the_gpus_precision(trainer, gpu):
    capability, transformer_dtype = GPUS[gpu]
    network = trainer.network
    linear_dtypes = set()  # the transformer parts' linear layers: attention, MLP, patch merging
    hooks = [m.register_forward_hook(lambda m, i, o: linear_dtypes.add(o.dtype))
             for m in network.modules() if isinstance(m, nn.Linear)]
    data, target = make_batch(trainer, 2, torch.device("cpu"))
    network.zero_grad(set_to_none=True)
    try:
        with assume_compute_capability(capability), torch.autocast("cpu", dtype=torch.float16):
            loss = trainer.loss(network(data), target)
    finally:
        for hook in hooks:
            hook.remove()
    # Unscaled: the gradients themselves. (nnU-Net's GradScaler starts at 2**16, which overflows some float16
    # backward passes at initialisation: it then skips the step and halves the scale, as designed.)
    loss.backward()
    assert torch.isfinite(loss) and loss.dtype == torch.float32
    assert linear_dtypes == {transformer_dtype}
    gradients = [p.grad for p in network.parameters() if p.grad is not None]
    assert gradients and all(g.dtype == torch.float32 and torch.isfinite(g).all() for g in gradients)
