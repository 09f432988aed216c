"""``nnUNetv2_resunet_convert_acdc``: ACDC cine-MRI into nnU-Net raw format, with nnU-Net's or TransUNet's split.

Two source layouts, detected from the folder given with ``-i``:

* The challenge release: ``training/patientXXX/patientXXX_frameYY.nii.gz`` with ``..._gt.nii.gz`` (``_4d`` files and
  ``Info.cfg`` are ignored) and ``testing/patientXXX/...`` (labels where present). Spacing, origin and direction are
  kept.
* The processed h5 volumes of the SSL4MIS / WSL4MIS code bases: ``patientXXX_frameYY.h5`` with ``image`` (float32,
  Z x H x W, normalised) and ``label`` (uint8); ``scribble`` is ignored. SSL4MIS keeps them in ``data/ACDC/data/``
  (slices in ``data/slices/``), WSL4MIS in ``data/ACDC/ACDC_training_volumes/``. No spacing is stored: 1x1x1 unless
  ``-spacing`` is given.

Splits: by default 5 folds over patients like nnU-Net's own Dataset027 (both frames of a patient in one fold);
``-split transunet`` holds out the 20 test patients of the TransUNet protocol as imagesTs/labelsTs and writes its
one fold (10 validation patients, 70 training patients).
"""

from __future__ import annotations

import re
from collections import defaultdict
from collections.abc import Sequence
from dataclasses import replace
from pathlib import Path

import numpy as np

from nnunetv2_resunet.command_line import add_option

from .cli import add_spacing_argument, build_parser, run_cli, spacing_geometry
from .common import (
    CaseJob,
    ConversionError,
    ConversionPlan,
    Geometry,
    Layout,
    check_unique,
    first_existing,
    no_layout_found,
    require_folder,
)
from .execute import check_target, execute_plan
from .jobs import H5VolumeJob, ImageLabelFilesJob, check_header_shapes
from .reading import h5_keys_and_shapes
from .splits import check_published_cases, compare_training_set

DEFAULT_DATASET_ID = 802
DEFAULT_NAME = "ACDC"
LABELS: dict[str, int] = {"background": 0, "RV": 1, "MYO": 2, "LV": 3}
MAX_LABEL = 3
SPLITS = ("nnunet", "transunet")
#: Seed and fold count of nnU-Net's Dataset027_ACDC.create_ACDC_split, whose folds we reproduce.
DATASET027_SEED = 1234
NUM_FOLDS = 5

#: TransUNet protocol (lists_ACDC of the compared papers): test and validation patients; the other 70 train.
TRANSUNET_TEST_PATIENTS: tuple[str, ...] = tuple(
    f"patient{n}" for n in "002 003 008 009 012 014 017 024 042 048 049 053 055 064 067 079 081 088 092 095".split()
)
TRANSUNET_VALIDATION_PATIENTS: tuple[str, ...] = tuple(
    f"patient{n}" for n in "019 021 029 033 041 050 061 071 076 080".split()
)
NUM_TRAINING_PATIENTS = 100
TRAINING_PATIENTS: tuple[str, ...] = tuple(f"patient{n:03d}" for n in range(1, NUM_TRAINING_PATIENTS + 1))
TESTING_PATIENTS: tuple[str, ...] = tuple(f"patient{n:03d}" for n in range(101, 151))
CHALLENGE_REFERENCE = "ACDC challenge (training patient001-100, testing patient101-150)"

FRAME_FILE = re.compile(r"(patient\d{3})_frame(\d{2})(_gt)?\.nii(?:\.gz)?")
IGNORED_FILE = re.compile(r"patient\d{3}_4d\.nii(?:\.gz)?|Info\.cfg|.*\.(?:md|txt)")
H5_VOLUME = re.compile(r"(patient\d{3})_frame(\d{2})\.h5")
H5_SLICE = re.compile(r"patient\d{3}_frame\d{2}_slice_?\d+\.h5")
MRI_NOTE = (
    "Channel 'cineMRI' (any non-CT name: nnU-Net z-scores each image on its own, which suits MRI and the h5 layout's "
    "per-volume min-max normalised intensities alike)."
)


def patient_of(case_id: str) -> str:
    """``patientXXX`` of a case ID ``patientXXX_frameYY``."""
    return case_id[: len("patient000")]


def dataset027_splits(case_ids: Sequence[str]) -> list[dict[str, list[str]]]:
    """Folds over patients as nnU-Net's Dataset027_ACDC builds them (same seed, same shuffle, ``patients[f::5]``).

    Both frames of a patient always share a fold. With fewer than 5 patients there is one fold per patient.
    """
    patients = np.unique([patient_of(c) for c in case_ids])
    np.random.RandomState(DATASET027_SEED).shuffle(patients)
    num_folds = min(NUM_FOLDS, len(patients))
    if num_folds < 2:
        raise ConversionError(f"cross-validation needs at least 2 patients, got {list(patients)}")
    splits = []
    for fold in range(num_folds):
        validation = set(patients[fold::num_folds])
        splits.append(
            {
                "train": sorted(c for c in case_ids if patient_of(c) not in validation),
                "val": sorted(c for c in case_ids if patient_of(c) in validation),
            }
        )
    return splits


def transunet_split(case_ids: Sequence[str]) -> list[dict[str, list[str]]]:
    """TransUNet's one fold over the training cases: its 10 validation patients against the rest."""
    return [
        {
            "train": sorted(c for c in case_ids if patient_of(c) not in TRANSUNET_VALIDATION_PATIENTS),
            "val": sorted(c for c in case_ids if patient_of(c) in TRANSUNET_VALIDATION_PATIENTS),
        }
    ]


def collect_challenge_folder(folder: Path, subset: str, labels_required: bool) -> list[ImageLabelFilesJob]:
    """One job per frame of ``folder/patientXXX/``; every frame needs its ``_gt`` when ``labels_required``."""
    images: dict[str, list[Path]] = defaultdict(list)
    labels: dict[str, list[Path]] = defaultdict(list)
    for patient_dir in sorted(p for p in folder.iterdir() if p.is_dir()):
        frames = sorted(p.name for p in patient_dir.iterdir() if (m := FRAME_FILE.fullmatch(p.name)) and not m.group(3))
        if not frames:
            raise ConversionError(f"{patient_dir}: no frames (expected {patient_dir.name}_frameYY.nii.gz)")
        if len(frames) == 1:
            raise ConversionError(
                f"{patient_dir}: only one frame ({frames[0]}); ACDC has two per patient (end-diastole and end-systole)"
            )
        for path in sorted(patient_dir.iterdir()):
            match = FRAME_FILE.fullmatch(path.name)
            if match is None:
                if IGNORED_FILE.fullmatch(path.name) or path.is_dir():
                    continue
                raise ConversionError(f"{path}: unexpected file (expected patientXXX_frameYY[_gt].nii.gz)")
            if match.group(1) != patient_dir.name:
                raise ConversionError(f"{path}: file of {match.group(1)} inside the folder of {patient_dir.name}")
            case_id = f"{match.group(1)}_frame{match.group(2)}"
            (labels if match.group(3) else images)[case_id].append(path)
    check_unique([c for c, paths in images.items() for _ in paths], images)
    check_unique([c for c, paths in labels.items() for _ in paths], labels)
    orphans = sorted(set(labels) - set(images))
    if orphans:
        raise ConversionError(f"labels without an image: {[str(labels[c][0]) for c in orphans]}")
    unlabelled = sorted(set(images) - set(labels))
    if labels_required and unlabelled:
        raise ConversionError(f"training frames without a _gt label: {[str(images[c][0]) for c in unlabelled]}")
    jobs = []
    for case_id in sorted(images):
        label_path = labels[case_id][0] if case_id in labels else None
        if label_path is not None:
            check_header_shapes(images[case_id][0], label_path)
        jobs.append(ImageLabelFilesJob(case_id, subset, images[case_id][0], label_path, max_label=MAX_LABEL))
    return jobs


def collect_h5_volumes(folder: Path, geometry: Geometry) -> list[H5VolumeJob]:
    """One job per ``patientXXX_frameYY.h5``; keys and shapes are checked from the h5 metadata."""
    jobs = []
    for path in sorted(folder.iterdir()):
        match = H5_VOLUME.fullmatch(path.name)
        if match is None:
            if H5_SLICE.fullmatch(path.name):
                raise ConversionError(
                    f"{path}: a 2D slice file; pass the folder of whole volumes (ACDC_training_volumes) instead"
                )
            if path.name.endswith(".h5"):
                raise ConversionError(f"{path}: unexpected file name (expected patientXXX_frameYY.h5)")
            continue
        shapes = h5_keys_and_shapes(path, ("image", "label"))
        if shapes["image"] != shapes["label"]:
            raise ConversionError(f"{path}: image shape {shapes['image']} != label shape {shapes['label']}")
        jobs.append(H5VolumeJob(f"{match.group(1)}_frame{match.group(2)}", "Tr", path, MAX_LABEL, geometry))
    if not jobs:
        raise ConversionError(f"{folder}: no patientXXX_frameYY.h5 volumes")
    frames: dict[str, list[H5VolumeJob]] = defaultdict(list)
    for job in jobs:
        frames[patient_of(job.case_id)].append(job)
    for patient, patient_jobs in sorted(frames.items()):
        if len(patient_jobs) == 1:
            raise ConversionError(
                f"{patient_jobs[0].path}: only one frame of {patient}; ACDC has two per patient (end-diastole and "
                "end-systole)"
            )
    return jobs


def h5_volume_folder(folder: Path) -> Path | None:
    """The folder of h5 volumes: ``folder`` itself, its ``ACDC_training_volumes/`` (WSL4MIS) or ``data/`` (SSL4MIS)."""
    for candidate in (folder, folder / "ACDC_training_volumes", folder / "data"):
        if candidate.is_dir() and any(H5_VOLUME.fullmatch(p.name) for p in candidate.iterdir()):
            return candidate
    return None


LAYOUTS = (
    Layout("the challenge release: training/ (or database/training/)", lambda f: _challenge_training(f) is not None),
    Layout(
        "SSL4MIS/WSL4MIS h5 volumes: patientXXX_frameYY.h5 in the folder, in ACDC_training_volumes/ or in data/",
        lambda f: h5_volume_folder(f) is not None,
    ),
)


def _challenge_training(folder: Path) -> Path | None:
    return first_existing(folder, ("training", "database/training"))


def apply_transunet_split(jobs: list[CaseJob], source: Path) -> list[CaseJob]:
    """Move the TransUNet test patients' frames to the test subset; all listed patients must be present."""
    patients = {patient_of(j.case_id) for j in jobs}
    check_published_cases(
        TRANSUNET_TEST_PATIENTS + TRANSUNET_VALIDATION_PATIENTS, patients, "TransUNet test/validation patients", source
    )
    if len(patients) != NUM_TRAINING_PATIENTS:
        raise ConversionError(
            f"{source}: -split transunet needs the {NUM_TRAINING_PATIENTS} ACDC training patients, found "
            f"{len(patients)}"
        )
    return [replace(j, subset="Ts") if patient_of(j.case_id) in TRANSUNET_TEST_PATIENTS else j for j in jobs]


def plan_acdc(source: Path, split: str = "nnunet", spacing: Sequence[float] | None = None) -> ConversionPlan:
    """Detect the layout of ``source`` and collect its cases, split and metadata.

    Raises:
        ConversionError: If neither layout is found, ``split`` is unknown, or the source fails a structural check.
    """
    if split not in SPLITS:
        raise ConversionError(f"-split must be one of {list(SPLITS)}, got {split!r}")
    require_folder(source, "the ACDC release")
    training = _challenge_training(source)
    warnings: list[str] = []
    extra: dict[str, object] = {}
    if training is not None:
        if spacing is not None:
            raise ConversionError(f"{source}: -spacing is only for the h5 layout; the challenge files carry spacing")
        jobs: list[CaseJob] = list(collect_challenge_folder(training, "Tr", labels_required=True))
        testing = first_existing(training.parent, ("testing",))
        layout, spacing_note = "challenge", "spacing, origin and direction from the release"
        if split == "nnunet" and testing is not None:
            test_jobs = collect_challenge_folder(testing, "Ts", labels_required=False)
            jobs += test_jobs
            extra["test_set"], test_warnings = compare_training_set(
                TESTING_PATIENTS, {patient_of(j.case_id) for j in test_jobs}, "ACDC testing patients",
                CHALLENGE_REFERENCE, testing,
            )
            warnings += test_warnings
        elif testing is not None:
            spacing_note += (
                "; the challenge's testing/ patients are not part of the TransUNet protocol and are left out"
            )
    else:
        folder = h5_volume_folder(source)
        if folder is None:
            for path in source.iterdir():
                if H5_SLICE.fullmatch(path.name):
                    raise ConversionError(
                        f"{path}: a 2D slice file; pass the folder of whole volumes (ACDC_training_volumes) instead"
                    )
            raise no_layout_found(source, "ACDC", LAYOUTS)
        jobs = list(collect_h5_volumes(folder, spacing_geometry(spacing)))
        layout = "h5"
        spacing_note = (
            f"voxel spacing {list(spacing)} (x, y, z) given on the command line"
            if spacing is not None
            else "voxel spacing 1x1x1: the h5 layout stores none (pass -spacing to set one)"
        )
    origin: dict[str, list[Path]] = defaultdict(list)
    for job in jobs:
        origin[job.case_id].append(job.image_path if isinstance(job, ImageLabelFilesJob) else job.path)
    check_unique([j.case_id for j in jobs], origin)
    extra["training_set"], training_warnings = compare_training_set(
        TRAINING_PATIENTS, {patient_of(j.case_id) for j in jobs if j.subset == "Tr"}, "ACDC training patients",
        CHALLENGE_REFERENCE, source,
    )
    warnings += training_warnings
    if split == "transunet":
        jobs = apply_transunet_split(jobs, source)
    training_ids = sorted(j.case_id for j in jobs if j.subset == "Tr")
    splits = transunet_split(training_ids) if split == "transunet" else dataset027_splits(training_ids)
    split_note = (
        "split: TransUNet protocol (20 test patients in imagesTs/labelsTs; splits_final.json has one fold, 10 "
        "validation and 70 training patients)"
        if split == "transunet"
        else "split: 5 folds over patients as nnU-Net's Dataset027 (both frames of a patient in one fold)"
    )
    return ConversionPlan(
        jobs=jobs,
        channel_names={0: "cineMRI"},
        labels=dict(LABELS),
        splits=splits,
        description=f"ACDC cine-MRI ({layout} layout); {spacing_note}; {split_note}. {MRI_NOTE}",
        source=source,
        reference="https://www.creatis.insa-lyon.fr/Challenge/acdc/",
        extra_json={"source_layout": layout, "split": split, "spacing_from_release": layout == "challenge", **extra},
        warnings=warnings,
    )


def convert_acdc(
    source: Path,
    dataset_id: int = DEFAULT_DATASET_ID,
    name: str = DEFAULT_NAME,
    split: str = "nnunet",
    spacing: Sequence[float] | None = None,
    num_processes: int = 1,
    overwrite: bool = False,
) -> Path:
    """Convert an ACDC release into ``$nnUNet_raw/DatasetXXX_Name`` and write the chosen split.

    Returns:
        The dataset folder.
    """
    check_target(dataset_id, name, overwrite, Path(source))
    plan = plan_acdc(Path(source), split, spacing)
    return execute_plan(plan, dataset_id, name, num_processes, overwrite)


def main(argv: Sequence[str] | None = None) -> int:
    """Console entry point ``nnUNetv2_resunet_convert_acdc``."""
    parser = build_parser(
        "nnUNetv2_resunet_convert_acdc",
        "Convert ACDC (challenge release or SSL4MIS/WSL4MIS h5 volumes) into nnU-Net raw format.",
        DEFAULT_DATASET_ID,
        DEFAULT_NAME,
    )
    add_option(
        parser,
        "-split",
        old=["--split"],
        choices=SPLITS,
        default="nnunet",
        help="nnunet: 5 folds over patients like nnU-Net's Dataset027 (default); transunet: the 20 test patients "
        "of the TransUNet protocol go to imagesTs/labelsTs and fold 0 is its 70/10 train/validation split",
    )
    add_spacing_argument(parser, "the h5 layout")
    return run_cli(
        parser,
        argv,
        lambda args: convert_acdc(
            args.input, args.dataset_id, args.name, args.split, args.spacing, args.num_processes, args.overwrite
        )
    )
