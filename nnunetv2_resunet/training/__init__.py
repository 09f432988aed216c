"""nnU-Net trainers: ``ResUnetTrainer`` (the base, :mod:`.resunet_trainer`), the named shells (:mod:`.trainers`),
the recipe variants (:mod:`.recipes`), the transformer trainers without their transformer blocks
(:mod:`.ablations`), every trainer's budget variants and the demo's (:mod:`.budgets`) and, made on first use, the
seeded repeats of any trainer (:mod:`.repeats`). nnU-Net finds them by class name through ``nnUNet_extTrainer``
(see ``nnunetv2_resunet.ext_trainers``); every trainer is importable from here, e.g.
``from nnunetv2_resunet.training import ResUnetTrainer`` for a user's own subclass.

Imports: nnU-Net's training code and ``nnunetv2_resunet.architectures``; nothing from evaluation, planning or
benchmarking.
"""

from nnunetv2.training.nnUNetTrainer.nnUNetTrainer import nnUNetTrainer

from nnunetv2_resunet.training.ablations import ABLATION_TRAINERS
from nnunetv2_resunet.training.budgets import DEMO_BUDGET, EPOCH_BUDGETS, budget_suffix, budget_variants, demo_variants
from nnunetv2_resunet.training.recipes import ResUnetTrainer_ThesisRecipe, TransformerRecipeTrainer
from nnunetv2_resunet.training.repeats import seeded_name, seeded_trainer, seeded_variant
from nnunetv2_resunet.training.resunet_trainer import ResUnetTrainer, check_2d
from nnunetv2_resunet.training.trainers import (
    COMPARISON_TRAINERS,
    LADDER_TRAINERS,
    TRANSFORMER_TRAINERS,
    ClassicUNetTrainer,
    EMCADTrainer,
    ResidualUNetTrainer,
    ResidualUNetTrainer_SpatialAttention,
    ResUnetTrainer_PVTv2B2,
    ResUnetTrainer_R50,
    ResUnetTrainer_v0_1,
    ResUnetTrainer_v0_2,
    ResUnetTrainer_v0_3,
    ResUnetTrainer_v0_4,
    ResUnetTrainer_v0_5,
    ResUnetTrainer_v0_6,
    ResUnetTrainer_v0_7,
    ResUnetTrainer_v1_0,
    SwinUnetTrainer,
    TransUNetTrainer,
    UNet3PlusTrainer_R34,
    UNetPlusPlusTrainer_R34,
    UNetTrainer_R34,
)

# Primus's ablation of each transformer trainer, <Trainer>_NoTransformerBlocks: importable from here like the others.
globals().update(ABLATION_TRAINERS)

# Every trainer of the plugin, in the order of the trainer table: v1.0, the ladder, the comparison models, the
# transformer baselines and their ablation, the recipe variants. (TransformerRecipeTrainer is a base, not a trainer
# of its own.)
ALL_TRAINERS: tuple[type[ResUnetTrainer], ...] = (
    ResUnetTrainer,
    ResUnetTrainer_v0_1, ResUnetTrainer_v0_2, ResUnetTrainer_v0_3, ResUnetTrainer_v0_4, ResUnetTrainer_v0_5,
    ResUnetTrainer_v0_6, ResUnetTrainer_v0_7, ResUnetTrainer_v1_0,
    ResUnetTrainer_R50, UNetTrainer_R34, UNetPlusPlusTrainer_R34, UNet3PlusTrainer_R34, ClassicUNetTrainer,
    ResidualUNetTrainer, ResidualUNetTrainer_SpatialAttention,
    TransUNetTrainer, SwinUnetTrainer, EMCADTrainer, ResUnetTrainer_PVTv2B2, *ABLATION_TRAINERS.values(),
    ResUnetTrainer_ThesisRecipe,
)

# nnU-Net's shorter schedules for each of them, ``<Trainer>_<N>epochs`` (not in ALL_TRAINERS: that lists networks
# and recipes, as README's trainer table does). Importable from here like the others.
BUDGET_TRAINERS: dict[str, type[ResUnetTrainer]] = budget_variants(ALL_TRAINERS, module=__name__)
globals().update(BUDGET_TRAINERS)

# nnUNetv2_resunet_demo's trainers, <Trainer>_demo at DEMO_BUDGET: nnU-Net's 2d default, ResUnet v1.0 and EMCAD.
DEMO_TRAINERS: dict[str, type] = demo_variants((nnUNetTrainer, ResUnetTrainer, EMCADTrainer), module=__name__)
globals().update(DEMO_TRAINERS)

__all__ = ["ABLATION_TRAINERS", "ALL_TRAINERS", "BUDGET_TRAINERS", "COMPARISON_TRAINERS", "DEMO_BUDGET",
           "DEMO_TRAINERS", "EPOCH_BUDGETS",
           "LADDER_TRAINERS", "TRANSFORMER_TRAINERS", "TransformerRecipeTrainer", "budget_suffix", "check_2d",
           "seeded_name", "seeded_trainer", "seeded_variant",
           *(t.__name__ for t in ALL_TRAINERS), *BUDGET_TRAINERS, *DEMO_TRAINERS]
