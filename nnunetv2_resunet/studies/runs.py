"""A study as runs: preprocess (per dataset and plans), train (per model and fold), predict (per model and test
set), report (per dataset), each with the folder whose content says whether it is done and the runs it needs.

Where things go (nnU-Net's own layout wherever nnU-Net has one):

* preprocess: ``$nnUNet_preprocessed/DatasetXXX_Name/`` (plans file, data folders);
* train: ``$nnUNet_results/DatasetXXX_Name/TRAINER__PLANS__CONFIGURATION/fold_N/``;
* predict: ``$nnUNet_results/DatasetXXX_Name/TRAINER__PLANS__CONFIGURATION/predictions_<test set>_folds_<f>/``;
* report: ``$nnUNet_results/studies/<study name>/DatasetXXX_Name/`` (``-o DIR``: ``DIR/<study name>/...``, which
  later commands then find without ``-o``).

Each run's lock, log and SLURM record (``study_<stage>...lock/.log/.slurm``) sit beside what it writes: in the fold
folder, the prediction folder, the report folder; for preprocessing, in the dataset's preprocessed folder (nnU-Net
deletes and rewrites the data folders themselves; the converters recognise these files on ``--overwrite``).
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from pathlib import Path

from nnunetv2_resunet.studies.study_file import DatasetSpec, Study, StudyFileError

STUDIES_FOLDER = "studies"  # $nnUNet_results/studies/<study name>/: its reports, and submitit's files under slurm/
REPORTS_RECORD = "reports_folder.json"  # there: where the reports went when `-o` named another folder


@dataclass(frozen=True)
class NnUNetFolders:
    """nnU-Net's three folders (from its environment variables), the study's own folder beside nnU-Net's results,
    and where its reports go."""

    raw: Path
    preprocessed: Path
    results: Path
    reports: Path  # default: $nnUNet_results/studies/<study name>

    @classmethod
    def from_environment(cls, study: Study, reports_base: str | Path | None = None) -> NnUNetFolders:
        """nnU-Net's folders, and the reports under ``reports_base/<study name>``; without ``reports_base``, where
        the last ``run`` or ``submit`` with ``-o`` put them (:meth:`remember_reports`), else in the study's folder,
        ``$nnUNet_results/studies/<study name>``: the same from any current folder."""
        missing = [v for v in ("nnUNet_raw", "nnUNet_preprocessed", "nnUNet_results") if not os.environ.get(v)]
        if missing:
            raise StudyFileError(f"set nnU-Net's environment variables first: {', '.join(missing)} (the study reads "
                                 f"and writes nnU-Net's own folders)")
        results = Path(os.environ["nnUNet_results"])
        home = results / STUDIES_FOLDER / study.name
        if reports_base is not None:
            reports = Path(reports_base).absolute() / study.name
        else:
            try:
                reports = Path(json.loads((home / REPORTS_RECORD).read_text(encoding="utf-8"))["reports"])
            except (OSError, ValueError, KeyError, TypeError):
                reports = home
        return cls(Path(os.environ["nnUNet_raw"]), Path(os.environ["nnUNet_preprocessed"]), results, reports)

    def home(self, study: Study) -> Path:
        """The study's own folder, ``$nnUNet_results/studies/<study name>``."""
        return self.results / STUDIES_FOLDER / study.name

    def remember_reports(self, study: Study) -> None:
        """Record where the reports go when that is not the study's folder, so that every later command finds them
        without ``-o``; forget it when they go there again."""
        record = self.home(study) / REPORTS_RECORD
        if self.reports == self.home(study):
            record.unlink(missing_ok=True)
            return
        content = json.dumps({"reports": str(self.reports)}) + "\n"
        if record.is_file() and record.read_text(encoding="utf-8") == content:
            return  # a re-run writes nothing
        record.parent.mkdir(parents=True, exist_ok=True)
        record.write_text(content, encoding="utf-8")


@dataclass(frozen=True)
class Run:
    """One step of the study. ``key`` names it uniquely and readably (also across machines, for SLURM)."""

    stage: str  # "preprocess" | "train" | "predict" | "report"
    dataset_id: int
    dataset: str  # DatasetXXX_Name
    plans: str = ""
    configurations: tuple[str, ...] = ()  # preprocess: every configuration it prepares; otherwise the one
    trainer: str = ""
    fold: int | str | None = None  # train
    folds: tuple[int | str, ...] = ()  # predict, report
    folder: Path = Path()  # what the run writes, and where its lock and log live (see the module docstring)
    test_images: Path | None = None  # predict
    test_labels: Path | None = None  # report
    planner: str = "nnunet"  # preprocess
    gpu_memory_target: float | None = None  # preprocess
    weights: Path | None = None  # train: published encoder weights to start from (original format)
    needs: tuple[str, ...] = ()

    @property
    def model(self) -> str:
        """nnU-Net's identifier TRAINER__PLANS__CONFIGURATION (train, predict)."""
        return f"{self.trainer}__{self.plans}__{self.configurations[0]}" if self.trainer else ""

    @property
    def key(self) -> str:
        if self.stage == "preprocess":
            return f"preprocess {self.dataset} {self.plans}"
        if self.stage == "train":
            return f"train {self.dataset} {self.model} fold_{self.fold}"
        if self.stage == "predict":
            return f"predict {self.dataset} {self.model} {self.folder.name}"
        return f"report {self.dataset}"

    @property
    def lock_path(self) -> Path:
        return self._beside(".lock")

    @property
    def log_path(self) -> Path:
        return self._beside(".log")

    @property
    def slurm_path(self) -> Path:
        """Which SLURM job was last submitted for the run (``submit`` writes it; a queued job is in progress)."""
        return self._beside(".slurm")

    def _beside(self, ending: str) -> Path:
        if self.stage == "preprocess":
            return self.folder / f"study_preprocess_{self.plans}{ending}"
        return self.folder / f"study_{self.stage}{ending}"


def folds_tag(folds: tuple[int | str, ...]) -> str:
    return "_".join(str(f) for f in folds)


def converted(folders: NnUNetFolders, name: str) -> bool:
    """Whether ``$nnUNet_raw/<name>`` holds a converted dataset (its dataset.json)."""
    return (folders.raw / name / "dataset.json").is_file()


def dataset_folder(dataset: DatasetSpec, folders: NnUNetFolders) -> str:
    """nnU-Net's name for a dataset, ``DatasetXXX_Name``, found in its folders; for a dataset not converted yet,
    the name its study file gives it (``[datasets.convert]``), or ``DatasetXXX_?``."""
    from nnunetv2.utilities.dataset_name_id_conversion import convert_id_to_dataset_name

    try:
        name = convert_id_to_dataset_name(dataset.id)
    except RuntimeError:
        name = None
    if name is not None:
        return name
    return f"Dataset{dataset.id:03d}_{dataset.convert.name if dataset.convert is not None else '?'}"


def test_set(folders: NnUNetFolders, dataset: DatasetSpec, name: str) -> tuple[Path, Path] | None:
    """The test images and labels folders of a dataset, or None when it has no test set. For a dataset not yet
    converted: the folders it will have, when its study file names them or names a source that writes them."""
    if dataset.test_images is None:
        return None
    images = folders.raw / name / dataset.test_images
    if not converted(folders, name):
        expected = dataset.test_images_explicit or (dataset.convert is not None and dataset.convert.writes_test_set)
        return (images, folders.raw / name / dataset.test_labels) if expected else None
    if not images.is_dir():
        if dataset.test_images_explicit:
            raise StudyFileError(f"dataset {dataset.id}: test_images folder {images} does not exist")
        return None
    return images, folders.raw / name / dataset.test_labels


def build_runs(study: Study, folders: NnUNetFolders) -> list[Run]:
    """Every run of the study, each after the runs it needs (a valid order to run them in). A dataset not converted
    yet gets its runs too (the status shows them waiting; :mod:`.checks` says how to convert it)."""
    runs: list[Run] = []
    for dataset in study.datasets:
        name = dataset_folder(dataset, folders)
        models = study.models_for(dataset)
        tests = test_set(folders, dataset, name)
        # One preprocess run per plans, each after the one before: nnU-Net's ResEnc plans (and ours) share the 2d and
        # 3d_fullres data folders with the default plans, so only the first plans' run writes them.
        preprocess: dict[str, Run] = {}
        for spec in dict.fromkeys(m.plans_for(dataset) for m in models):
            configurations = tuple(dict.fromkeys(m.configuration for m in models if m.plans_for(dataset) == spec))
            before = (runs[-1].key,) if preprocess else ()
            preprocess[spec.plans] = Run("preprocess", dataset.id, name, spec.plans, configurations,
                                         folder=folders.preprocessed / name, planner=spec.planner,
                                         gpu_memory_target=spec.gpu_memory_target, needs=before)
            runs.append(preprocess[spec.plans])
        dataset_runs = []
        for model in models:
            plans = model.plans_for(dataset).plans
            model_dir = folders.results / name / f"{model.trainer}__{plans}__{model.configuration}"
            trains = [Run("train", dataset.id, name, plans, (model.configuration,), model.trainer, fold=fold,
                          folder=model_dir / f"fold_{fold}", weights=model.weights,
                          needs=(preprocess[plans].key,))
                      for fold in dataset.folds]
            dataset_runs += trains
            if tests is not None:
                folder = model_dir / f"predictions_{tests[0].name}_folds_{folds_tag(dataset.folds)}"
                dataset_runs.append(Run("predict", dataset.id, name, plans, (model.configuration,), model.trainer,
                                        folds=dataset.folds, folder=folder, test_images=tests[0],
                                        needs=tuple(t.key for t in trains)))
        runs += dataset_runs
        runs.append(Run("report", dataset.id, name, folds=dataset.folds, folder=folders.reports / name,
                        test_labels=tests[1] if tests else None, needs=tuple(r.key for r in dataset_runs)))
    return runs
