"""What nnU-Net imports, by bare name, when it searches the folders in ``nnUNet_extTrainer`` for ``-tr NAME``.

The classes live in :mod:`nnunetv2_resunet.training`; importing them here (rather than defining them) keeps one
class object per trainer, so a user's trainer that subclasses ours is a subclass of what nnU-Net finds.
"""

from nnunetv2_resunet.training import (  # noqa: F401 (re-exported for nnU-Net's lookup by attribute)
    ClassicUNetTrainer,
    ResidualUNetTrainer,
    ResidualUNetTrainer_SpatialAttention,
    ResUnetTrainer,
    ResUnetTrainer_R50,
    ResUnetTrainer_ThesisRecipe,
    ResUnetTrainer_v0_1,
    ResUnetTrainer_v0_2,
    ResUnetTrainer_v0_3,
    ResUnetTrainer_v0_4,
    ResUnetTrainer_v0_5,
    ResUnetTrainer_v0_6,
    ResUnetTrainer_v0_7,
    ResUnetTrainer_v1_0,
    UNet3PlusTrainer_R34,
    UNetPlusPlusTrainer_R34,
    UNetTrainer_R34,
)
