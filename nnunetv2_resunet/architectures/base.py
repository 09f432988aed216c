"""The part of nnU-Net's network contract that every network of the family shares: padding, cropping, memory.

A network here is an encoder that publishes ``strides`` (its deepest stride is the total stride) and a decoder
that publishes ``deep_supervision`` (nnU-Net flips it) and ``output_strides``. :class:`SegmentationNetwork` pads
any input to a multiple of the total stride, crops every output back to the size nnU-Net's target downsampling
(``DownsampleSegForDSTransform``: ``round(size * (1 / s))``) produces, measures ``compute_conv_feature_map_size``
by a meta-device forward, switches deep supervision so that what is left unused is not trained
(:meth:`SegmentationNetwork.set_deep_supervision`), and offers nnU-Net's He initialisation. Subclasses only build the
encoder and decoder.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F
from dynamic_network_architectures.initialization.weight_init import InitWeights_He
from torch import nn


class SegmentationNetwork(nn.Module):
    """Encoder + decoder with nnU-Net's contract. Subclasses build ``encoder`` and ``decoder`` from ``config``.

    Shapes:
        input ``(B, input_channels, H, W)`` with any H, W; output ``(B, num_classes, H, W)``, or with deep
        supervision a list whose i-th entry is ``(B, num_classes, round(H / s_i), round(W / s_i))`` with
        ``s_i = output_strides[i]`` (the sizes nnU-Net's target downsampling produces).
    """

    encoder: nn.Module
    decoder: nn.Module
    # Whether the network is sized by the planned patch (``build_network`` then passes ``patch_size``).
    NEEDS_PATCH_SIZE = False

    def __init__(self, input_channels: int, num_classes: int, config):
        super().__init__()
        if input_channels < 1 or num_classes < 1:
            raise ValueError(f"input_channels and num_classes must be positive, got {input_channels}, {num_classes}")
        self.config = config
        self.input_channels = input_channels
        self.num_classes = num_classes
        # Per deep-supervision mode, the parameters no output depends on (found on first use of the mode).
        self._unused_by_mode: dict[bool, frozenset[str]] = {}

    @property
    def output_strides(self) -> tuple[int, ...]:
        """Downsampling factor of each deep-supervision output, full resolution first."""
        return self.decoder.output_strides

    @property
    def total_stride(self) -> int:
        """Inputs are padded to a multiple of this (the encoder's deepest stride)."""
        return self.encoder.strides[-1]

    def forward(self, x: torch.Tensor) -> list[torch.Tensor] | torch.Tensor:
        size = x.shape[2:]
        padded = [-(-s // self.total_stride) * self.total_stride for s in size]
        if list(size) != padded:
            # Pad at the end (bottom/right) so that output pixel i at stride s still covers input pixels [i*s, (i+1)*s).
            x = F.pad(x, (0, padded[1] - size[1], 0, padded[0] - size[0]))
        out = self.decoder(self.encoder(x))
        if list(size) == padded:
            return out
        if not self.decoder.deep_supervision:
            return out[:, :, :size[0], :size[1]]
        return [o[:, :, :round(size[0] * (1 / s)), :round(size[1] * (1 / s))]
                for o, s in zip(out, self.output_strides)]

    def set_deep_supervision(self, enabled: bool) -> None:
        """Switch deep supervision (``decoder.deep_supervision``, nnU-Net's flag), and train only what the outputs
        then depend on.

        All heads are always built (a checkpoint loads either way), so without deep supervision the heads of the
        other stages take no part in the output (and EMCAD's 1/32 head takes part in neither mode: its official
        prediction is the last head alone). Their parameters stop requiring gradients while unused:
        DistributedDataParallel, as nnU-Net wraps the network (without ``find_unused_parameters``), waits for a
        gradient of every parameter that requires one and fails at the second step otherwise. Nothing else
        changes: on one GPU those parameters get no gradient either, and optimizers skip them. Switching the mode
        makes what it uses trainable again; parameters the outputs use in both modes are never touched.
        """
        self.decoder.deep_supervision = enabled
        if enabled not in self._unused_by_mode:
            self._unused_by_mode[enabled] = frozenset(self.parameters_without_gradient())
        touched = frozenset().union(*self._unused_by_mode.values())
        for name, parameter in self.named_parameters():
            if name in touched:
                parameter.requires_grad_(name not in self._unused_by_mode[enabled])

    def parameters_without_gradient(self) -> list[str]:
        """Names of the parameters that no output depends on in the network's current mode.

        Found, not declared, so it stays exact for every config and decoder: one forward of a tiny image (on the
        parameters' device, in eval mode: running statistics untouched, no dropout) with every parameter requiring a
        gradient, and the autograd graph of the outputs walked back to the parameters it reaches, which are exactly
        those a backward would give a gradient. No backward, nothing kept: milliseconds, where a forward and
        backward on the meta device took half a second of Python per call (it runs at every training's start).
        """
        parameters = {name: p.detach().requires_grad_() for name, p in self.named_parameters()}  # same storage
        first = next(iter(parameters.values()))
        edge = 2 * self.total_stride
        x = torch.zeros((1, self.input_channels, edge, edge), device=first.device, dtype=first.dtype)
        was_training = self.training
        self.eval()
        try:
            with torch.enable_grad():
                out = torch.func.functional_call(self, parameters, (x,))
        finally:
            self.train(was_training)
        reached, seen = set(), set()
        stack = [o.grad_fn for o in (out if isinstance(out, (list, tuple)) else [out])]
        while stack:
            node = stack.pop()
            if node is None or node in seen:
                continue
            seen.add(node)
            if hasattr(node, "variable"):  # AccumulateGrad: where a backward would leave a parameter's gradient
                reached.add(id(node.variable))
            stack.extend(next_node for next_node, _ in node.next_functions)
        return [name for name, parameter in parameters.items() if id(parameter) not in reached]

    def compute_conv_feature_map_size(self, input_size: Sequence[int]) -> int:
        """Elements in the outputs of every conv and transposed conv for one sample of ``input_size`` (H, W).

        The same quantity dynamic_network_architectures' networks estimate, which nnU-Net's planner compares
        against its GPU-memory reference. Measured, not modelled: a forward pass on the meta device (no memory,
        no compute) with hooks on the conv layers, so it stays exact for every config.
        """
        if len(input_size) != 2:
            raise ValueError(f"give the image size (H, W) without batch or channel axes, got {tuple(input_size)}")
        total = 0

        def count(module, inputs, output):
            nonlocal total
            total += output.numel()

        convs = [m for m in self.modules() if isinstance(m, (nn.Conv2d, nn.ConvTranspose2d))]
        handles = [m.register_forward_hook(count) for m in convs]
        meta_state = {k: torch.empty_like(v, device="meta") for k, v in self.state_dict(keep_vars=True).items()}
        # In eval mode: a training-mode BatchNorm refuses one value per channel, which a small patch (<= the
        # network's stride) gives at the bottom for this one sample; the shapes, and so the count, are the same.
        was_training = self.training
        self.eval()
        try:
            with torch.no_grad():
                x = torch.empty((1, self.input_channels, *input_size), device="meta")
                torch.func.functional_call(self, meta_state, (x,))
        finally:
            self.train(was_training)
            for handle in handles:
                handle.remove()
        return total

    @staticmethod
    def initialize(module: nn.Module) -> None:
        """He initialisation as nnU-Net's networks use it: ``net.apply(Network.initialize)``."""
        InitWeights_He(1e-2)(module)
