"""A trainer made ready to time without a preprocessed dataset: built by name as nnU-Net builds it, given a batch
with nnU-Net's deep-supervision targets, and its training and inference steps as callables."""

from __future__ import annotations

import contextlib
import copy
import io
import os
import tempfile
from collections.abc import Callable, Iterator

import torch
from torch import nn
from torch._dynamo import OptimizedModule


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
                  compile_network: bool = False, channels_last: bool | None = None,
                  compile_backend: str | None = None):
    """Construct the trainer and give it what ``initialize`` would, in ``initialize``'s order: network (built by the
    trainer's own ``build_network_architecture`` with nnU-Net's arguments, moved to the device, compiled), optimizer
    (``configure_optimizers``, which for our trainers also prepares the network: deep supervision, channels_last on
    CUDA), loss. Nothing is read from a preprocessed dataset, and there is no DDP.

    ``channels_last``: None does what the trainer does on this device (ours: NHWC on CUDA, see
    ``ResUnetTrainer.prepare_network_for_training``; nnU-Net's: never); True or False forces it.
    ``compile_backend``: torch.compile's backend for the network (default: torch's, inductor).
    """
    from nnunetv2.utilities.find_objects import recursive_find_trainer_class_by_name
    from nnunetv2.utilities.label_handling.label_handling import determine_num_input_channels

    with contextlib.redirect_stdout(io.StringIO()):
        trainer_class = recursive_find_trainer_class_by_name(trainer_name)
    if trainer_class is None:
        raise ValueError(f"trainer {trainer_name!r} not found in nnunetv2 or in nnUNet_extTrainer")
    plans = copy.deepcopy(plans)
    plans["continue_training"] = False  # nnU-Net's run_training adds this key; the trainer pops it
    with _scratch_nnunet_env(compile_network), contextlib.redirect_stdout(io.StringIO()):
        trainer = trainer_class(plans, configuration, 0, dataset_json, device)
        trainer.num_input_channels = determine_num_input_channels(trainer.plans_manager,
                                                                  trainer.configuration_manager, dataset_json)
        network = trainer.build_network_architecture(
            trainer.plans_manager, trainer.configuration_manager, trainer.num_input_channels,
            trainer.label_manager.num_segmentation_heads, trainer.enable_deep_supervision).to(device)
        backend = {"backend": compile_backend} if compile_backend else {}
        trainer.network = torch.compile(network, **backend) if compile_network else network
        trainer.optimizer, trainer.lr_scheduler = trainer.configure_optimizers()
        if channels_last is not None:
            network.to(memory_format=torch.channels_last if channels_last else torch.contiguous_format)
        trainer.loss = trainer._build_loss()
    trainer.benchmark_channels_last = is_channels_last(network)
    return trainer


def is_channels_last(network: nn.Module) -> bool:
    """Whether the network's convolution weights are in NHWC (channels_last) layout (judged on the kernels where the
    two layouts differ: more than one input channel and more than one tap)."""
    weights = [p for p in network.parameters() if p.dim() == 4 and p.shape[1] > 1 and p.shape[2] * p.shape[3] > 1]
    return bool(weights) and all(w.is_contiguous(memory_format=torch.channels_last) and not w.is_contiguous()
                                 for w in weights)


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


def training_step(trainer, data: torch.Tensor, target, autocast_dtype: torch.dtype | None) -> Callable[[], object]:
    """One optimisation step. ``None``: the trainer's own ``train_step`` (nnU-Net's: autocast fp16 + GradScaler on
    CUDA, plain fp32 on CPU). A dtype: the same step (zero_grad, forward, loss, backward, clip to the trainer's
    ``gradient_clip``, nnU-Net's 12 by default, optimizer step) under autocast with that dtype; the GradScaler only
    for fp16, as bf16 needs none."""
    if autocast_dtype is None:
        return lambda: trainer.train_step({"data": data, "target": target})

    scaler = trainer.grad_scaler if autocast_dtype == torch.float16 else None
    clip = getattr(trainer, "gradient_clip", 12)

    def step() -> float:
        trainer.optimizer.zero_grad(set_to_none=True)
        with torch.autocast(data.device.type, dtype=autocast_dtype, enabled=autocast_dtype != torch.float32):
            loss = trainer.loss(trainer.network(data), target)
        if scaler is not None:
            scaler.scale(loss).backward()
            scaler.unscale_(trainer.optimizer)
            torch.nn.utils.clip_grad_norm_(trainer.network.parameters(), clip)
            scaler.step(trainer.optimizer)
            scaler.update()
        else:
            loss.backward()
            torch.nn.utils.clip_grad_norm_(trainer.network.parameters(), clip)
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
