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


def budget_variant(base: type[ResUnetTrainer], epochs: int, module: str = __name__) -> type[ResUnetTrainer]:
    """``base`` trained for ``epochs`` epochs, named ``<base>_<epochs>epochs`` (``_1epoch`` for one).

    ``module`` is where the class will be an attribute (for pickle and for readers of ``__module__``)."""
    if epochs < 1:
        raise ValueError(f"a budget is a positive number of epochs, got {epochs}")

    def __init__(self, plans: dict, configuration: str, fold: int, dataset_json: dict,
                 device: torch.device = torch.device("cuda")):
        super(variant, self).__init__(plans, configuration, fold, dataset_json, device)
        self.num_epochs = epochs

    name = base.__name__ + budget_suffix(epochs)
    variant = type(name, (base,), {
        "__init__": __init__,
        "__module__": module,
        "__qualname__": name,
        "__doc__": f"{base.__name__} trained for {epochs} epoch{'s' if epochs != 1 else ''} (nnU-Net's budget "
                   f"variants; everything else is {base.__name__}'s).",
        "budget_epochs": epochs,
    })
    __init__.__qualname__ = f"{name}.__init__"
    return variant


def budget_variants(trainers: tuple[type[ResUnetTrainer], ...], module: str) -> dict[str, type[ResUnetTrainer]]:
    """Every budget of :data:`EPOCH_BUDGETS` for every trainer, by class name, to be attributes of ``module``."""
    return {v.__name__: v for v in (budget_variant(t, e, module) for t in trainers for e in EPOCH_BUDGETS)}
