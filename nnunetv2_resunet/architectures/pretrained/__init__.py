"""Published encoder weights, from the files their authors released, into the networks of this package.

One small module per original format, each read as released (nothing is converted beforehand, nothing is
downloaded):

- ``resnet``: torchvision's ImageNet ResNets (``resnet34-b627a593.pth`` ...) for the ResNet family;
- ``vit_hybrid``: Google's ``R50+ViT-B_16.npz`` for TransUNet;
- ``swin``: Microsoft's ``swin_tiny_patch4_window7_224.pth`` for Swin-Unet (encoder, and its decoder's blocks);
- ``timm_features``: a timm model's checkpoint, original names included (``pvt_v2_b2.pth`` for EMCAD).

:func:`load_published_weights` picks the format from the network's encoder and returns a :class:`LoadReport`:
every file tensor lands in the network or is named as unused with the reason; a tensor it cannot place, or an
encoder tensor the file lacks, is an error. A network of Primus's ablation (transformer blocks replaced by
identity) takes the same file as its original, less the blocks' tensors (reported as unused). The training side
(``nnUNetv2_resunet_init_weights``) writes the result as a checkpoint for nnU-Net's ``-pretrained_weights``.
"""

from __future__ import annotations

import importlib
from dataclasses import replace

from torch import nn

from nnunetv2_resunet.architectures.pretrained.common import (
    LoadReport,
    PretrainedWeightsError,
    adapt_input_conv,
    finish,
    read_weights_file,
)
from nnunetv2_resunet.architectures.pretrained.resnet import load_torchvision_resnet
from nnunetv2_resunet.architectures.timm_unet import TimmUNet

_ENCODERS = "nnunetv2_resunet.architectures.encoders"
_LOADERS = "nnunetv2_resunet.architectures.pretrained"
# The loader and the file the authors released, by the encoder class a network has (module and name: the modules
# of timm's encoders import timm, which a ResNet network should not pay for; a network's own encoder module is
# imported already).
PUBLISHED: dict[tuple[str, str], tuple[str, str, str]] = {
    (f"{_ENCODERS}.resnet", "ResNetEncoder"): (
        f"{_LOADERS}.resnet", "load_resnet",
        "torchvision's ImageNet ResNet of the encoder's depth, e.g. resnet34-b627a593.pth"),
    (f"{_ENCODERS}.vit_hybrid", "ViTHybridEncoder"): (
        f"{_LOADERS}.vit_hybrid", "load_google_vit_hybrid", "Google's R50+ViT-B_16.npz (ImageNet-21k)"),
    (f"{_ENCODERS}.swin", "SwinEncoder"): (
        f"{_LOADERS}.swin", "load_microsoft_swin", "Microsoft's swin_tiny_patch4_window7_224.pth"),
    (f"{_ENCODERS}.timm", "TimmEncoder"): (
        f"{_LOADERS}.timm_features", "load_timm_checkpoint",
        "the timm model's checkpoint, e.g. pvt_v2_b2.pth (whai362/PVT)"),
}

__all__ = ["PUBLISHED", "LoadReport", "PretrainedWeightsError", "adapt_input_conv", "expected_file",
           "has_pretrained_encoder", "load_published_weights", "load_torchvision_resnet", "read_weights_file"]


def _published(network: nn.Module) -> tuple[str, str, str] | None:
    encoder = type(getattr(network, "encoder", None))
    return PUBLISHED.get((encoder.__module__, encoder.__qualname__))


def has_pretrained_encoder(network: nn.Module) -> bool:
    """Whether the network's encoder is one published weights exist for."""
    return _published(network) is not None


def expected_file(network: nn.Module) -> str:
    """The published file the network's encoder starts from (for messages)."""
    return _published(network)[2]


def load_published_weights(network: nn.Module, path: str) -> LoadReport:
    """Load the published encoder weights in ``path`` (its original format) into ``network``.

    Raises:
        PretrainedWeightsError: The network has no pretrained encoder, or the file does not fit it.
    """
    if not has_pretrained_encoder(network):
        raise PretrainedWeightsError(f"{type(network).__name__} has no encoder that published weights exist for "
                                     f"(encoders with weights: {', '.join(name for _, name in PUBLISHED)})")
    if isinstance(network, TimmUNet) and not network.config.transformer_blocks:
        return _load_beside_removed_blocks(network, path)
    module, loader, _ = _published(network)
    return getattr(importlib.import_module(module), loader)(network, read_weights_file(path), path)


def _load_beside_removed_blocks(network: TimmUNet, path: str) -> LoadReport:
    """Primus's ablation starts from the same file as its original: the file goes into the original network (the
    same config with its transformer blocks), and from there every tensor but the removed blocks' into ``network``;
    the blocks' tensors are reported as unused."""
    original = TimmUNet(network.input_channels, network.num_classes, replace(network.config, transformer_blocks=True),
                        deep_supervision=network.decoder.deep_supervision, patch_size=network.patch_size)
    report = load_published_weights(original, path)
    own, loaded = network.state_dict(), original.state_dict()
    network.load_state_dict({**own, **{k: loaded[k] for k in report.loaded if k in own}})
    for key in report.loaded:
        if key not in own:
            report.unused[key] = "in a transformer block, which this network replaces by identity (Primus's ablation)"
    report.loaded = [k for k in report.loaded if k in own]
    report.adapted = {k: how for k, how in report.adapted.items() if k in own}
    return finish(network, report)
