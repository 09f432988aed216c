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

from dataclasses import replace

from torch import nn

from nnunetv2_resunet.architectures.encoders.resnet import ResNetEncoder
from nnunetv2_resunet.architectures.encoders.swin import SwinEncoder
from nnunetv2_resunet.architectures.encoders.timm import TimmEncoder
from nnunetv2_resunet.architectures.encoders.vit_hybrid import ViTHybridEncoder
from nnunetv2_resunet.architectures.pretrained.common import (
    LoadReport,
    PretrainedWeightsError,
    adapt_input_conv,
    finish,
    read_weights_file,
)
from nnunetv2_resunet.architectures.pretrained.resnet import load_resnet, load_torchvision_resnet
from nnunetv2_resunet.architectures.pretrained.swin import load_microsoft_swin
from nnunetv2_resunet.architectures.pretrained.timm_features import load_timm_checkpoint
from nnunetv2_resunet.architectures.pretrained.vit_hybrid import load_google_vit_hybrid
from nnunetv2_resunet.architectures.timm_unet import TimmUNet

# The loader and the file the authors released, by the encoder class a network has.
LOADERS = {
    ResNetEncoder: (load_resnet, "torchvision's ImageNet ResNet of the encoder's depth, e.g. resnet34-b627a593.pth"),
    ViTHybridEncoder: (load_google_vit_hybrid, "Google's R50+ViT-B_16.npz (ImageNet-21k)"),
    SwinEncoder: (load_microsoft_swin, "Microsoft's swin_tiny_patch4_window7_224.pth"),
    TimmEncoder: (load_timm_checkpoint, "the timm model's checkpoint, e.g. pvt_v2_b2.pth (whai362/PVT)"),
}

__all__ = ["LOADERS", "LoadReport", "PretrainedWeightsError", "adapt_input_conv", "expected_file",
           "has_pretrained_encoder", "load_published_weights", "load_torchvision_resnet", "read_weights_file"]


def has_pretrained_encoder(network: nn.Module) -> bool:
    """Whether the network's encoder is one published weights exist for."""
    return type(getattr(network, "encoder", None)) in LOADERS


def expected_file(network: nn.Module) -> str:
    """The published file the network's encoder starts from (for messages)."""
    return LOADERS[type(network.encoder)][1]


def load_published_weights(network: nn.Module, path: str) -> LoadReport:
    """Load the published encoder weights in ``path`` (its original format) into ``network``.

    Raises:
        PretrainedWeightsError: The network has no pretrained encoder, or the file does not fit it.
    """
    if not has_pretrained_encoder(network):
        raise PretrainedWeightsError(f"{type(network).__name__} has no encoder that published weights exist for "
                                     f"(encoders with weights: {', '.join(c.__name__ for c in LOADERS)})")
    if isinstance(network, TimmUNet) and not network.config.transformer_blocks:
        return _load_beside_removed_blocks(network, path)
    loader, _ = LOADERS[type(network.encoder)]
    return loader(network, read_weights_file(path), path)


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
