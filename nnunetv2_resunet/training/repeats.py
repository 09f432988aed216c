"""Seeded repeats: ``<Trainer>_seed<N>`` for any trainer nnU-Net can find, made by one function, as the budget
variants are (:mod:`.budgets`).

A model trained twice at the same budget can land far apart (on real ACDC, nnU-Net's 2d default reached 70.7 % and
43.1 % mean Dice in two runs of 600 iterations): only repeated trainings show that spread. A repeat is a trainer
variant whose name carries its seed, so nnU-Net keeps its output folder apart
(``TRAINER_seed1__PLANS__CONFIGURATION``), stores the name in its checkpoints and finds it again for ``--c``,
``--val`` and ``nnUNetv2_predict``. It changes nothing but the random streams:

* ``initialize`` (network initialisation and everything before training) starts from Python's, numpy's and torch's
  generators seeded from (seed, fold);
* ``get_dataloaders`` reseeds the main process and gives every data-augmentation worker of nnU-Net's
  ``NonDetMultiThreadedAugmenter`` its own seed, from (seed, fold, rank, the epoch training starts at), so that
  workers differ from each other and a run resumed with ``--c`` does not replay its first epochs' augmentation.

Seeded is not bitwise reproducible: nnU-Net's workers deliver batches in the order they finish, cuDNN picks
algorithms by timing (``cudnn.benchmark``), and some GPU kernels are not deterministic. What a seed fixes is which
repeat is which.

The variants cannot all be listed beforehand (any trainer, nnU-Net's own and a user's included, may be repeated), so
they are made on first use: :func:`seeded_trainer` resolves a name ``<Base>_seed<N>`` by finding ``<Base>`` as
nnU-Net finds trainers; this module's ``__getattr__`` and ``ext_trainers``' serve nnU-Net's lookup by name and
pickle. The same name always gives the same class.
"""

from __future__ import annotations

import contextlib
import io
import random
import re
import zlib
from collections.abc import Callable, Iterator

import numpy as np
import torch
from nnunetv2.training.nnUNetTrainer.nnUNetTrainer import nnUNetTrainer

SEEDED_NAME = re.compile(r"^(?P<base>.+)_seed(?P<seed>\d+)$")
_VARIANTS: dict[str, type[nnUNetTrainer]] = {}


def seeded_name(trainer: str, seed: int) -> str:
    """``<trainer>_seed<seed>``."""
    return f"{trainer}_seed{seed}"


def _stream(*keys: int | str) -> np.random.SeedSequence:
    """A seed sequence from integers and text (fold "all"), identical on every machine (no Python ``hash``)."""
    return np.random.SeedSequence([k if isinstance(k, int) else zlib.crc32(k.encode()) for k in keys])


def seed_everything(sequence: np.random.SeedSequence) -> None:
    """Seed Python's, numpy's and torch's (CPU and CUDA) global generators from ``sequence``."""
    seed = int(sequence.generate_state(1)[0])
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)


@contextlib.contextmanager
def seeded_augmentation_workers(sequence: np.random.SeedSequence) -> Iterator[None]:
    """While nnU-Net's ``get_dataloaders`` runs: every ``NonDetMultiThreadedAugmenter`` it makes gets one seed per
    worker from ``sequence`` (nnU-Net passes ``seeds=None``, i.e. OS entropy)."""
    import nnunetv2.training.nnUNetTrainer.nnUNetTrainer as trainer_module

    original = trainer_module.NonDetMultiThreadedAugmenter

    def seeded(*args, **kwargs):
        if kwargs.get("seeds") is None:
            kwargs["seeds"] = [int(s) for s in sequence.spawn(1)[0].generate_state(kwargs["num_processes"])]
        return original(*args, **kwargs)

    trainer_module.NonDetMultiThreadedAugmenter = seeded
    try:
        yield
    finally:
        trainer_module.NonDetMultiThreadedAugmenter = original


def seeded_variant(base: type[nnUNetTrainer], seed: int, module: str = __name__) -> type[nnUNetTrainer]:
    """``base`` with its random streams seeded by ``seed``, named ``<base>_seed<seed>`` (see the module docstring).
    Its ``__init__`` is the base's (whose explicit signature nnU-Net records in every checkpoint).

    ``module`` is where the class will be an attribute (for pickle and for readers of ``__module__``)."""
    if seed < 0:
        raise ValueError(f"a seed is a non-negative integer, got {seed}")

    def _rank(self) -> int:
        return torch.distributed.get_rank() if self.is_ddp else 0

    def initialize(self):
        if not self.was_initialized:
            seed_everything(_stream(seed, str(self.fold)))
        super(variant, self).initialize()

    def get_dataloaders(self):
        sequence = _stream(seed, str(self.fold), _rank(self), self.current_epoch)
        seed_everything(sequence)
        self.print_to_log_file(f"Seeded repeat: seed {seed}; Python, numpy, torch and the data-augmentation workers "
                               f"seeded from (seed, fold {self.fold}, rank {_rank(self)}, epoch {self.current_epoch})")
        with seeded_augmentation_workers(sequence):
            return super(variant, self).get_dataloaders()

    name = seeded_name(base.__name__, seed)
    variant = type(name, (base,), {
        "initialize": initialize, "get_dataloaders": get_dataloaders,
        "__module__": module, "__qualname__": name, "repeat_seed": seed,  # nnU-Net's debug.json records it
        "__doc__": f"{base.__name__}, repeat with seed {seed} (seeded Python, numpy, torch and data-augmentation "
                   f"workers; everything else is {base.__name__}'s).",
    })
    for function in (initialize, get_dataloaders):
        function.__qualname__ = f"{name}.{function.__name__}"
    return variant


def seeded_trainer(name: str, find: Callable[[str], type] | None = None) -> type[nnUNetTrainer] | None:
    """The seeded repeat a name ``<Base>_seed<N>`` stands for, made on first use; None when ``name`` is not of that
    form or nnU-Net finds no trainer ``<Base>``.

    Args:
        name: the trainer name, e.g. ``ResUnetTrainer_50epochs_seed2``.
        find: how to find the base by name (default: nnU-Net's ``recursive_find_trainer_class_by_name``).
    """
    match = SEEDED_NAME.match(name)
    if match is None:
        return None
    if name not in _VARIANTS:
        if find is None:
            from nnunetv2.utilities.find_objects import recursive_find_trainer_class_by_name as find
        try:
            with contextlib.redirect_stdout(io.StringIO()):  # nnU-Net prints where it searches
                base = find(match.group("base"))
        except (RuntimeError, AssertionError):  # nnU-Net's "not found" and "not an nnUNetTrainer"
            return None
        _VARIANTS[name] = seeded_variant(base, int(match.group("seed")))
    return _VARIANTS[name]


def __getattr__(name: str):
    """``repeats.<Base>_seed<N>``: what pickle looks up for a seeded repeat made here."""
    variant = seeded_trainer(name)
    if variant is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    return variant
