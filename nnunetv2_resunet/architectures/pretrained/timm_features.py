"""Any timm model's checkpoint into a :class:`TimmEncoder`, in timm's names or the model's original ones.

timm ships, next to each model family, a ``checkpoint_filter_fn`` that renames the original release's tensors to
timm's modules; for PVTv2 it maps ``patch_embed1`` .. ``patch_embed4``, ``block1.0`` .. and ``norm1`` .. of
``pvt_v2_b2.pth`` (whai362/PVT, the file EMCAD loads) to timm's stages. The loader applies the filter of the model's
own module, maps the first conv (timm's ``pretrained_cfg["first_conv"]``) to nnU-Net's input channels and drops the
classifier, which the encoder does not have.
"""

from __future__ import annotations

import sys
from collections.abc import Mapping

import torch

from nnunetv2_resunet.architectures.encoders.timm import TimmEncoder
from nnunetv2_resunet.architectures.pretrained.common import (
    LoadReport,
    PretrainedWeightsError,
    adapt_input_conv,
    copy_into,
    finish,
)


def load_timm_checkpoint(network: torch.nn.Module, weights: Mapping[str, torch.Tensor], source: str) -> LoadReport:
    """A checkpoint of the encoder's timm model into ``network.encoder`` (a :class:`TimmEncoder`).

    Raises:
        PretrainedWeightsError: The file lacks tensors of the encoder or has tensors it cannot place.
    """
    encoder: TimmEncoder = network.encoder
    model = encoder.timm_model
    report = LoadReport(source, f"{model.pretrained_cfg.get('architecture', type(model).__name__)} checkpoint")
    convert = getattr(sys.modules[type(model).__module__], "checkpoint_filter_fn", None)
    try:
        renamed = dict(convert(dict(weights), model)) if convert is not None else dict(weights)
    except (AttributeError, KeyError, RuntimeError) as error:  # timm's filters look up the modules they rename to
        raise PretrainedWeightsError(f"{source} does not fit {report.file_format}: {error}") from error
    target = model.state_dict()
    classifier = model.pretrained_cfg.get("classifier", "head")
    for name in [n for n in renamed if n not in target]:
        if name.startswith(classifier + "."):
            report.unused[name] = "the ImageNet classifier"
            del renamed[name]
        else:
            raise PretrainedWeightsError(f"{source} has tensors this loader cannot place, e.g. {name!r}: is it a "
                                         f"checkpoint of {report.file_format.split()[0]}?")
    first_conv = model.pretrained_cfg.get("first_conv", "") + ".weight"
    if first_conv in renamed and renamed[first_conv].shape[1] != target[first_conv].shape[1]:
        renamed[first_conv] = adapt_input_conv(renamed[first_conv], target[first_conv].shape[1])
        report.adapted["encoder.model.model." + first_conv] = \
            f"RGB filters mapped to {target[first_conv].shape[1]} input channel(s)"
    copy_into(model, renamed, source, "encoder.model.model.", report)
    return finish(network, report)
