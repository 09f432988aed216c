"""README says what works, and it works as written: every command of ours is in it, and its example of a user's
own trainer runs through nnU-Net's lookup as printed (while the ``*args`` form it warns about fails as it says)."""

from __future__ import annotations

import re
from importlib.metadata import distribution
from pathlib import Path

import pytest
import torch
from nnunetv2.utilities.find_objects import recursive_find_trainer_class_by_name

from nnunetv2_resunet.experiment_planning.synthetic_plans import synthetic_plans

README = (Path(__file__).resolve().parents[1] / "README.md").read_text(encoding="utf-8")
USER_TRAINER_MARKER = "# /my/trainers/my_trainers.py"


def our_commands() -> list[str]:
    return sorted(e.name for e in distribution("nnunetv2-resunet").entry_points if e.group == "console_scripts")


def user_trainer_example() -> str:
    blocks = re.findall(r"```python\n(.*?)```", README, flags=re.S)
    (block,) = [b for b in blocks if b.startswith(USER_TRAINER_MARKER)]
    return block


def test_readme_names_every_command():
    missing = [c for c in our_commands() if f"{c} " not in README]
    assert not missing, f"commands not shown in README: {missing}"
    assert {"nnUNetv2_resunet_convert_synapse", "nnUNetv2_resunet_convert_acdc",
            "nnUNetv2_resunet_convert_avt"} <= set(our_commands())


def construct(trainer_name: str, folder: Path, monkeypatch):
    monkeypatch.setenv("nnUNet_extTrainer", str(folder))
    monkeypatch.setenv("nnUNet_results", str(folder))
    plans, dataset_json = synthetic_plans((64, 64), 2, num_classes=3)
    plans["continue_training"] = False  # nnU-Net's run_training adds this key
    trainer_class = recursive_find_trainer_class_by_name(trainer_name)
    return trainer_class(plans, "2d", 0, dataset_json, torch.device("cpu"))


def test_users_own_trainer_example_works_as_written(tmp_path, monkeypatch):
    (tmp_path / "my_trainers.py").write_text(user_trainer_example())
    trainer = construct("ResUnetTrainer_lr3e3", tmp_path, monkeypatch)
    assert trainer.initial_lr == 3e-3
    # What nnU-Net stores in the checkpoint to rebuild the trainer.
    assert set(trainer.my_init_kwargs) == {"plans", "configuration", "fold", "dataset_json", "device"}


def test_the_signature_warning_is_true(tmp_path, monkeypatch):
    example = user_trainer_example()
    signature = re.search(r"def __init__\(self,.*?\):", example, flags=re.S).group(0)
    bad = example.replace(signature, "def __init__(self, *args, **kwargs):").replace(
        "super().__init__(plans, configuration, fold, dataset_json, device)", "super().__init__(*args, **kwargs)")
    (tmp_path / "my_trainers.py").write_text(bad.replace("ResUnetTrainer_lr3e3", "ResUnetTrainer_args"))
    with pytest.raises(KeyError, match="args"):
        construct("ResUnetTrainer_args", tmp_path, monkeypatch)
    assert "KeyError: 'args'" in README
