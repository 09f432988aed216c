"""Seeded repeats (training/repeats.py): made on first use for any trainer nnU-Net finds, one class per name, and
what a seed fixes: the generators before initialisation, and one seed per data-augmentation worker."""

import contextlib
import inspect
import io
import pickle
import random

import nnunetv2.training.nnUNetTrainer.nnUNetTrainer as trainer_module
import numpy as np
import pytest
import torch
from nnunetv2.training.nnUNetTrainer.nnUNetTrainer import nnUNetTrainer

from nnunetv2_resunet.ext_trainers import nnunetv2_resunet_trainers as exported
from nnunetv2_resunet.training import ResUnetTrainer_v0_1_5epochs, seeded_trainer, seeded_variant


def test_any_trainer_nnunet_finds_has_seeded_repeats():
    from nnunetv2.utilities.find_objects import recursive_find_trainer_class_by_name

    with contextlib.redirect_stdout(io.StringIO()):
        ours = recursive_find_trainer_class_by_name("ResUnetTrainer_v0_1_5epochs_seed2")
        nnunets = recursive_find_trainer_class_by_name("nnUNetTrainer_5epochs_seed0")
    assert ours.__mro__[1] is ResUnetTrainer_v0_1_5epochs and ours.repeat_seed == 2
    assert nnunets.__mro__[1].__name__ == "nnUNetTrainer_5epochs" and nnunets.repeat_seed == 0
    assert seeded_trainer("ResUnetTrainer_v0_1_5epochs_seed2") is ours is exported.ResUnetTrainer_v0_1_5epochs_seed2
    assert pickle.loads(pickle.dumps(ours)) is ours
    # nnU-Net records the constructor's arguments by name: the explicit signature is kept.
    assert list(inspect.signature(ours.__init__).parameters) == ["self", "plans", "configuration", "fold",
                                                                 "dataset_json", "device"]
    assert seeded_trainer("ResUnetTrainer") is None and seeded_trainer("NoSuchTrainer_seed1") is None
    assert not hasattr(exported, "NoSuchTrainer_seed1")


class _Probe(nnUNetTrainer):
    """What a trainer's initialize and get_dataloaders draw, without plans or data."""

    def initialize(self):
        self.drawn = (random.random(), float(np.random.rand()), float(torch.rand(1)))
        self.was_initialized = True

    def get_dataloaders(self):
        make = trainer_module.NonDetMultiThreadedAugmenter  # as nnU-Net calls it: keywords, seeds=None
        train = make(data_loader=None, transform=None, num_processes=3, num_cached=1, seeds=None, wait_time=0.01)
        val = make(data_loader=None, transform=None, num_processes=2, num_cached=1, seeds=None, wait_time=0.01)
        return train, val


def _trainer(seed: int, fold: int = 0, epoch: int = 0) -> nnUNetTrainer:
    trainer = object.__new__(seeded_variant(_Probe, seed))
    trainer.fold, trainer.current_epoch, trainer.was_initialized, trainer.is_ddp = fold, epoch, False, False
    trainer.print_to_log_file = lambda *args, **kwargs: None
    return trainer


def test_a_seed_fixes_initialisation_and_every_augmentation_worker():
    first, again, other, other_fold = _trainer(0), _trainer(0), _trainer(1), _trainer(0, fold=1)
    for trainer in (first, again, other, other_fold):
        trainer.initialize()
    assert first.drawn == again.drawn and first.drawn != other.drawn and first.drawn != other_fold.drawn
    original = trainer_module.NonDetMultiThreadedAugmenter
    train, val = first.get_dataloaders()
    assert trainer_module.NonDetMultiThreadedAugmenter is original  # nnU-Net's class is back afterwards
    assert len(set(train.seeds)) == 3 and len(val.seeds) == 2 and not set(train.seeds) & set(val.seeds)
    assert again.get_dataloaders()[0].seeds == train.seeds
    assert other.get_dataloaders()[0].seeds != train.seeds
    assert _trainer(0, epoch=50).get_dataloaders()[0].seeds != train.seeds  # a resumed run draws anew


def test_a_seed_is_not_negative():
    with pytest.raises(ValueError, match="non-negative"):
        seeded_variant(_Probe, -1)
