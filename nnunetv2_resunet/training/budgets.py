"""Training budgets: ``<Trainer>_<N>epochs`` for every trainer of ours, named and sized as nnU-Net's own.

nnU-Net ships shorter schedules of its default trainer (``nnUNetTrainer_1epoch``, ``nnUNetTrainer_5epochs``, ...
in ``nnunetv2/training/nnUNetTrainer/variants/training_length``), each a subclass whose ``__init__`` sets
``num_epochs``. Every trainer in :data:`nnunetv2_resunet.training.ALL_TRAINERS` gets the same list, made here by
one function, so a study compares ours with nnU-Net's default at an equal budget by name alone:
``-tr nnUNetTrainer_50epochs`` beside ``-tr ResUnetTrainer_50epochs``.

The budget is applied in ``__init__``, after the base class's: ``nnUNetTrainer.__init__`` assigns
``num_epochs = 1000`` itself, so a class attribute would be overwritten, and the learning-rate schedule (PolyLR)
is built from ``num_epochs`` in ``initialize``, after ``__init__``, so it spans the budget. The generated
``__init__`` keeps nnU-Net's explicit signature, which nnU-Net records by name in every checkpoint
(``init_args``). Nothing else changes; in particular ``save_every`` stays nnU-Net's 50, as in its variants.
"""

import torch

from nnunetv2_resunet.training.resunet_trainer import ResUnetTrainer

#: nnU-Net 2.8's budgets (``nnUNetTrainer_Xepochs.py``); a test keeps this list equal to nnU-Net's.
EPOCH_BUDGETS: tuple[int, ...] = (1, 5, 10, 20, 50, 100, 250, 500, 750, 2000, 4000, 8000)


def budget_suffix(epochs: int) -> str:
    """nnU-Net's spelling: ``_1epoch``, ``_5epochs``, ..."""
    return "_1epoch" if epochs == 1 else f"_{epochs}epochs"


def budget_variant(base: type[ResUnetTrainer], epochs: int, module: str = __name__,
                   iterations: tuple[int, int] | None = None, suffix: str | None = None,
                   test_time_mirroring: bool = True) -> type[ResUnetTrainer]:
    """``base`` trained for ``epochs`` epochs, named ``<base>_<epochs>epochs`` (``_1epoch`` for one).

    ``module`` is where the class will be an attribute (for pickle and for readers of ``__module__``).
    ``iterations`` (training, validation-loss iterations per epoch) replaces nnU-Net's 250 and 50, for budgets below
    one epoch (the demo's); ``suffix`` then names the variant; ``test_time_mirroring=False`` validates and predicts
    without nnU-Net's mirroring (a quarter of the passes in 2d). ``base`` may be nnU-Net's own trainer."""
    if epochs < 1 or (iterations is not None and min(iterations) < 1):
        raise ValueError(f"a budget is a positive number of epochs and iterations, got {epochs}, {iterations}")

    def __init__(self, plans: dict, configuration: str, fold: int, dataset_json: dict,
                 device: torch.device = torch.device("cuda")):
        super(variant, self).__init__(plans, configuration, fold, dataset_json, device)
        self.num_epochs = epochs
        if iterations is not None:
            self.num_iterations_per_epoch, self.num_val_iterations_per_epoch = iterations

    def configure_rotation_dummyDA_mirroring_and_inital_patch_size(self):
        configured = super(variant, self).configure_rotation_dummyDA_mirroring_and_inital_patch_size()
        self.inference_allowed_mirroring_axes = None  # training keeps nnU-Net's mirroring augmentation
        return configured

    name = base.__name__ + (suffix or budget_suffix(epochs))
    length = f"{epochs} epoch{'s' if epochs != 1 else ''}"
    if iterations is not None:
        length += f" of {iterations[0]} iterations ({iterations[1]} for the validation loss)"
    if not test_time_mirroring:
        length += ", validated without test-time mirroring"
    overrides = {} if test_time_mirroring else {
        "configure_rotation_dummyDA_mirroring_and_inital_patch_size":
            configure_rotation_dummyDA_mirroring_and_inital_patch_size}
    variant = type(name, (base,), {
        **overrides,
        "__init__": __init__,
        "__module__": module,
        "__qualname__": name,
        "__doc__": f"{base.__name__} trained for {length} (nnU-Net's budget variants; everything else is "
                   f"{base.__name__}'s).",
        "budget_epochs": epochs,
    })
    __init__.__qualname__ = f"{name}.__init__"
    return variant


def budget_variants(trainers: tuple[type[ResUnetTrainer], ...], module: str) -> dict[str, type[ResUnetTrainer]]:
    """Every budget of :data:`EPOCH_BUDGETS` for every trainer, by class name, to be attributes of ``module``."""
    return {v.__name__: v for v in (budget_variant(t, e, module) for t in trainers for e in EPOCH_BUDGETS)}


#: The budget of ``nnUNetv2_resunet_demo``: every stage of the flow runs, in minutes on a CPU, and nothing is learnt
#: that could be measured. (epochs, training iterations per epoch, validation-loss iterations per epoch); its
#: trainers also validate without test-time mirroring.
DEMO_BUDGET: tuple[int, int, int] = (2, 5, 1)


def demo_variants(trainers: tuple[type, ...], module: str) -> dict[str, type]:
    """``<Trainer>_demo`` for each trainer: the demonstration budget :data:`DEMO_BUDGET`."""
    epochs, train, validation = DEMO_BUDGET
    variants = (budget_variant(t, epochs, module, iterations=(train, validation), suffix="_demo",
                               test_time_mirroring=False) for t in trainers)
    return {v.__name__: v for v in variants}
