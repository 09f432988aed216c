"""Every trainer under ``nnUNetv2_train -num_gpus 2`` as nnU-Net wraps it (SyncBatchNorm, DistributedDataParallel
without ``find_unused_parameters``), deep supervision on and off, taken on CPU with two gloo processes
(``gpu_path.py`` says what is replaced to get there: only what binds it to CUDA). Each trainer goes through its real
``__init__``, ``initialize()`` and ``train_step``, so this is also where every trainer's recipe and network, as
nnU-Net builds them, are checked."""

import pytest
from gpu_path import EAGER_DDP_JOBS, check_ddp_job

from nnunetv2_resunet.training import ALL_TRAINERS, ResUnetTrainer_ThesisRecipe, TransformerRecipeTrainer

TRAINERS = {t.__name__: t for t in ALL_TRAINERS}


@pytest.mark.parametrize("trainer, deep_supervision, compiled", EAGER_DDP_JOBS,
                         ids=[f"{t}-ds_{'on' if d else 'off'}" for t, d, _ in EAGER_DDP_JOBS])
def test_trains_under_ddp(ddp_ranks, trainer, deep_supervision, compiled):
    """Both ranks train; and initialize() built what the trainer's recipe says (the thesis recipe: SGD with momentum
    0.9, weight decay 1e-4, no deep supervision; the transformer recipe: AdamW; nnU-Net's otherwise), on the network
    of the trainer's config (a checkpoint of it loads strictly)."""
    job = check_ddp_job(ddp_ranks, trainer, deep_supervision)
    assert not job["compiled"] and job["config_state_dict"]
    assert job["deep_supervision_scales"] is deep_supervision
    trainer_class = TRAINERS[trainer]
    group = job["group"]
    if issubclass(trainer_class, ResUnetTrainer_ThesisRecipe):
        assert (job["optimizer"], job["scheduler"]) == ("SGD", "PolyLRScheduler") and not job["own_deep_supervision"]
        assert (group["lr"], group["momentum"], group["weight_decay"], group["nesterov"]) == (1e-2, 0.9, 1e-4, False)
    elif issubclass(trainer_class, TransformerRecipeTrainer):
        assert (job["optimizer"], job["scheduler"]) == ("AdamW", "WarmupPolyLRScheduler")
        assert job["own_deep_supervision"]
        assert (group["weight_decay"], group["betas"]) == (1e-4, [0.9, 0.999])
    else:  # nnU-Net's recipe
        assert (job["optimizer"], job["scheduler"]) == ("SGD", "PolyLRScheduler") and job["own_deep_supervision"]
        assert (group["lr"], group["momentum"], group["nesterov"], group["weight_decay"]) == (1e-2, 0.99, True, 3e-5)
