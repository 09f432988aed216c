"""Microsoft's Swin checkpoints (``swin_tiny_patch4_window7_224.pth``, ``{"model": state_dict}``) into Swin-Unet.

The encoder is timm's Swin, so the file's names go through timm's own ``checkpoint_filter_fn`` (Microsoft's patch
merging sits at the end of a stage, timm's at the start of the next; relative-position tables are resized if the
network's windows differ). The buffers ``relative_position_index`` and ``attn_mask`` are recomputed by the network
and the ImageNet classifier is not used. Swin-Unet's stages are shallower than Swin-T's (2, 2, 2, 2 against
2, 2, 6, 2): the file's extra blocks are not used, as in the official ``load_from``.

Swin-Unet also starts its decoder from the encoder (``SwinUnet.load_from``): the blocks of encoder stage ``i``
initialise decoder stage ``3 - i`` (``layers.i.*`` -> ``layers_up.(3-i).*``), where the shapes agree.
"""

from __future__ import annotations

import re
from collections.abc import Mapping

import torch
from timm.models.swin_transformer import checkpoint_filter_fn

from nnunetv2_resunet.architectures.decoders.swin_unet import SwinUnetDecoder
from nnunetv2_resunet.architectures.encoders.swin import SwinEncoder
from nnunetv2_resunet.architectures.pretrained.common import (
    LoadReport,
    PretrainedWeightsError,
    adapt_input_conv,
    copy_into,
    finish,
)

RECOMPUTED = ("relative_position_index", "attn_mask")
FIRST_CONV = "patch_embed.proj.weight"
ENCODER_BLOCK = re.compile(r"^layers\.(\d+)\.blocks\.(\d+)\.(.+)$")


def load_microsoft_swin(network: torch.nn.Module, weights: Mapping[str, torch.Tensor], source: str) -> LoadReport:
    """A Microsoft Swin checkpoint into ``network.encoder`` (a :class:`SwinEncoder`) and, for Swin-Unet's decoder,
    its blocks.

    Raises:
        PretrainedWeightsError: The file lacks tensors of the encoder or has tensors it cannot place.
    """
    encoder: SwinEncoder = network.encoder
    swin = encoder.swin
    report = LoadReport(source, "Microsoft Swin (.pth)")
    target = swin.state_dict()
    report.unused = {key: "a buffer the network recomputes from its window size" for key in weights
                     if key.endswith(RECOMPUTED)}
    deeper = {key for key in weights if (block := ENCODER_BLOCK.match(key)) and int(block[1]) < len(swin.layers)
              and int(block[2]) >= encoder.depths[int(block[1])]}
    report.unused.update({key: f"blocks beyond the network's depths {encoder.depths} (the official Swin-Unet drops "
                               "them too)" for key in deeper})
    renamed: dict[str, torch.Tensor] = {}
    # timm's renaming (it tells Microsoft's layout from timm's by the classifier's name, so the whole file goes in).
    remaining = {key: value for key, value in weights.items() if key not in report.unused}
    try:
        converted = checkpoint_filter_fn(remaining, swin)
    except (AttributeError, KeyError, RuntimeError) as error:  # timm looks up the modules the names point at
        raise PretrainedWeightsError(f"{source} does not fit {type(swin).__name__} with depths {encoder.depths}: "
                                     f"{error}") from error
    for name, tensor in converted.items():
        if name in target:
            renamed[name] = tensor
            if name.endswith("relative_position_bias_table") and weights[name].shape != tensor.shape:
                report.adapted["encoder.swin." + name] = "resized by timm to the network's smaller window"
        elif name.startswith("head."):
            report.unused[name] = "the ImageNet classifier"
        else:
            raise PretrainedWeightsError(f"{source} has tensors this loader cannot place, e.g. {name!r}: is it a "
                                         "Microsoft Swin checkpoint ({'model': ...})?")
    if FIRST_CONV in renamed and renamed[FIRST_CONV].shape[1] != target[FIRST_CONV].shape[1]:
        renamed[FIRST_CONV] = adapt_input_conv(renamed[FIRST_CONV], target[FIRST_CONV].shape[1])
        report.adapted["encoder.swin." + FIRST_CONV] = \
            f"RGB filters mapped to {target[FIRST_CONV].shape[1]} input channel(s)"
    copy_into(swin, renamed, source, "encoder.swin.", report)
    if isinstance(network.decoder, SwinUnetDecoder):
        _decoder_from_encoder(network.decoder, renamed, report)
    return finish(network, report)


def _decoder_from_encoder(decoder: SwinUnetDecoder, encoder_tensors: Mapping[str, torch.Tensor],
                          report: LoadReport) -> None:
    """Swin-Unet's ``load_from``: encoder stage ``i``'s blocks into decoder stage ``levels - 1 - i``, where shapes
    agree (the official code deletes the others and keeps their initialisation)."""
    levels = len(decoder.layers_up)
    target = decoder.state_dict()
    copied = {}
    for name, tensor in encoder_tensors.items():
        block = ENCODER_BLOCK.match(name)
        if block is None or not 0 < levels - 1 - int(block[1]) < levels:
            continue
        decoder_name = f"layers_up.{levels - 1 - int(block[1])}.blocks.{block[2]}.{block[3]}"
        if decoder_name in target and target[decoder_name].shape == tensor.shape:
            copied[decoder_name] = tensor
    decoder.load_state_dict(copied, strict=False)
    report.loaded += ["decoder." + name for name in copied]
    if copied:
        report.adapted["decoder.layers_up.*.blocks"] = (f"{len(copied)} tensors copied from the encoder's stages "
                                                        "(Swin-Unet's load_from)")
