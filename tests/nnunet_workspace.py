"""A real nnU-Net workspace (raw, preprocessed, results) on a small synthetic dataset, for tests in every folder.

Integration tests drive nnU-Net's own CLI (``nnUNetv2_plan_and_preprocess``, ``nnUNetv2_train``,
``nnUNetv2_predict``) in subprocesses, on CPU, with short-run subclasses of the trainers under test that live in a
folder named in ``nnUNet_extTrainer`` (exactly as a user's own trainer would). ``conftest.py`` makes the planned
workspace a session fixture; pytest's ``pythonpath`` setting makes this module importable from every test folder.
"""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
import threading
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from functools import partial
from importlib.metadata import entry_points
from pathlib import Path
from typing import TypeVar

import numpy as np
import SimpleITK as sitk

# Real data committed with the tests (each folder has a README with its provenance).
TEST_DATA = Path(__file__).parent / "data"

SYNTHETIC_ID = 901
SYNTHETIC_NAME = f"Dataset{SYNTHETIC_ID:03d}_Synthetic"
SYNTHETIC_LABELS = {"background": 0, "disk": 1, "square": 2}
# 4 slices of 48 x 40: the 2d patch is not a multiple of ResUnet's stride, so padding is exercised end to end.
SYNTHETIC_SHAPE = (4, 48, 40)
SYNTHETIC_CASES = 8

T = TypeVar("T")
# Longest a single nnU-Net command of the tests may take (a short training with its validation, a prediction, a
# planning run); past it the command is killed and the test fails naming it, instead of hanging CI.
COMMAND_TIMEOUT_S = 600


def write_synthetic_case(images_dir: Path, labels_dir: Path | None, case: str, rng: np.random.Generator) -> None:
    """One volume with a bright disk (label 1) and a dark square (label 2) on noise, spacing (2.5, 1, 1)."""
    z, h, w = SYNTHETIC_SHAPE
    yy, xx = np.mgrid[:h, :w]
    label = np.zeros(SYNTHETIC_SHAPE, dtype=np.uint8)
    for s in range(z):
        cy, cx, r = rng.integers(12, h - 12), rng.integers(10, w - 10), rng.integers(5, 9)
        label[s][(yy - cy) ** 2 + (xx - cx) ** 2 <= r ** 2] = 1
        sy, sx = rng.integers(0, h - 8), rng.integers(0, w - 8)
        square = label[s, sy:sy + 8, sx:sx + 8]
        square[square == 0] = 2
    image = rng.normal(0, 0.3, SYNTHETIC_SHAPE) + 2.0 * (label == 1) - 1.5 * (label == 2)
    for array, folder, name in ((image.astype(np.float32), images_dir, f"{case}_0000.nii.gz"),
                                (label, labels_dir, f"{case}.nii.gz")):
        if folder is None:
            continue
        itk = sitk.GetImageFromArray(array)
        itk.SetSpacing((1.0, 1.0, 2.5))
        sitk.WriteImage(itk, str(folder / name))


def write_synthetic_dataset(raw: Path) -> Path:
    """Write ``Dataset901_Synthetic`` (8 training cases, 2 test images) into an nnU-Net raw folder."""
    from nnunetv2.dataset_conversion.generate_dataset_json import generate_dataset_json

    base = raw / SYNTHETIC_NAME
    for sub in ("imagesTr", "labelsTr", "imagesTs"):
        (base / sub).mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(0)
    for i in range(SYNTHETIC_CASES):
        write_synthetic_case(base / "imagesTr", base / "labelsTr", f"syn_{i:03d}", rng)
    for i in range(2):
        write_synthetic_case(base / "imagesTs", None, f"test_{i:03d}", rng)
    generate_dataset_json(str(base), {0: "MRI"}, SYNTHETIC_LABELS, SYNTHETIC_CASES, ".nii.gz",
                          dataset_name=SYNTHETIC_NAME)
    return base


SHORT_TRAINER_TEMPLATE = '''\
"""Short-run subclass of {base}, written by the tests: a user's own trainer in an nnUNet_extTrainer folder."""
import torch

from {module} import {base}


class {name}({base}):
    def __init__(self, plans: dict, configuration: str, fold: int, dataset_json: dict,
                 device: torch.device = torch.device("cuda")):
        super().__init__(plans, configuration, fold, dataset_json, device)
        self.num_epochs = {epochs}
        self.num_iterations_per_epoch = 2
        self.num_val_iterations_per_epoch = 1{extra_init}

    def configure_rotation_dummyDA_mirroring_and_inital_patch_size(self):
        # Train with nnU-Net's augmentation, but validate and predict without mirroring (4x fewer passes on CPU).
        configured = super().configure_rotation_dummyDA_mirroring_and_inital_patch_size()
        self.inference_allowed_mirroring_axes = None
        return configured
'''

# For networks of 100 M parameters (TransUNet): a two-iteration check needs the final checkpoint only, and not
# AdamW's two moment tensors per parameter (2x the weights; the learning rate and settings in its param_groups stay).
LIGHT_CHECKPOINTS = '''
    def save_checkpoint(self, filename: str) -> None:
        if not filename.endswith("checkpoint_final.pth"):
            return  # checkpoint_best.pth after the first (and only) epoch would be a second copy
        from collections import defaultdict

        moments, self.optimizer.state = self.optimizer.state, defaultdict(dict)
        try:
            super().save_checkpoint(filename)
        finally:
            self.optimizer.state = moments
'''


class NnUNetWorkspace:
    """nnU-Net's three folders plus an ext-trainer folder, and a way to run nnU-Net's CLI against them."""

    def __init__(self, root: Path, dataset_id: int = SYNTHETIC_ID, dataset_name: str = SYNTHETIC_NAME):
        self.root, self.dataset_id, self.dataset_name = root, dataset_id, dataset_name
        self.raw, self.preprocessed, self.results = root / "raw", root / "preprocessed", root / "results"
        self.ext_trainers = root / "ext_trainers"
        for folder in (self.raw, self.preprocessed, self.results, self.ext_trainers):
            folder.mkdir(parents=True, exist_ok=True)

    @property
    def env(self) -> dict[str, str]:
        env = dict(os.environ)
        env.update(nnUNet_raw=str(self.raw), nnUNet_preprocessed=str(self.preprocessed),
                   nnUNet_results=str(self.results), nnUNet_compile="f", nnUNet_def_n_proc="1",
                   # Our package appends its own folder to this at interpreter start (the .pth hook).
                   nnUNet_extTrainer=str(self.ext_trainers), PYTHONUNBUFFERED="1",
                   # The console scripts of the interpreter running the tests (a venv need not be activated).
                   PATH=os.pathsep.join((str(Path(sys.executable).parent), os.environ.get("PATH", ""))))
        return env

    def run(self, *args: str, check: bool = True, env: dict[str, str] | None = None) -> subprocess.CompletedProcess:
        """Run a console command; on failure the assertion message carries its output."""
        command = [*console_script(str(args[0])), *map(str, args[1:])]
        try:
            result = subprocess.run(command, env=env or self.env, capture_output=True, text=True,
                                    timeout=COMMAND_TIMEOUT_S)
        except subprocess.TimeoutExpired as error:
            raise AssertionError(f"{' '.join(map(str, args))} did not end within {COMMAND_TIMEOUT_S} s\n"
                                 f"--- stdout (tail) ---\n{(error.stdout or b'')[-6000:]!r}\n"
                                 f"--- stderr (tail) ---\n{(error.stderr or b'')[-6000:]!r}") from error
        if check and result.returncode != 0:
            raise AssertionError(f"{' '.join(map(str, args))} exited {result.returncode}\n"
                                 f"--- stdout (tail) ---\n{result.stdout[-6000:]}\n"
                                 f"--- stderr (tail) ---\n{result.stderr[-6000:]}")
        return result

    def add_short_trainer(self, base: str, module: str | None = None, epochs: int = 1,
                          light_checkpoints: bool = False, batch_size: int | None = None) -> str:
        """Write ``{base}_short`` (``epochs`` epochs of 2 iterations) into the ext-trainer folder; return its name.
        ``light_checkpoints``: only checkpoint_final.pth, without the optimizer's moments (``LIGHT_CHECKPOINTS``).
        ``batch_size``: train on batches of this size instead of the plans' (for plans of real data, whose batches
        cost seconds an iteration on CPU)."""
        if module is None:
            module = ("nnunetv2.training.nnUNetTrainer.nnUNetTrainer" if base == "nnUNetTrainer"
                      else "nnunetv2_resunet.training")
        name = f"{base}_short"
        extra_init = "" if batch_size is None else \
            f'\n        self.configuration_manager.configuration["batch_size"] = {batch_size}  # the plans\' is larger'
        source = SHORT_TRAINER_TEMPLATE.format(base=base, module=module, name=name, epochs=epochs,
                                               extra_init=extra_init)
        if light_checkpoints:
            source += LIGHT_CHECKPOINTS
        # Written aside, then renamed: nnU-Net's trainer lookup imports every module of the folder, and a run started
        # by run_concurrently may be importing it now.
        target = self.ext_trainers / f"short_{base}.py"
        aside = target.with_name(f".{target.name}.{os.getpid()}.{threading.get_ident()}.tmp")
        aside.write_text(textwrap.dedent(source))
        os.replace(aside, target)
        return name

    def output_folder(self, trainer: str, fold: int = 0, plans: str = "nnUNetPlans") -> Path:
        return self.results / self.dataset_name / f"{trainer}__{plans}__2d" / f"fold_{fold}"

    def train(self, base: str, fold: int = 0, extra_args: tuple[str, ...] = (), module: str | None = None,
              epochs: int = 1, light_checkpoints: bool = False) -> Path:
        """Train a short-run subclass of ``base`` with the real ``nnUNetv2_train`` on CPU; return its fold folder."""
        name = self.add_short_trainer(base, module, epochs, light_checkpoints)
        self.run("nnUNetv2_train", self.dataset_id, "2d", fold, "-tr", name, "-device", "cpu", *extra_args,
                 env={**self.env, "nnUNet_n_proc_DA": "0"})  # augment in-process: 2 iterations need no workers
        return self.output_folder(name, fold)

    def concurrently(self, jobs: dict[str, Callable[[], T]]) -> dict[str, T | BaseException]:
        """:func:`run_concurrently` for jobs that train in this workspace: the first runs alone while the dataset has
        no ``splits_final.json``, so that nnU-Net writes it once, before the others read it."""
        names = list(jobs)
        results: dict[str, T | BaseException] = {}
        if names and not (self.preprocessed / self.dataset_name / "splits_final.json").is_file():
            results.update(run_concurrently({names[0]: jobs[names[0]]}, workers=1))
        results.update(run_concurrently({name: jobs[name] for name in names if name not in results}))
        return {name: results[name] for name in names}

    def train_concurrently(self, bases: list[str]) -> dict[str, Path | BaseException]:
        """:meth:`train` each of ``bases`` on fold 0, two at a time (:meth:`concurrently`)."""
        return self.concurrently({base: partial(self.train, base) for base in bases})


def run_concurrently(jobs: dict[str, Callable[[], T]], workers: int = 2) -> dict[str, T | BaseException]:
    """Run independent jobs (each a chain of nnU-Net commands in subprocesses) ``workers`` at a time; return each
    job's result, or the exception it raised, by name.

    Most of a short CPU run of nnU-Net is single-threaded: the interpreter's start and imports, nnU-Net's trainer
    lookup, its spawned export and evaluation workers. Two runs at once on two cores take little longer than one.
    Jobs must not write the same files: nnU-Net writes a dataset's ``splits_final.json`` on its first training run,
    so train once in the workspace before training concurrently in it (:meth:`NnUNetWorkspace.concurrently`).
    """
    def guarded(job: Callable[[], T]) -> T | BaseException:
        try:
            return job()
        except BaseException as error:  # reported by the test that asks for this job's result
            return error

    with ThreadPoolExecutor(max_workers=workers) as pool:
        futures = {name: pool.submit(guarded, job) for name, job in jobs.items()}
        return {name: future.result() for name, future in futures.items()}


def result_of(results: dict[str, T | BaseException], name: str) -> T:
    """``name``'s result from :func:`run_concurrently`, re-raising the failure of its job in the test that asks."""
    result = results[name]
    if isinstance(result, BaseException):
        raise result
    return result


def console_script(name: str) -> list[str]:
    """How to run an installed console script with the interpreter running the tests.

    The script beside ``sys.executable`` when there is one (a plain install, as in CI); otherwise (a venv that
    inherits nnunetv2 from the system site-packages has no nnUNetv2_* scripts of its own) the same entry point,
    called the way the generated script calls it.
    """
    script = Path(sys.executable).parent / name
    if script.is_file():
        return [str(script)]
    (entry_point,) = entry_points(group="console_scripts", name=name)
    module, function = entry_point.value.split(":")
    return [sys.executable, "-c", f"import sys; sys.argv[0] = {name!r}; from {module} import {function}; "
                                  f"sys.exit({function}())"]


def processes_running(argument: str) -> list[int]:
    """The live processes (not zombies) with ``argument`` among their command-line arguments, from /proc (Linux)."""
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            arguments = (entry / "cmdline").read_bytes().split(b"\0")
        except OSError:
            continue
        if argument.encode() in arguments and process_alive(int(entry.name)):
            found.append(int(entry.name))
    return found


def process_alive(pid: int) -> bool:
    """Whether process ``pid`` exists and is not a zombie (killed, not yet reaped), from /proc (Linux)."""
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except (FileNotFoundError, ProcessLookupError):
        return False
    return state != "Z"
