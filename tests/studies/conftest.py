"""A workspace for study tests: the synthetic dataset with a labelled test set, short-run trainers, and one study
run end to end by the real ``nnUNetv2_resunet_study run`` on CPU (shared by the tests that build on it)."""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest
from nnunet_workspace import (
    SHORT_TRAINER_TEMPLATE,
    SYNTHETIC_NAME,
    NnUNetWorkspace,
    write_synthetic_case,
    write_synthetic_dataset,
)

# Trainers of the tiny studies: 1 epoch of 2 iterations (nnunet_workspace's short-run subclasses).
DEFAULT_SHORT = "nnUNetTrainer_short"
RESUNET_SHORT = "ResUnetTrainer_v0_1_short"
V1_SHORT = "ResUnetTrainer_short"  # ResUnet v1.0, in two seeded repeats in the local study
ABLATION_SHORT = "EMCADTrainer_NoTransformerBlocks_short"
# The local study beside nnU-Net's default on its plans: nnU-Net on ResEnc M plans, ResUnet v1.0 twice (seeded
# repeats), EMCAD without its transformer blocks.
LOCAL_MODELS = f"""
[[models]]
configuration = "2d"
trainers = ["{DEFAULT_SHORT}"]
planner = "resenc_m"

[[models]]
configuration = "2d"
trainers = ["{V1_SHORT}"]
repeats = 2

[[models]]
configuration = "2d"
trainers = ["{ABLATION_SHORT}"]
"""
# What every study command of the tests adds: CPU, and no worker processes where nnU-Net can do without them
# (prediction in nnU-Net's sequential mode, the report without a pool; preprocessing with one).
CLI_EXTRA = {command: ("-device", "cpu", "-np", "0") for command in ("run", "plan", "submit")}
# 3 epochs of 2 iterations with a checkpoint after every epoch, to be killed mid-training.
RESUMABLE = "ResUnetTrainer_v0_1_resumable"
# The same, for the SLURM study beside the local one (its fold 0 is the local kill-and-resume test's).
REQUEUED = "ResUnetTrainer_v0_1_requeued"


def write_study(folder: Path, name: str, trainers: list[str], folds: list[int] = (0,), dataset_lines: str = "",
                extra: str = "", model_lines: str = "") -> Path:
    path = folder / f"{name}.toml"
    path.write_text(f'name = "{name}"\nfolds = {list(folds)}\n{extra}\n[[datasets]]\nid = 901\n{dataset_lines}\n'
                    f'[[models]]\nconfiguration = "2d"\ntrainers = {trainers!r}\n'.replace("'", '"') + model_lines)
    return path


@dataclass
class StudyWorkspace:
    nnunet: NnUNetWorkspace
    studies: Path  # where the tests write study files, and the current folder of the commands (results/ goes here)

    @property
    def env(self) -> dict[str, str]:
        # One augmentation worker: 0 would break nnU-Net's planner (it sets torch's threads from it).
        return {**self.nnunet.env, "nnUNet_n_proc_DA": "1"}

    def study(self, command: str, study: Path, *args: str, check: bool = True, env: dict | None = None,
              timeout: float = 900):
        import subprocess

        from nnunet_workspace import console_script

        result = subprocess.run([*console_script("nnUNetv2_resunet_study"), command, str(study),
                                 *CLI_EXTRA.get(command, ()), *args],
                                env=env or self.env, cwd=self.studies, capture_output=True, text=True,
                                timeout=timeout)  # a whole tiny study: preprocess, train, predict, report
        if check and result.returncode != 0:
            raise AssertionError(f"study {command} exited {result.returncode}\n--- stdout ---\n{result.stdout[-6000:]}"
                                 f"\n--- stderr ---\n{result.stderr[-6000:]}")
        return result

    def model_dir(self, trainer: str, plans: str = "nnUNetPlans") -> Path:
        return self.nnunet.results / SYNTHETIC_NAME / f"{trainer}__{plans}__2d"


@pytest.fixture(scope="session")
def study_workspace(tmp_path_factory) -> StudyWorkspace:
    root = tmp_path_factory.mktemp("studies")
    nnunet = NnUNetWorkspace(root / "nnunet")
    base = write_synthetic_dataset(nnunet.raw)
    # A labelled test set, so that the study's predictions are scored by the report.
    (base / "labelsTs").mkdir()
    for image in base.glob("imagesTs/*_0000.nii.gz"):
        image.unlink()
    rng = np.random.default_rng(7)
    for i in range(2):
        write_synthetic_case(base / "imagesTs", base / "labelsTs", f"test_{i:03d}", rng)
    nnunet.add_short_trainer("nnUNetTrainer")
    nnunet.add_short_trainer("ResUnetTrainer_v0_1")
    nnunet.add_short_trainer("ResUnetTrainer")
    nnunet.add_short_trainer("EMCADTrainer_NoTransformerBlocks")
    for name in (RESUMABLE, REQUEUED):
        resumable = SHORT_TRAINER_TEMPLATE.format(base="ResUnetTrainer_v0_1", module="nnunetv2_resunet.training",
                                                  name=name, epochs=3, extra_init="\n        self.save_every = 1")
        (nnunet.ext_trainers / f"{name}.py").write_text(resumable)
    studies = root / "work"
    studies.mkdir()
    return StudyWorkspace(nnunet, studies)


@pytest.fixture
def study_cli(study_workspace, monkeypatch, capsys):
    """``study_cli(COMMAND, STUDY, *ARGS, env=None, cwd=None, check=True)``: ``nnUNetv2_resunet_study`` in this
    process, for the commands whose subject is not a process of their own (status, plan, submit, a run with nothing
    to start): a subprocess would pay for importing torch and nnU-Net's trainers again (~10 s). In the workspace's
    environment (or ``env``) with our trainer folder, as the .pth hook adds it at interpreter start, from ``cwd``
    (default: the studies folder), with the extra arguments ``StudyWorkspace.study`` gives. Returns (exit code,
    stdout, stderr); ``check``: the exit code must be 0."""
    from nnunetv2_resunet._ext_trainer import register_ext_trainer_folder
    from nnunetv2_resunet.studies import cli
    from nnunetv2_resunet.studies.checks import trainer_class

    def call(command: str, study: Path, *args: str, env: dict | None = None, cwd: Path | None = None,
             check: bool = True) -> tuple[int, str, str]:
        for variable, value in (env or study_workspace.env).items():
            monkeypatch.setenv(variable, value)
        register_ext_trainer_folder()
        trainer_class.cache_clear()  # the short trainers are found through the workspace's nnUNet_extTrainer
        monkeypatch.chdir(cwd or study_workspace.studies)
        code = cli.main([command, str(study), *CLI_EXTRA.get(command, ()), *map(str, args)])  # the exit status
        out, err = capsys.readouterr()
        assert code == 0 or not check, \
            f"study {command} exited {code}\n--- stdout ---\n{out[-6000:]}\n--- stderr ---\n{err[-6000:]}"
        return code, out, err

    return call


@pytest.fixture(scope="session")
def local_study(study_workspace) -> Path:
    """A study of nnU-Net's default on its plans and on ResEnc M plans, ResUnet v1.0 in two seeded repeats and EMCAD
    without its transformer blocks (short runs), fold 0 with the test set, run to the end on CPU by
    ``nnUNetv2_resunet_study run -j 2``: preprocess (two plans), train, predict, report."""
    from nnunetv2.utilities.crossval_split import generate_crossval_split

    # nnU-Net's own 5-fold split, written beforehand as our converters do: two trainings at once (-j 2) of a dataset
    # without one would both write it.
    folder = study_workspace.nnunet.preprocessed / SYNTHETIC_NAME
    folder.mkdir(parents=True, exist_ok=True)
    cases = sorted(p.name[:-len(".nii.gz")] for p in (study_workspace.nnunet.raw / SYNTHETIC_NAME / "labelsTr").glob(
        "*.nii.gz"))
    (folder / "splits_final.json").write_text(json.dumps(generate_crossval_split(cases, seed=12345, n_splits=5)))
    study = write_study(study_workspace.studies, "tiny", [DEFAULT_SHORT], model_lines=LOCAL_MODELS)
    study_workspace.study("run", study, "-j", "2", timeout=1800)  # five models: 12 runs beside the report
    return study
