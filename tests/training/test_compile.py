"""torch.compile, which nnU-Net applies by default on CUDA, on every network family and on nnU-Net's real training
path, taken on CPU (``gpu_path.compiled_on_cpu``: nnU-Net's own compile decision and call, with a backend that
needs no C++ toolchain)."""

import pytest
import torch
from gpu_path import COMPILED_DDP_JOBS, check_ddp_job

from nnunetv2_resunet.architectures.registry import NETWORK_CONFIGS, build_network

# One network per family: the ResNet encoder (ResUnet, and the U-Net decoders on it), the plain-conv U-Nets, each
# transformer baseline, and ResUnet's decoder on PVTv2.
FAMILIES = ["v1_0", "classic_unet", "transunet", "swin_unet", "emcad", "resunet_pvt_v2_b2"]


@pytest.mark.parametrize("name", FAMILIES)
def test_traces_as_one_graph_under_fp16_autocast(name):
    """No graph break (``fullgraph=True`` raises at the first) in a training forward with deep supervision under
    nnU-Net's fp16 autocast, which routes the transformer parts through their bf16 region."""
    torch._dynamo.reset()
    network = build_network(NETWORK_CONFIGS[name], 1, 3, deep_supervision=True, patch_size=(32, 32))
    compiled = torch.compile(network, backend="eager", fullgraph=True)
    with torch.autocast("cpu", dtype=torch.float16):
        outputs = compiled(torch.randn(2, 1, 32, 32))
    assert len(outputs) == len(network.output_strides)


@pytest.mark.parametrize("trainer, deep_supervision, compiled", COMPILED_DDP_JOBS)
def test_compiled_training_under_ddp(ddp_ranks, trainer, deep_supervision, compiled):
    """nnU-Net's real training path on CUDA: ``initialize()`` compiles the network (and the Dice loss) and wraps it
    in DDP (``-num_gpus``), then ``train_step`` trains, for ResUnet v1.0 with deep supervision and Swin-Unet
    without. Compile splits the graph at DDP's gradient buckets, and the head whose output nnU-Net weights 0 then
    got no gradient at all: DDP stopped at the second step, until the trainer kept that weight at 1e-6 under DDP as
    nnU-Net does without compile."""
    assert check_ddp_job(ddp_ranks, trainer, deep_supervision, compiled)["compiled"]
