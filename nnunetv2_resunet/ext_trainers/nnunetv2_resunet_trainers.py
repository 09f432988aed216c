"""What nnU-Net imports, by bare name, when it searches the folders in ``nnUNet_extTrainer`` for ``-tr NAME``.

The classes live in :mod:`nnunetv2_resunet.training`; importing them here (rather than defining them) keeps one
class object per trainer, so a user's trainer that subclasses ours is a subclass of what nnU-Net finds.
"""

from nnunetv2_resunet.training import ALL_TRAINERS, BUDGET_TRAINERS

# nnU-Net's lookup reads module attributes by name: every trainer and its budget variants (``_5epochs``, ...).
globals().update({trainer.__name__: trainer for trainer in ALL_TRAINERS})
globals().update(BUDGET_TRAINERS)
