"""Every network config of the plugin in one table, and how to build a network from any of them.

Tests parametrise over ``NETWORK_CONFIGS``, so a new variant is tested by adding one row to its table; trainers
and the model table build through :func:`build_network`.
"""

from __future__ import annotations

from collections.abc import Sequence

from nnunetv2_resunet.architectures.base import SegmentationNetwork
from nnunetv2_resunet.architectures.configs.comparisons import COMPARISONS, PLAIN_UNETS
from nnunetv2_resunet.architectures.configs.ladder import LADDER
from nnunetv2_resunet.architectures.configs.transformers import NO_TRANSFORMER_BLOCKS, TRANSFORMERS
from nnunetv2_resunet.architectures.conv_unet import ConvUNet, ConvUNetConfig
from nnunetv2_resunet.architectures.resunet import ResUnet, ResUnetConfig
from nnunetv2_resunet.architectures.timm_unet import TimmUNet, TimmUNetConfig

NetworkConfig = ResUnetConfig | ConvUNetConfig | TimmUNetConfig

# The network class of each config type.
NETWORK_CLASSES: dict[type, type[SegmentationNetwork]] = {ResUnetConfig: ResUnet, ConvUNetConfig: ConvUNet,
                                                          TimmUNetConfig: TimmUNet}


def _merge(*tables: dict[str, NetworkConfig]) -> dict[str, NetworkConfig]:
    merged: dict[str, NetworkConfig] = {}
    for table in tables:
        clash = set(merged) & set(table)
        if clash:
            raise ValueError(f"config names must be unique across tables, {sorted(clash)} appear twice")
        merged.update(table)
    return merged


NETWORK_CONFIGS: dict[str, NetworkConfig] = _merge(LADDER, COMPARISONS, PLAIN_UNETS, TRANSFORMERS,
                                                   NO_TRANSFORMER_BLOCKS)


def build_network(config: NetworkConfig, input_channels: int, num_classes: int, deep_supervision: bool = False,
                  patch_size: Sequence[int] | None = None) -> SegmentationNetwork:
    """Build the network of ``config`` (apply ``network.initialize`` as nnU-Net does; a no-op for networks that
    initialise themselves).

    Args:
        patch_size: The planned patch (H, W). Networks sized by it (``NEEDS_PATCH_SIZE``: position embeddings,
            attention windows) get it, or their default (224 x 224) when None; the others ignore it.

    Raises:
        ValueError: ``config`` is not a config type of the plugin.
    """
    network_class = NETWORK_CLASSES.get(type(config))
    if network_class is None:
        raise ValueError(f"no network for a {type(config).__name__}; expected one of "
                         f"{[c.__name__ for c in NETWORK_CLASSES]}")
    sized = {"patch_size": tuple(patch_size)} if patch_size is not None and network_class.NEEDS_PATCH_SIZE else {}
    return network_class(input_channels, num_classes, config, deep_supervision=deep_supervision, **sized)
