"""Any timm model as an encoder of this package: timm publishes the features, we only map them to our contract.

``timm.create_model(name, features_only=True, feature_cls="getter")`` wraps the full timm model (its state dict
keeps timm's own names under ``model.``, so timm's checkpoints and ``checkpoint_filter_fn`` apply unchanged) and
returns the intermediate features of ``forward_intermediates`` as NCHW tensors. Its ``feature_info`` publishes
what our decoders are built from; the adapter maps, it never re-derives:

- ``feature_info.module_name()`` -> ``feature_names`` (e.g. ``stages.0`` .. ``stages.3`` for PVTv2),
- ``feature_info.channels()`` -> ``output_channels``,
- ``feature_info.reduction()`` -> ``strides``.

The encoder keeps timm's initialisation (or the pretrained weights loaded into it) and runs under
:func:`nnunetv2_resunet.architectures.precision.fp16_safe`.
"""

from __future__ import annotations

from collections.abc import Sequence

import timm
import torch
from torch import nn

from nnunetv2_resunet.architectures.precision import fp16_safe


class TimmEncoder(nn.Module):
    """A timm model's intermediate features, named by the timm modules that produce them.

    Args:
        input_channels: Image channels (timm's ``in_chans``: timm sizes the first conv for them).
        model_name: A timm model with ``forward_intermediates``, e.g. ``"pvt_v2_b2"``.
        model_args: More keyword arguments for ``timm.create_model`` (e.g. ``drop_path_rate``).
        out_indices: Which of the model's feature levels to return (default: all of them).

    Attributes:
        feature_names: timm's module names of the returned features, shallowest first.
        output_channels: Their channels.
        strides: Their downsampling factor relative to the input.
        model: timm's ``FeatureGetterNet``; the full timm model is ``model.model``.
    """

    def __init__(self, input_channels: int, model_name: str, model_args: dict | None = None,
                 out_indices: Sequence[int] | None = None):
        super().__init__()
        args = dict(model_args or {})
        if out_indices is not None:
            args["out_indices"] = tuple(out_indices)
        try:
            self.model = timm.create_model(model_name, pretrained=False, features_only=True, feature_cls="getter",
                                           in_chans=input_channels, **args)
        except RuntimeError as error:  # timm raises RuntimeError for a name it does not know
            raise ValueError(f"timm cannot build a features_only model {model_name!r}: {error}") from error
        info = self.model.feature_info
        self.feature_names = tuple(info.module_name())
        self.output_channels = tuple(info.channels())
        self.strides = tuple(info.reduction())

    @property
    def timm_model(self) -> nn.Module:
        """The full timm model (what timm's checkpoints and ``checkpoint_filter_fn`` are written for)."""
        return self.model.model

    def forward(self, x: torch.Tensor) -> dict[str, torch.Tensor]:
        return dict(zip(self.feature_names, fp16_safe(self.model, x)))
