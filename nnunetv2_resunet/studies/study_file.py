"""The study file: one small TOML file naming datasets, models (configuration x trainers), folds, test sets and
SLURM resources. Read and checked here, at the edge: every problem is one :class:`StudyFileError` naming the file
and the key.

```toml
name = "acdc_1epoch"          # results go to results/acdc_1epoch/
epochs = 1                    # optional: every trainer at nnU-Net's budget variant <trainer>_1epoch
folds = [0]                   # default [0, 1, 2, 3, 4]
# repeats = 3                 # optional: every training 3 times, as seeded repeats <trainer>_seed0 .. _seed2

[[datasets]]
id = 802                      # $nnUNet_raw/Dataset802_*, converted beforehand
plans = "nnUNetPlans"         # default; with gpu_memory_target, the name nnU-Net's planner writes
# gpu_memory_target = 8       # optional: plan for this GPU memory (GB) into `plans`
# planner = "resunet"         # optional: nnUNetv2_resunet_plan instead of nnU-Net's planner (2d only)
# test_images = "imagesTs"    # default: imagesTs when the dataset has one; "" for none
# test_labels = "labelsTs"    # default: labelsTs beside it

[[models]]
configuration = "2d"
trainers = ["nnUNetTrainer", "ResUnetTrainer", "ResUnetTrainer_v0_1"]

[[models]]                    # nnU-Net's recommended ResEnc L preset beside them: its own plans, preprocessed once
configuration = "2d"
trainers = ["nnUNetTrainer"]
planner = "resenc_l"          # nnUNetPlannerResEncL -> nnUNetResEncUNetLPlans (plans, gpu_memory_target optional)

[[models]]                    # trainers that start from published encoder weights (docs/models.md)
configuration = "2d"
trainers = ["ResUnetTrainer_v0_2"]
weights = "weights/resnet34-b627a593.pth"   # the file as released; relative paths start at this file's folder

[slurm]                       # optional; command-line flags of `submit` override these
partition = "gpu"
time = "24:00:00"
```
"""

from __future__ import annotations

import re
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

if sys.version_info >= (3, 11):
    import tomllib
else:  # Python 3.10: the same parser, published as tomli
    import tomli as tomllib

DEFAULT_FOLDS: tuple[int, ...] = (0, 1, 2, 3, 4)
# The planners a study names: nnU-Net's -pl class (None: our nnUNetv2_resunet_plan, 2d only) and the plans it writes.
PLANNERS: dict[str, tuple[str | None, str]] = {
    "nnunet": ("ExperimentPlanner", "nnUNetPlans"),
    "resenc_m": ("nnUNetPlannerResEncM", "nnUNetResEncUNetMPlans"),
    "resenc_l": ("nnUNetPlannerResEncL", "nnUNetResEncUNetLPlans"),
    "resenc_xl": ("nnUNetPlannerResEncXL", "nnUNetResEncUNetXLPlans"),
    "resunet": (None, "nnUNetResUnetPlans"),
}
STAGES = ("preprocess", "train", "predict", "report")
NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]*")
BUDGET_SUFFIX = re.compile(r"_\d+epochs?$")
SEED_SUFFIX = re.compile(r"_seed\d+$")
SLURM_KEYS = {"partition": str, "time": (str, int), "gpus": int, "cpus": int, "mem_gb": (int, float), "account": str,
              "qos": str, "constraint": str, "setup": list, "array_parallelism": int, "additional": dict}
TOP_KEYS = {"name", "description", "epochs", "repeats", "folds", "datasets", "models", "slurm"}
DATASET_KEYS = {"id", "plans", "gpu_memory_target", "planner", "folds", "test_images", "test_labels"}
MODEL_KEYS = {"configuration", "trainers", "datasets", "weights", "planner", "plans", "gpu_memory_target", "repeats"}


class StudyFileError(ValueError):
    """A study file that cannot be read or does not describe a study; the message names the file and the key."""


@dataclass(frozen=True)
class PlansSpec:
    """How a plans file is made: the planner (a key of ``PLANNERS``), the plans identifier it writes, and an
    optional GPU memory target (GB)."""

    planner: str = "nnunet"
    plans: str = "nnUNetPlans"
    gpu_memory_target: float | None = None


@dataclass(frozen=True)
class DatasetSpec:
    """One dataset of the study: how it is planned (by default, for its models), which folds run, its test set."""

    id: int
    plans: str = "nnUNetPlans"
    gpu_memory_target: float | None = None
    planner: str = "nnunet"
    folds: tuple[int | str, ...] = DEFAULT_FOLDS
    test_images: str | None = "imagesTs"  # relative to $nnUNet_raw/DatasetXXX_Name, or absolute; None: no test set
    test_labels: str = "labelsTs"
    test_images_explicit: bool = False  # the file named it: a missing folder is an error, not "no test set"

    @property
    def plans_spec(self) -> PlansSpec:
        return PlansSpec(self.planner, self.plans, self.gpu_memory_target)


@dataclass(frozen=True)
class ModelSpec:
    """A trainer in a configuration, on each named dataset, with the dataset's plans (so that every trainer of a
    comparison sees the same patches and batches) unless the model names its own planner and plans (nnU-Net's
    ResEnc presets beside its default)."""

    configuration: str
    trainer: str
    datasets: tuple[int, ...] = ()  # empty: every dataset of the study
    weights: Path | None = None  # published encoder weights (original format) the trainer starts from
    plans_spec: PlansSpec | None = None  # None: the dataset's

    def plans_for(self, dataset: DatasetSpec) -> PlansSpec:
        return self.plans_spec or dataset.plans_spec


@dataclass(frozen=True)
class Study:
    name: str
    path: Path
    datasets: tuple[DatasetSpec, ...]
    models: tuple[ModelSpec, ...]
    description: str = ""
    epochs: int | None = None
    slurm: dict[str, Any] = field(default_factory=dict)  # general keys, plus one table per stage

    def models_for(self, dataset: DatasetSpec) -> list[ModelSpec]:
        return [m for m in self.models if not m.datasets or dataset.id in m.datasets]


def load_study(path: str | Path) -> Study:
    """Read and check a study file.

    Raises:
        StudyFileError: If the file is missing, is not TOML, or any key is unknown, missing or of the wrong type.
    """
    path = Path(path)
    if not path.is_file():
        raise StudyFileError(f"{path}: no such study file")
    try:
        data = tomllib.loads(path.read_text(encoding="utf-8"))
    except (tomllib.TOMLDecodeError, UnicodeDecodeError) as error:
        raise StudyFileError(f"{path}: not a valid TOML file: {error}") from None
    return parse_study(data, path)


def parse_study(data: dict[str, Any], path: Path) -> Study:
    check = _Checker(path)
    check.known(data, TOP_KEYS, "the top level")
    name = check.typed(data, "name", str, required=True)
    if not NAME.fullmatch(name):
        check.fail("name", f"{name!r} must be a folder name (letters, digits, '_', '-', '.')")
    epochs = check.typed(data, "epochs", int)
    if epochs is not None and epochs < 1:
        check.fail("epochs", f"must be a positive number of epochs, got {epochs}")
    repeats = _repeats(check, data, "")
    folds = check.folds(data.get("folds", list(DEFAULT_FOLDS)), "folds")
    datasets = tuple(_dataset(check, entry, f"datasets[{i}]", folds)
                     for i, entry in enumerate(check.tables(data, "datasets")))
    ids = [d.id for d in datasets]
    if len(set(ids)) != len(ids):
        check.fail("datasets", f"a dataset is listed twice: {ids}")
    models = []
    for i, entry in enumerate(check.tables(data, "models")):
        models += _models(check, entry, f"models[{i}]", epochs, set(ids), repeats)
    seen = set()
    for model in models:
        key = (model.configuration, model.trainer, model.datasets, model.plans_spec)
        if key in seen:
            check.fail("models", f"{model.trainer} {model.configuration} is listed twice")
        seen.add(key)
    for dataset in datasets:  # one plans identifier, one way of making it
        made: dict[str, PlansSpec] = {}
        for model in (m for m in models if not m.datasets or dataset.id in m.datasets):
            spec = model.plans_for(dataset)
            if made.setdefault(spec.plans, spec) != spec:
                check.fail("models", f"dataset {dataset.id}: plans {spec.plans} are made two ways ({made[spec.plans]} "
                                     f"and {spec}): give one of them another plans name")
    unused = [d.id for d in datasets if not any(not m.datasets or d.id in m.datasets for m in models)]
    if unused:
        check.fail("datasets", f"no model is trained on dataset(s) {unused}")
    slurm = _slurm(check, data.get("slurm", {}))
    return Study(name, path, datasets, tuple(models), check.typed(data, "description", str) or "", epochs, slurm)


def _dataset(check: _Checker, entry: dict, where: str, folds: tuple) -> DatasetSpec:
    check.known(entry, DATASET_KEYS, where)
    dataset_id = check.typed(entry, "id", int, required=True, where=where)
    if not 0 < dataset_id < 1000:
        check.fail(f"{where}.id", f"nnU-Net dataset ids have three digits, got {dataset_id}")
    spec = _plans_spec(check, entry, where) or PlansSpec()
    test_images = check.typed(entry, "test_images", str, where=where)
    return DatasetSpec(
        id=dataset_id, plans=spec.plans, gpu_memory_target=spec.gpu_memory_target, planner=spec.planner,
        folds=check.folds(entry["folds"], f"{where}.folds") if "folds" in entry else folds,
        test_images=(test_images or None) if test_images is not None else "imagesTs",
        test_labels=check.typed(entry, "test_labels", str, where=where) or "labelsTs",
        test_images_explicit=bool(test_images))


def _plans_spec(check: _Checker, entry: dict, where: str) -> PlansSpec | None:
    """The ``planner``, ``plans`` and ``gpu_memory_target`` of a table, or None when it names none of them."""
    planner = check.typed(entry, "planner", str, where=where)
    plans = check.typed(entry, "plans", str, where=where)
    target = check.typed(entry, "gpu_memory_target", (int, float), where=where)
    if planner is None and plans is None and target is None:
        return None
    planner = planner or "nnunet"
    if planner not in PLANNERS:
        check.fail(f"{where}.planner", f"must be one of {list(PLANNERS)}, got {planner!r}")
    if target is not None and target <= 0:
        check.fail(f"{where}.gpu_memory_target", f"must be positive (GB), got {target}")
    default_plans = PLANNERS[planner][1]
    plans = plans or default_plans
    if target is not None and planner != "resunet" and plans == default_plans:
        check.fail(f"{where}.plans", f"with gpu_memory_target, name the plans (e.g. \"{default_plans}_4GB\"): "
                                     f"nnU-Net's {default_plans} would be overwritten")
    return PlansSpec(planner, plans, target)


def _repeats(check: _Checker, table: dict, where: str) -> int | None:
    repeats = check.typed(table, "repeats", int, where=where)
    if repeats is not None and repeats < 1:
        check.fail(f"{where}.repeats" if where else "repeats", f"must be a positive number of trainings, got {repeats}")
    return repeats


def _models(check: _Checker, entry: dict, where: str, epochs: int | None, dataset_ids: set[int],
            study_repeats: int | None = None) -> list[ModelSpec]:
    check.known(entry, MODEL_KEYS, where)
    configuration = check.typed(entry, "configuration", str, required=True, where=where)
    trainers = check.typed(entry, "trainers", list, required=True, where=where)
    if not trainers or not all(isinstance(t, str) and t for t in trainers):
        check.fail(f"{where}.trainers", f"must be a non-empty list of trainer names, got {trainers!r}")
    datasets = tuple(check.typed(entry, "datasets", list, where=where) or ())
    weights = check.typed(entry, "weights", str, where=where)
    if weights is not None:
        if not weights:
            check.fail(f"{where}.weights", "must name a file of published weights")
        weights = check.path.parent / weights  # an absolute path stays as it is
    unknown = sorted(set(datasets) - dataset_ids)
    if unknown:
        check.fail(f"{where}.datasets", f"ids {unknown} are not among the study's datasets {sorted(dataset_ids)}")
    repeats = _repeats(check, entry, where) or study_repeats
    plans_spec = _plans_spec(check, entry, where)
    if plans_spec is not None and plans_spec.planner == "resunet" and configuration != "2d":
        check.fail(f"{where}.planner", f"resunet plans the 2d configuration only, not {configuration}")
    models = []
    for trainer in trainers:
        if epochs is not None:
            if BUDGET_SUFFIX.search(trainer):
                check.fail(f"{where}.trainers", f"{trainer} already names a budget, and the study sets epochs = "
                                                f"{epochs}: remove one of them")
            trainer += "_1epoch" if epochs == 1 else f"_{epochs}epochs"  # nnU-Net's spelling (training/budgets.py)
        if repeats is None:
            models.append(ModelSpec(configuration, trainer, datasets, weights, plans_spec))
            continue
        if SEED_SUFFIX.search(trainer):
            check.fail(f"{where}.trainers", f"{trainer} already names a seeded repeat, and repeats = {repeats}: "
                                            f"remove one of them")
        # The seeded repeats of training/repeats.py (seeded_name), one per seed 0 .. repeats - 1.
        models += [ModelSpec(configuration, f"{trainer}_seed{seed}", datasets, weights, plans_spec)
                   for seed in range(repeats)]
    return models


def _slurm(check: _Checker, table: Any) -> dict[str, Any]:
    if not isinstance(table, dict):
        check.fail("slurm", "must be a table")
    settings = {}
    for key, value in table.items():
        if key in STAGES:
            if not isinstance(value, dict):
                check.fail(f"slurm.{key}", "must be a table of settings for that stage")
            check.known(value, set(SLURM_KEYS), f"slurm.{key}")
            settings[key] = {k: check.typed(value, k, SLURM_KEYS[k], where=f"slurm.{key}") for k in value}
        elif key in SLURM_KEYS:
            settings[key] = check.typed(table, key, SLURM_KEYS[key], where="slurm")
        else:
            check.fail(f"slurm.{key}", f"unknown key; known: {sorted(SLURM_KEYS)} and the stage tables "
                                       f"{list(STAGES)}")
    return settings


class _Checker:
    """Type and key checks whose errors name the file and the key."""

    def __init__(self, path: Path):
        self.path = path

    def fail(self, key: str, problem: str):
        raise StudyFileError(f"{self.path}: {key}: {problem}")

    def known(self, table: dict, keys: set[str], where: str) -> None:
        unknown = sorted(set(table) - keys)
        if unknown:
            self.fail(where, f"unknown key(s) {unknown}; known: {sorted(keys)}")

    def typed(self, table: dict, key: str, kind, required: bool = False, where: str = ""):
        name = f"{where}.{key}" if where else key
        if key not in table:
            if required:
                self.fail(name, "is required")
            return None
        value = table[key]
        kinds = kind if isinstance(kind, tuple) else (kind,)
        if isinstance(value, bool) or not isinstance(value, kinds):
            self.fail(name, f"must be {' or '.join(k.__name__ for k in kinds)}, got {value!r}")
        return value

    def tables(self, data: dict, key: str) -> list[dict]:
        tables = data.get(key)
        if not tables:
            self.fail(key, f"is required: at least one [[{key}]] table")
        if not isinstance(tables, list) or not all(isinstance(t, dict) for t in tables):
            self.fail(key, f"must be written as [[{key}]] tables")
        return tables

    def folds(self, value: Any, key: str) -> tuple[int | str, ...]:
        folds = value if isinstance(value, list) else [value]
        if not folds or not all((isinstance(f, int) and not isinstance(f, bool) and f >= 0) or f == "all"
                                for f in folds):
            self.fail(key, f"must be a list of fold numbers (or \"all\"), got {value!r}")
        if len(set(folds)) != len(folds):
            self.fail(key, f"a fold is listed twice: {value!r}")
        return tuple(folds)
