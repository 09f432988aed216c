"""What nnU-Net imports, by bare name, when it searches the folders in ``nnUNet_extTrainer`` for ``-tr NAME``: every
trainer of ours, and on demand the seeded repeats of any trainer.

The classes live in :mod:`nnunetv2_resunet.training`; importing them here (rather than defining them) keeps one
class object per trainer, so a user's trainer that subclasses ours is a subclass of what nnU-Net finds.
"""

from nnunetv2_resunet.training import ALL_TRAINERS, BUDGET_TRAINERS, DEMO_TRAINERS
from nnunetv2_resunet.training.repeats import seeded_trainer

# nnU-Net's lookup reads module attributes by name: every trainer and its budget variants (``_5epochs``, ...).
globals().update({trainer.__name__: trainer for trainer in ALL_TRAINERS})
globals().update(BUDGET_TRAINERS)
globals().update(DEMO_TRAINERS)  # nnUNetv2_resunet_demo's <Trainer>_demo


def __getattr__(name: str):
    """Seeded repeats, ``<Trainer>_seed<N>`` of any trainer nnU-Net can find (ours, nnU-Net's, a user's), made on
    first use (``nnunetv2_resunet.training.repeats``): nnU-Net's lookup asks ``hasattr(module, name)``."""
    variant = seeded_trainer(name)
    if variant is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    return variant
