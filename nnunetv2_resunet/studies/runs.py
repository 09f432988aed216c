"""A study as runs: preprocess (per dataset and plans), train (per model and fold), predict (per model and test
set), report (per dataset), each with the folder whose content says whether it is done and the runs it needs.

Where things go (nnU-Net's own layout wherever nnU-Net has one):

* preprocess: ``$nnUNet_preprocessed/DatasetXXX_Name/`` (plans file, data folders);
* train: ``$nnUNet_results/DatasetXXX_Name/TRAINER__PLANS__CONFIGURATION/fold_N/``;
* predict: ``$nnUNet_results/DatasetXXX_Name/TRAINER__PLANS__CONFIGURATION/predictions_<test set>_folds_<f>/``;
* report: ``<results>/<study name>/DatasetXXX_Name/`` (``results/`` of the current folder by default).

Each run's lock and log (``study_<stage>...lock/.log``) sit beside what it writes: in the fold folder, the
prediction folder, the report folder; for preprocessing, in the dataset's preprocessed folder (nnU-Net deletes and
rewrites the data folders themselves).
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

from nnunetv2_resunet.studies.study_file import DatasetSpec, Study, StudyFileError


@dataclass(frozen=True)
class NnUNetFolders:
    """nnU-Net's three folders (from its environment variables) and where reports go."""

    raw: Path
    preprocessed: Path
    results: Path
    reports: Path  # <results>/<study name>

    @classmethod
    def from_environment(cls, study: Study, reports_base: str | Path = "results") -> NnUNetFolders:
        missing = [v for v in ("nnUNet_raw", "nnUNet_preprocessed", "nnUNet_results") if not os.environ.get(v)]
        if missing:
            raise StudyFileError(f"set nnU-Net's environment variables first: {', '.join(missing)} (the study reads "
                                 f"and writes nnU-Net's own folders)")
        return cls(Path(os.environ["nnUNet_raw"]), Path(os.environ["nnUNet_preprocessed"]),
                   Path(os.environ["nnUNet_results"]), Path(reports_base).absolute() / study.name)


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

    def _beside(self, ending: str) -> Path:
        if self.stage == "preprocess":
            return self.folder / f"study_preprocess_{self.plans}{ending}"
        return self.folder / f"study_{self.stage}{ending}"


def folds_tag(folds: tuple[int | str, ...]) -> str:
    return "_".join(str(f) for f in folds)


def dataset_name(dataset_id: int) -> str:
    """nnU-Net's name for a dataset id, found in its folders; a clear error if it has not been converted."""
    from nnunetv2.utilities.dataset_name_id_conversion import convert_id_to_dataset_name

    try:
        return convert_id_to_dataset_name(dataset_id)
    except RuntimeError:
        raise StudyFileError(f"dataset {dataset_id} is not in $nnUNet_raw ({os.environ.get('nnUNet_raw')}): convert "
                             f"it first (e.g. nnUNetv2_resunet_convert_acdc -i SOURCE -d {dataset_id})") from None


def test_set(folders: NnUNetFolders, dataset: DatasetSpec, name: str) -> tuple[Path, Path] | None:
    """The test images and labels folders of a dataset, or None when it has no test set."""
    if dataset.test_images is None:
        return None
    images = folders.raw / name / dataset.test_images
    if not images.is_dir():
        if dataset.test_images_explicit:
            raise StudyFileError(f"dataset {dataset.id}: test_images folder {images} does not exist")
        return None
    return images, folders.raw / name / dataset.test_labels


def build_runs(study: Study, folders: NnUNetFolders) -> list[Run]:
    """Every run of the study, each after the runs it needs (a valid order to run them in)."""
    runs: list[Run] = []
    for dataset in study.datasets:
        name = dataset_name(dataset.id)
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
