"""Whether a study can run, checked the same way by every subcommand (``status``, ``plan``, ``run``, ``submit``):
every problem at once, each one line, before anything starts.

What is checked: every dataset is in ``$nnUNet_raw`` (if not: the converter command its study file names, see
:mod:`.sources`) and was converted with the split the study file names; nnU-Net's own lookup finds every trainer
(a study's ``epochs`` must be one of the budgets); every configuration is one the dataset's plans have (or, before
planning, one nnU-Net's planner writes), spelled as nnU-Net spells it; a trainer whose network is 2D only
(``network_dimensions = (2,)``, every trainer of this plugin) is not asked for a 3D configuration; ResUnet's planner
(2d only) plans no 3d model; every weights file exists. ``status`` and ``plan`` still show the study's table and
then list the problems; ``run`` and ``submit`` refuse to start.
"""

from __future__ import annotations

import contextlib
import difflib
import io
import json
from functools import cache
from pathlib import Path

from nnunetv2_resunet.studies.runs import NnUNetFolders, converted, dataset_folder
from nnunetv2_resunet.studies.state import inherited
from nnunetv2_resunet.studies.study_file import DatasetSpec, Study, StudyFileError

# What nnU-Net's planner writes (3d_lowres and the cascade only for large images), and their patch dimensions.
NNUNET_CONFIGURATIONS: dict[str, int] = {"2d": 2, "3d_fullres": 3, "3d_lowres": 3, "3d_cascade_fullres": 3}


class StudyProblems(StudyFileError):
    """A study that cannot run as it is; ``problems`` holds one line per problem (printed so: see
    ``command_line.run_command``)."""

    one_problem_per_line = True

    def __init__(self, path: Path, problems: list[str]):
        self.problems = problems
        lines = problems[0] if len(problems) == 1 else f"{len(problems)} problems:\n" + "\n".join(
            f"  - {p}" for p in problems)
        super().__init__(f"{path}: {lines}")


def check_study(study: Study, folders: NnUNetFolders) -> None:
    """Raise :class:`StudyProblems` naming every problem of ``study`` (see the module docstring)."""
    problems = study_problems(study, folders)
    if problems:
        raise StudyProblems(study.path, problems)


def study_problems(study: Study, folders: NnUNetFolders) -> list[str]:
    """Every reason why ``study`` cannot run here, one line each (empty: it can)."""
    problems = []
    for dataset in study.datasets:
        problems += _dataset_problems(study, dataset, folders)
    problems += _trainer_problems(study)
    problems += _configuration_problems(study, folders)
    missing = sorted({str(m.weights) for m in study.models if m.weights is not None and not m.weights.is_file()})
    if missing:
        problems.append(f"weights: no such file {', '.join(missing)} (the published files, as released; "
                        f"docs/models.md says where each comes from)")
    return problems


def _dataset_problems(study: Study, dataset: DatasetSpec, folders: NnUNetFolders) -> list[str]:
    name = dataset_folder(dataset, folders)
    if not converted(folders, name):
        how = (f": {dataset.convert.hint(dataset.id)}" if dataset.convert is not None else
               " (the study file does not say how: add a [datasets.convert] table, docs/studies.md; the converters "
               "are in dataset_conversion/README.md)")
        return [f"dataset {dataset.id} is not in $nnUNet_raw ({folders.raw}): convert it first{how}"]
    if dataset.convert is None or dataset.convert.split is None:
        return []
    dataset_json = json.loads((folders.raw / name / "dataset.json").read_text(encoding="utf-8"))
    written = dataset_json.get("split")
    if written is not None and written != dataset.convert.split:
        return [f"dataset {dataset.id}: {folders.raw / name} was converted with split {written!r}, but the study "
                f"names split {dataset.convert.split!r} (another test set and other folds): convert it again with "
                f"--overwrite: {dataset.convert.hint(dataset.id)} --overwrite"]
    return []


@cache
def trainer_class(name: str) -> type | None:
    """The class nnU-Net's own lookup finds for ``name`` (as nnUNetv2_train will), or None."""
    from nnunetv2.utilities.find_objects import recursive_find_trainer_class_by_name

    with contextlib.redirect_stdout(io.StringIO()):
        try:
            return recursive_find_trainer_class_by_name(name)
        except (RuntimeError, AssertionError):
            return None


def _trainer_problems(study: Study) -> list[str]:
    unknown = [t for t in dict.fromkeys(m.trainer for m in study.models) if trainer_class(t) is None]
    if not unknown:
        return []
    budgets = ""
    if study.epochs is not None:
        from nnunetv2_resunet.training.budgets import EPOCH_BUDGETS

        budgets = f" (epochs = {study.epochs}: the budgets nnU-Net and this plugin provide are " \
                  f"{', '.join(map(str, EPOCH_BUDGETS))})"
    return [f"nnU-Net finds no trainer named {', '.join(unknown)}{budgets}"]


def _planned_dimensions(folders: NnUNetFolders, name: str, plans: str) -> dict[str, int] | None:
    """Each configuration of a dataset's plans file and its patch dimensions; None before planning."""
    path = folders.preprocessed / name / f"{plans}.json"
    if not path.is_file():
        return None
    configurations = json.loads(path.read_text(encoding="utf-8"))["configurations"]
    return {c: len(inherited(configurations, c, "patch_size") or (0, 0, 0)) for c in configurations}


def _configuration_problems(study: Study, folders: NnUNetFolders) -> list[str]:
    problems = []
    for dataset in study.datasets:
        name = dataset_folder(dataset, folders)
        for model in study.models_for(dataset):
            spec = model.plans_for(dataset)  # the dataset's plans, or the model block's own
            planned = _planned_dimensions(folders, name, spec.plans)
            known = planned if planned is not None else NNUNET_CONFIGURATIONS
            where = f"{folders.preprocessed / name / spec.plans}.json has" if planned is not None else \
                "nnU-Net's planner writes"
            configuration = model.configuration
            if configuration not in known:
                close = [c for c in known if c.lower() == configuration.lower()] or \
                    difflib.get_close_matches(configuration, list(known), n=1)
                suggestion = f" (did you mean {close[0]!r}?)" if close else ""
                problems.append(f"configuration {configuration!r}: {where} {', '.join(known)}{suggestion}")
                continue
            if spec.planner == "resunet" and configuration != "2d":
                problems.append(f"dataset {dataset.id}: planner = \"resunet\" plans the 2d configuration only, but "
                                f"{model.trainer} trains {configuration}: plan with nnU-Net's planner, or train 2d")
            dimensions = getattr(trainer_class(model.trainer), "network_dimensions", None)
            if dimensions is not None and known[configuration] not in dimensions:
                problems.append(f"{model.trainer} trains a {'/'.join(f'{d}D' for d in dimensions)} network, but "
                                f"configuration {configuration!r} is {known[configuration]}D: use configuration = "
                                f"\"2d\" for it")
    return list(dict.fromkeys(problems))  # a model on several datasets: each problem once
