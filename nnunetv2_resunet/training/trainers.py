"""The named trainers: one two-line shell per network config, because nnU-Net finds a trainer by its class name.

``ResUnetTrainer_v0_1`` .. ``ResUnetTrainer_v1_0`` are the ablation ladder (``architectures/configs/ladder.py``);
the comparison models (``architectures/configs/comparisons.py``) are named ``<Model>Trainer[_<variant>]``: the
decoder or network family first (``ResUnet``, ``UNet``, ``UNetPlusPlus``, ``UNet3Plus``, ``ResidualUNet``,
``ClassicUNet``), then the encoder (``_R34``, ``_R50``) or the one switch that differs (``_SpatialAttention``).
The transformer baselines (``architectures/configs/transformers.py``) are named after their paper's model
(``TransUNetTrainer``, ``SwinUnetTrainer``, ``EMCADTrainer``) and trained with the transformer recipe
(:class:`nnunetv2_resunet.training.recipes.TransformerRecipeTrainer`); ``ResUnetTrainer_PVTv2B2`` is ResUnet's
decoder on EMCAD's encoder, with the same recipe as ``EMCADTrainer`` so that only the decoder differs.
The names are part of every checkpoint (nnU-Net stores ``trainer_name``): never rename one.
"""

from nnunetv2_resunet.architectures.configs.comparisons import COMPARISONS, PLAIN_UNETS
from nnunetv2_resunet.architectures.configs.ladder import LADDER
from nnunetv2_resunet.architectures.configs.transformers import TRANSFORMERS
from nnunetv2_resunet.training.recipes import TransformerRecipeTrainer
from nnunetv2_resunet.training.resunet_trainer import ResUnetTrainer


class ResUnetTrainer_v0_1(ResUnetTrainer):
    resunet_config = LADDER["v0_1"]


class ResUnetTrainer_v0_2(ResUnetTrainer):
    resunet_config = LADDER["v0_2"]


class ResUnetTrainer_v0_3(ResUnetTrainer):
    resunet_config = LADDER["v0_3"]


class ResUnetTrainer_v0_4(ResUnetTrainer):
    resunet_config = LADDER["v0_4"]


class ResUnetTrainer_v0_5(ResUnetTrainer):
    resunet_config = LADDER["v0_5"]


class ResUnetTrainer_v0_6(ResUnetTrainer):
    resunet_config = LADDER["v0_6"]


class ResUnetTrainer_v0_7(ResUnetTrainer):
    resunet_config = LADDER["v0_7"]


class ResUnetTrainer_v1_0(ResUnetTrainer):
    resunet_config = LADDER["v1_0"]


LADDER_TRAINERS: dict[str, type[ResUnetTrainer]] = {
    t.resunet_config.name: t for t in (ResUnetTrainer_v0_1, ResUnetTrainer_v0_2, ResUnetTrainer_v0_3,
                                       ResUnetTrainer_v0_4, ResUnetTrainer_v0_5, ResUnetTrainer_v0_6,
                                       ResUnetTrainer_v0_7, ResUnetTrainer_v1_0)
}


class ResUnetTrainer_R50(ResUnetTrainer):
    resunet_config = COMPARISONS["resunet_r50"]


class UNetTrainer_R34(ResUnetTrainer):
    resunet_config = COMPARISONS["unet_r34"]


class UNetPlusPlusTrainer_R34(ResUnetTrainer):
    resunet_config = COMPARISONS["unetpp_r34"]


class UNet3PlusTrainer_R34(ResUnetTrainer):
    resunet_config = COMPARISONS["unet3p_r34"]


class ClassicUNetTrainer(ResUnetTrainer):
    resunet_config = PLAIN_UNETS["classic_unet"]


class ResidualUNetTrainer(ResUnetTrainer):
    resunet_config = PLAIN_UNETS["residual_unet"]


class ResidualUNetTrainer_SpatialAttention(ResUnetTrainer):
    resunet_config = PLAIN_UNETS["residual_unet_sa"]


# The comparison trainers by the name of their config (the recipe variant trains v1_0, see LADDER_TRAINERS).
COMPARISON_TRAINERS: dict[str, type[ResUnetTrainer]] = {
    t.resunet_config.name: t for t in (ResUnetTrainer_R50, UNetTrainer_R34, UNetPlusPlusTrainer_R34,
                                       UNet3PlusTrainer_R34, ClassicUNetTrainer, ResidualUNetTrainer,
                                       ResidualUNetTrainer_SpatialAttention)
}


class TransUNetTrainer(TransformerRecipeTrainer):
    resunet_config = TRANSFORMERS["transunet"]


class SwinUnetTrainer(TransformerRecipeTrainer):
    resunet_config = TRANSFORMERS["swin_unet"]


class EMCADTrainer(TransformerRecipeTrainer):
    resunet_config = TRANSFORMERS["emcad"]


class ResUnetTrainer_PVTv2B2(TransformerRecipeTrainer):
    resunet_config = TRANSFORMERS["resunet_pvt_v2_b2"]


# The transformer trainers by the name of their config.
TRANSFORMER_TRAINERS: dict[str, type[ResUnetTrainer]] = {
    t.resunet_config.name: t for t in (TransUNetTrainer, SwinUnetTrainer, EMCADTrainer, ResUnetTrainer_PVTv2B2)
}
