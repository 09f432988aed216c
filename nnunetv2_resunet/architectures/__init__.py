"""The networks: one configurable network per family, its variants as rows in config tables.

- ``base``: :class:`SegmentationNetwork`, nnU-Net's network contract shared by every family (padding to the
  network's stride and cropping back, deep-supervision outputs, memory estimate, He init).
- ``building_blocks``: conv units, ResNet blocks, the decoder stage, skip gating.
- ``encoders/``: backbones that return named features and publish ``feature_names``, ``output_channels`` and
  ``strides``; ``decoders/``: decoders built from those facts alone.
- ``resunet`` (ResNet encoder + a decoder: the ladder and the ResNet comparisons), ``conv_unet`` (plain-conv
  U-Nets): the families, each a frozen config dataclass and the network it configures.
- ``configs/``: the tables of named variants; ``registry``: every config by name and ``build_network``.
- ``pretrained``: loading published encoder weights.

Imports: torch, timm and dynamic-network-architectures only; nothing from nnU-Net's training code and nothing from
the rest of this package (training, evaluation, planning and benchmarking import from here, never the reverse).
"""
