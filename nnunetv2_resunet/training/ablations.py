"""Primus's ablation as trainers: ``<Trainer>_NoTransformerBlocks`` for every transformer trainer, made by one
function, as the budget variants are (:mod:`.budgets`).

Primus (Wald et al., 2025) found that many hybrid "transformer" segmentation models lose little or nothing when their
transformer blocks are replaced by identity. Each variant here trains its base trainer's network with exactly that
change (the config row ``<config>_no_transformer_blocks`` of ``architectures/configs/transformers.py``): patch
embeddings, merging, decoder, recipe and everything nnU-Net does stay the base trainer's. A variant is a subclass that
only names its config, like the shells of :mod:`.trainers`; its ``__init__`` is the base's, whose explicit signature
nnU-Net records in every checkpoint.
"""

from nnunetv2_resunet.architectures.configs.transformers import NO_TRANSFORMER_BLOCKS, NO_TRANSFORMER_BLOCKS_SUFFIX
from nnunetv2_resunet.training.resunet_trainer import ResUnetTrainer
from nnunetv2_resunet.training.trainers import TRANSFORMER_TRAINERS

#: The trainers' name suffix, in nnU-Net's CamelCase variant style.
SUFFIX = "_NoTransformerBlocks"


def no_transformer_blocks_variant(base: type[ResUnetTrainer], module: str = __name__) -> type[ResUnetTrainer]:
    """``base`` with its network's transformer blocks replaced by identity, named ``<base>_NoTransformerBlocks``.

    ``module`` is where the class will be an attribute (for pickle and for readers of ``__module__``).

    Raises:
        ValueError: ``base``'s network has no transformer-free row (it is not one of the transformer baselines).
    """
    key = base.resunet_config.name + NO_TRANSFORMER_BLOCKS_SUFFIX
    if key not in NO_TRANSFORMER_BLOCKS:
        raise ValueError(f"{base.__name__} trains {base.resunet_config.name}, which has no transformer blocks to "
                         f"remove; variants exist for {sorted(NO_TRANSFORMER_BLOCKS)}")
    name = base.__name__ + SUFFIX
    return type(name, (base,), {
        "resunet_config": NO_TRANSFORMER_BLOCKS[key],
        "__module__": module,
        "__qualname__": name,
        "__doc__": f"{base.__name__} with every transformer block (attention + MLP) replaced by identity, everything "
                   f"else unchanged (Primus's ablation).",
    })


def no_transformer_blocks_variants(trainers: tuple[type[ResUnetTrainer], ...], module: str
                                   ) -> dict[str, type[ResUnetTrainer]]:
    """:func:`no_transformer_blocks_variant` of each trainer, by class name, to be attributes of ``module``."""
    return {v.__name__: v for v in (no_transformer_blocks_variant(t, module) for t in trainers)}


#: ``TransUNetTrainer_NoTransformerBlocks``, ``SwinUnetTrainer_NoTransformerBlocks``,
#: ``EMCADTrainer_NoTransformerBlocks``, ``ResUnetTrainer_PVTv2B2_NoTransformerBlocks``, attributes of this module.
ABLATION_TRAINERS: dict[str, type[ResUnetTrainer]] = no_transformer_blocks_variants(
    tuple(TRANSFORMER_TRAINERS.values()), module=__name__)
globals().update(ABLATION_TRAINERS)
