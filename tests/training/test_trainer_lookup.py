"""nnU-Net finds our trainers by name after a plain install: no copying, no exported variable."""

import os
import subprocess
import sys

from nnunetv2_resunet._ext_trainer import EXT_TRAINER_FOLDER, register_ext_trainer_folder
from nnunetv2_resunet.architectures.configs.ladder import LADDER
from nnunetv2_resunet.training import ALL_TRAINERS, LADDER_TRAINERS, ResUnetTrainer


def python_in_fresh_interpreter(code: str, **env_changes: str | None) -> str:
    env = {k: v for k, v in os.environ.items() if k != "nnUNet_extTrainer"}
    env.update({k: v for k, v in env_changes.items() if v is not None})
    return subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, check=True,
                          timeout=300).stdout


def test_interpreter_start_registers_our_folder():
    printed = python_in_fresh_interpreter("import os; print(os.environ['nnUNet_extTrainer'])")
    assert printed.strip() == EXT_TRAINER_FOLDER


def test_users_value_is_kept_and_ours_appended(tmp_path):
    printed = python_in_fresh_interpreter("import os; print(os.environ['nnUNet_extTrainer'])",
                                          nnUNet_extTrainer=f"{tmp_path}{os.pathsep}/elsewhere")
    assert printed.strip().split(os.pathsep) == [str(tmp_path), "/elsewhere", EXT_TRAINER_FOLDER]


def test_registration_is_idempotent():
    environ = {"nnUNet_extTrainer": "/mine"}
    register_ext_trainer_folder(environ)
    register_ext_trainer_folder(environ)
    assert environ["nnUNet_extTrainer"].split(os.pathsep) == ["/mine", EXT_TRAINER_FOLDER]


# Every trainer of the plugin (ladder, comparison models, recipe variant) with the config it names.
TRAINER_CONFIGS = {t.__name__: t.resunet_config.name for t in ALL_TRAINERS}


def test_nnunet_lookup_finds_every_trainer():
    """nnU-Net's own lookup, in a fresh interpreter with no nnUNet_extTrainer set by anyone: every trainer is
    re-exported where nnU-Net looks."""
    code = ("from nnunetv2.utilities.find_objects import recursive_find_trainer_class_by_name as find\n"
            f"for name in {list(TRAINER_CONFIGS)!r}:\n"
            "    cls = find(name)\n"
            "    print('FOUND', cls.__module__, cls.__name__, cls.resunet_config.name)")
    found = [line.split()[1:] for line in python_in_fresh_interpreter(code).splitlines() if line.startswith("FOUND")]
    assert [(name, config) for _, name, config in found] == list(TRAINER_CONFIGS.items())
    # The class nnU-Net found is ours (not a copy): defined in nnunetv2_resunet.training.
    assert all(module.startswith("nnunetv2_resunet.training.") for module, _, _ in found)


def test_each_shell_names_its_config():
    assert ResUnetTrainer.resunet_config == LADDER["v1_0"]
    assert {name: t.resunet_config for name, t in LADDER_TRAINERS.items()} == LADDER
