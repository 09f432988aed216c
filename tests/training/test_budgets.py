"""Budget variants: every trainer of ours in nnU-Net's training lengths, named as nnU-Net names its own, made by one
mechanism, found by nnU-Net's lookup, and trained for exactly their budget (schedule included)."""

import copy
import inspect
import re
import shutil

import pytest
import torch
from nnunet_workspace import SYNTHETIC_ID, SYNTHETIC_NAME, result_of
from nnunetv2.training.nnUNetTrainer.nnUNetTrainer import nnUNetTrainer
from nnunetv2.training.nnUNetTrainer.variants.training_length import nnUNetTrainer_Xepochs

from nnunetv2_resunet.demo.cli import TRAINERS as DEMO_RUNS
from nnunetv2_resunet.experiment_planning.synthetic_plans import synthetic_plans
from nnunetv2_resunet.ext_trainers import nnunetv2_resunet_trainers as exported
from nnunetv2_resunet.training import (
    ALL_TRAINERS,
    BUDGET_TRAINERS,
    DEMO_BUDGET,
    DEMO_TRAINERS,
    EPOCH_BUDGETS,
    budget_suffix,
)


def nnunet_budgets() -> dict[int, str]:
    """nnU-Net's own budget variants of its default trainer: epochs -> suffix."""
    found = {}
    for name, cls in vars(nnUNetTrainer_Xepochs).items():
        match = re.fullmatch(r"nnUNetTrainer(_(\d+)epochs?)", name)
        if match and isinstance(cls, type):
            found[int(match.group(2))] = match.group(1)
    return found


def test_budgets_are_nnunets():
    budgets = nnunet_budgets()
    assert tuple(sorted(budgets)) == EPOCH_BUDGETS
    assert {e: budget_suffix(e) for e in EPOCH_BUDGETS} == budgets  # "_1epoch", "_5epochs", ...


def test_every_trainer_has_every_budget_exported_for_nnunet():
    expected = {t.__name__ + budget_suffix(e): (t, e) for t in ALL_TRAINERS for e in EPOCH_BUDGETS}
    assert set(BUDGET_TRAINERS) == set(expected)
    for name, (base, epochs) in expected.items():
        variant = getattr(exported, name)
        assert variant is BUDGET_TRAINERS[name] and variant.__name__ == name
        assert variant.__bases__ == (base,) and variant.budget_epochs == epochs
        # nnU-Net records __init__'s arguments by name: the signature must be nnU-Net's own, explicitly.
        assert inspect.signature(variant.__init__) == inspect.signature(nnUNetTrainer.__init__)


@pytest.mark.parametrize("name", ["ResUnetTrainer_5epochs", "ResUnetTrainer_ThesisRecipe_1epoch",
                                  "ResidualUNetTrainer_SpatialAttention_250epochs"])
def test_budget_sets_epochs_before_the_schedule_and_keeps_the_rest(name, tmp_path, monkeypatch):
    monkeypatch.setenv("nnUNet_results", str(tmp_path))  # the trainer writes its log file on construction
    plans, dataset_json = synthetic_plans([64, 64], 2, num_classes=3)
    plans["continue_training"] = False  # nnU-Net's run_training adds this key; the trainer pops it
    variant = BUDGET_TRAINERS[name]
    trainer = variant(copy.deepcopy(plans), "2d", 0, dataset_json, torch.device("cpu"))
    assert trainer.num_epochs == variant.budget_epochs
    assert set(trainer.my_init_kwargs) == {"plans", "configuration", "fold", "dataset_json", "device"}
    base = variant.__bases__[0](copy.deepcopy(plans), "2d", 0, dataset_json, torch.device("cpu"))
    # What the base's __init__ sets, except the budget, is the base's (e.g. the thesis recipe's weight decay).
    for attribute in ("initial_lr", "weight_decay", "oversample_foreground_percent", "num_iterations_per_epoch",
                      "num_val_iterations_per_epoch", "enable_deep_supervision", "save_every"):
        assert getattr(trainer, attribute) == getattr(base, attribute), attribute
    trainer.network = torch.nn.Conv2d(1, 3, 1)
    _, scheduler = trainer.build_optimizer()
    assert scheduler.max_steps == variant.budget_epochs  # PolyLR decays over the budget, not over 1000 epochs


def test_the_demo_trainers_are_the_demo_budget(tmp_path, monkeypatch):
    """What nnUNetv2_resunet_demo trains: nnU-Net's 2d default, ResUnet v1.0 and EMCAD, each at DEMO_BUDGET through
    its real __init__, exported for nnU-Net's lookup, validated without test-time mirroring."""
    monkeypatch.setenv("nnUNet_results", str(tmp_path))
    plans, dataset_json = synthetic_plans([64, 64], 2, num_classes=3)
    plans["continue_training"] = False
    epochs, iterations, validation = DEMO_BUDGET
    assert set(DEMO_RUNS) == set(DEMO_TRAINERS) == {"nnUNetTrainer_demo", "ResUnetTrainer_demo", "EMCADTrainer_demo"}
    for name, variant in DEMO_TRAINERS.items():
        assert getattr(exported, name) is variant
        trainer = variant(copy.deepcopy(plans), "2d", 0, dataset_json, torch.device("cpu"))
        assert variant.__bases__[0].__name__ + "_demo" == name
        assert (trainer.num_epochs, trainer.num_iterations_per_epoch, trainer.num_val_iterations_per_epoch) == \
               (epochs, iterations, validation)
        assert set(trainer.my_init_kwargs) == {"plans", "configuration", "fold", "dataset_json", "device"}
        # Trained with nnU-Net's mirroring augmentation, validated without test-time mirroring.
        trainer.configure_rotation_dummyDA_mirroring_and_inital_patch_size()
        assert trainer.inference_allowed_mirroring_axes is None and trainer.num_epochs == epochs
        base = variant.__bases__[0](copy.deepcopy(plans), "2d", 0, dataset_json, torch.device("cpu"))
        base.configure_rotation_dummyDA_mirroring_and_inital_patch_size()
        assert base.inference_allowed_mirroring_axes == (0, 1)


def test_nnunet_predict_resolves_a_budget_variant_from_its_checkpoint(nnunet_workspace, trained_models, tmp_path):
    """A fold whose checkpoint names ``ResUnetTrainer_5epochs``: nnUNetv2_predict must find that class by the name
    stored in the checkpoint and build its network. The weights come from the session's short run of ResUnet v1.0
    (``trained_models``; training 5 real epochs of 250 iterations is too long for a test); only the stored trainer
    name and folder are changed."""
    trained = result_of(trained_models, "ResUnetTrainer")
    plans = "nnUNetPlans"
    variant_dir = nnunet_workspace.output_folder("ResUnetTrainer_5epochs", 0, plans)
    shutil.copytree(trained.parent, variant_dir.parent)
    checkpoint_file = variant_dir / "checkpoint_final.pth"
    checkpoint = torch.load(checkpoint_file, map_location="cpu", weights_only=False)
    checkpoint["trainer_name"] = "ResUnetTrainer_5epochs"
    torch.save(checkpoint, checkpoint_file)
    images = nnunet_workspace.raw / SYNTHETIC_NAME / "imagesTs"
    nnunet_workspace.run("nnUNetv2_predict", "-i", images, "-o", tmp_path, "-d", SYNTHETIC_ID, "-c", "2d",
                         "-tr", "ResUnetTrainer_5epochs", "-f", "0", "-device", "cpu", "--disable_progress_bar",
                         "--disable_tta", "-npp", "0", "-nps", "0")  # sequential: no worker processes for 2 images
    # nnU-Net builds the network of the class the checkpoint names and loads the weights strictly: a wrong class
    # (another network) would fail here.
    assert sorted(p.name for p in tmp_path.glob("*.nii.gz")) == ["test_000.nii.gz", "test_001.nii.gz"]
