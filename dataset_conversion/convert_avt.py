"""``nnUNetv2_resunet_convert_avt``: the Aortic Vessel Tree (AVT) CTA collection into nnU-Net raw format.

Two source layouts, detected from the folder given with ``-i``:

* The figshare release: ``KiTS/K1/K1.nrrd`` + ``K1.seg.nrrd``, ``Rider/R1 (AD)/R1.nrrd`` + ``R1.seg.nrrd``,
  ``Dongyang/D1/...`` (56 cases): the three collection folders, in each one folder per case holding one image and
  one ``.seg.nrrd``; nothing else under ``-i`` is a case. Any non-zero mask voxel becomes aorta (1); a mask saved on a
  cropped sub-grid is placed on the image grid; spacing, origin and direction are kept. Images stored as HU + 1024
  (reported for KiTS and Rider) are detected per case by their air value and corrected (``-hu_shift``).
* The 2D layout of the papers (ParaTransCNN): ``train/<case>_slice_<n>.npz`` (``image``, ``label``; only slices that
  contain aorta, so slice numbers have gaps) and ``test_vol_h5/<case>.h5`` (``image``, ``label``, ``origin``,
  ``direction``, ``xyz_thickness``). Training slices are stacked in slice-number order without filling the gaps
  (the numbers are kept in dataset.json), so those volumes suit the 2d configuration only; they store no spacing
  (1x1x1 unless ``-spacing``). Test volumes keep their stored geometry.

Case IDs are the case names made file-name safe ('R7 (AD)' -> 'R7_AD'); dataset.json maps them back. The split is
ParaTransCNN's: 18 test cases in imagesTs/labelsTs, 5 folds over the other 38.
"""

from __future__ import annotations

import re
from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

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
    safe_case_id,
)
from .ct_intensity import (
    HU_OFFSET,
    HU_SHIFT_MODES,
    HU_SHIFT_RULE,
    HU_SHIFT_SOURCE,
    air_value,
    is_hounsfield,
    is_shifted,
    mixed_scales,
    subtract_offset,
)
from .execute import check_target, execute_plan
from .jobs import ImageLabelFilesJob, SliceStackJob, check_header_shapes, write_case
from .reading import check_finite, check_same_shape, check_volume, checked_labels, h5_keys_and_shapes, npz_keys, read_h5
from .splits import check_published_cases, compare_training_set, five_fold_splits

DEFAULT_DATASET_ID = 803
DEFAULT_NAME = "AVT"
LABELS: dict[str, int] = {"background": 0, "aorta": 1}

#: ParaTransCNN's test cases (lists_AVT/test_vol.txt), by their names in the release.
TEST_CASES: tuple[str, ...] = (
    "R15", "K19", "D15", "K2", "R7 (AD)", "D17", "D13", "R10", "K12", "D4", "R1 (AD)", "K5", "R6 (AAA)", "D12", "R18",
    "K20", "D18", "K9",
)  # fmt: skip
NUM_CASES = 56
#: The release's case names: the collection folder, and how its case folders are named.
COLLECTIONS: dict[str, str] = {"KiTS": "K", "Rider": "R", "Dongyang": "D"}
CASE_FOLDER = re.compile(r"([KRD])\d+(?: \([A-Za-z]+\))?")
RIDER_DIAGNOSES = {1: " (AD)", 2: " (AD)", 5: " (AD)", 6: " (AAA)", 7: " (AD)", 8: " (AD)"}
ALL_CASES: tuple[str, ...] = (
    *(f"D{n}" for n in range(1, 19)),
    *(f"K{n}" for n in range(1, 21)),
    *(f"R{n}{RIDER_DIAGNOSES.get(n, '')}" for n in range(1, 19)),
)
#: ParaTransCNN's 38 training cases: the release's 56 less its test list (lists_AVT/train.txt names their slices).
TRAINING_CASES: tuple[str, ...] = tuple(c for c in ALL_CASES if c not in TEST_CASES)
TRAINING_REFERENCE = "ParaTransCNN training cases (lists_AVT/train.txt)"
TRAIN_SLICE = re.compile(r"(.+)_slice_(\d+)\.npz")
TEST_VOLUME_KEYS = ("image", "label", "origin", "direction", "xyz_thickness")
TRAIN_FOLDERS = ("train", "train_npz")
TEST_FOLDERS = ("test_vol_h5", "test_vol")
CT_NOTE = (
    "Channel 'CT' (nnU-Net's CT normalisation: global foreground percentile clipping and z-scoring). The 2D layout's "
    "intensities are clipped to [-190, 1668] HU and scaled to [0, 1] by one fixed linear map for all cases, so the "
    "global scheme stays consistent for it too."
)


@dataclass(frozen=True)
class GeometryH5VolumeJob(CaseJob):
    """A test volume of the 2D layout: slice-first ``image``/``label`` with ``origin``, ``direction``, spacing."""

    path: Path = Path()

    def convert(self, output_folder: Path) -> None:
        """Read, check and write the volume with its stored geometry; arrays are written exactly as stored."""
        arrays = read_h5(self.path, TEST_VOLUME_KEYS)
        image, label = arrays["image"], arrays["label"]
        check_volume(image, self.path, "image")
        check_same_shape(image, label, self.path)
        check_finite(image, self.path)
        geometry = stored_geometry(arrays, self.path)
        write_case(output_folder, self, image, checked_labels(label, 1, self.path), geometry)


def stored_geometry(arrays: dict[str, np.ndarray], path: Path) -> Geometry:
    """Geometry from ``xyz_thickness`` (3 spacings), ``origin`` (3) and ``direction`` (9, or 3x3).

    Raises:
        ConversionError: On wrong counts, non-positive or non-finite values, or a direction that is not a rotation
            (singular, or axes not orthonormal): NIfTI cannot store such a volume.
    """
    spacing = np.asarray(arrays["xyz_thickness"], dtype=float).ravel()
    origin = np.asarray(arrays["origin"], dtype=float).ravel()
    direction = np.asarray(arrays["direction"], dtype=float).ravel()
    if spacing.size != 3 or origin.size != 3 or direction.size != 9 or (spacing <= 0).any():
        raise ConversionError(
            f"{path}: need 3 positive xyz_thickness, 3 origin and 9 direction values, got {spacing.tolist()}, "
            f"{origin.tolist()}, {direction.tolist()}"
        )
    if not (np.isfinite(spacing).all() and np.isfinite(origin).all() and np.isfinite(direction).all()):
        raise ConversionError(f"{path}: geometry holds NaN/inf: {spacing.tolist()}, {origin.tolist()}, "
                              f"{direction.tolist()}")
    matrix = direction.reshape(3, 3)
    if abs(np.linalg.det(matrix)) < 1e-6:
        raise ConversionError(f"{path}: direction {direction.tolist()} is singular (determinant 0): not a rotation")
    if not np.allclose(matrix @ matrix.T, np.eye(3), atol=1e-3):
        raise ConversionError(f"{path}: direction {direction.tolist()} is not orthonormal: not a rotation")
    return Geometry(tuple(spacing.tolist()), tuple(origin.tolist()), tuple(direction.tolist()))


@dataclass(frozen=True)
class FigshareCaseJob(ImageLabelFilesJob):
    """A case of the figshare release; its intensity scale is checked (and corrected) by its air value."""

    hu_shift: str = "auto"

    def adjust_image(self, image: np.ndarray) -> tuple[np.ndarray, dict[str, Any] | None]:
        air = air_value(image)
        subtract = self.hu_shift == "auto" and is_shifted(air)
        if self.hu_shift == "auto" and not (subtract or is_hounsfield(air)):
            raise ConversionError(
                f"{self.image_path}: cannot tell whether this CT is in Hounsfield units (air about -1000) or stored "
                f"as HU + {HU_OFFSET} (air about 0): its air/background level is {air:g}. Check the scan; "
                "pass -hu_shift none to convert every case as stored"
            )
        notes = {"case_intensity": {"air_value": air, "subtracted": HU_OFFSET if subtract else 0}}
        return (subtract_offset(image) if subtract else image), notes


def collection_folders(source: Path) -> dict[str, Path]:
    """The release's collection folders under ``source`` (names matched case-insensitively).

    A collection unzipped into a folder of its own name (``KiTS/KiTS/K1``) is found one level down.
    """
    found: dict[str, Path] = {}
    for entry in sorted(source.iterdir()) if source.is_dir() else []:
        for name in COLLECTIONS:
            if entry.is_dir() and entry.name.lower() == name.lower():
                if name in found:
                    raise ConversionError(f"{source}: duplicate collection folders {[str(found[name]), str(entry)]}")
                inner = [p for p in entry.iterdir() if p.is_dir()]
                nested = len(inner) == 1 and inner[0].name.lower() == name.lower()
                found[name] = inner[0] if nested else entry
    return found


def collect_figshare(
    source: Path, hu_shift: str = "auto"
) -> tuple[list[ImageLabelFilesJob], dict[str, str], list[str]]:
    """One job per case folder of the collection folders, each holding one ``X.nrrd`` and one ``Y.seg.nrrd``.

    Returns:
        The jobs, case ID -> release name, and the folders that were passed over (not collections, not cases).
    """
    collections = collection_folders(source)
    outer = {c.parent for c in collections.values()} | set(collections.values())
    ignored = [str(p) for p in sorted(source.iterdir()) if p.is_dir() and p not in outer]
    jobs, names, origin = [], {}, defaultdict(list)
    for collection, folder in sorted(collections.items()):
        for case_folder in sorted(p for p in folder.iterdir() if p.is_dir()):
            match = CASE_FOLDER.fullmatch(case_folder.name)
            if match is None or match.group(1) != COLLECTIONS[collection]:
                ignored.append(str(case_folder))
                continue
            paths = sorted(p for p in case_folder.iterdir() if p.is_file() and p.name.endswith(".nrrd"))
            segs = [p for p in paths if p.name.endswith(".seg.nrrd")]
            images = [p for p in paths if not p.name.endswith(".seg.nrrd")]
            if len(segs) != 1 or len(images) != 1:
                raise ConversionError(
                    f"{case_folder}: a case folder needs one image .nrrd and one .seg.nrrd, found "
                    f"{[p.name for p in paths]}"
                )
            case_id = safe_case_id(case_folder.name)
            check_header_shapes(images[0], segs[0], allow_subgrid=True)
            origin[case_id].append(case_folder)
            names[case_id] = case_folder.name
            subset = "Ts" if case_folder.name in TEST_CASES else "Tr"
            jobs.append(FigshareCaseJob(case_id, subset, images[0], segs[0], binarise=True, hu_shift=hu_shift))
    if not jobs:
        raise ConversionError(f"{source}: no case folders in {sorted(str(f) for f in collections.values())}")
    check_unique([j.case_id for j in jobs], origin)
    check_published_cases(TEST_CASES, [names[j.case_id] for j in jobs], "ParaTransCNN test cases", source)
    return jobs, names, ignored


LAYOUTS = (
    Layout(
        "the figshare release: its collection folders KiTS/, Rider/, Dongyang/ (each with case folders K1/, ...)",
        lambda f: bool(collection_folders(f)),
    ),
    Layout(
        "the papers' 2D layout: train/ (or train_npz/) with test_vol_h5/ (or test_vol/)",
        lambda f: first_existing(f, TRAIN_FOLDERS) is not None and first_existing(f, TEST_FOLDERS) is not None,
    ),
)


def collect_2d_layout(
    train_folder: Path, test_folder: Path, geometry: Geometry
) -> tuple[list[CaseJob], dict[str, str], dict[str, list[int]]]:
    """Jobs of the 2D layout; returns the jobs, ID -> original name, and each training case's slice numbers."""
    slices: dict[str, dict[int, list[Path]]] = defaultdict(lambda: defaultdict(list))
    for path in sorted(train_folder.iterdir()):
        match = TRAIN_SLICE.fullmatch(path.name)
        if match is None:
            if path.name.endswith(".npz"):
                raise ConversionError(f"{path}: unexpected file name (expected <case>_slice_<n>.npz)")
            continue
        slices[match.group(1)][int(match.group(2))].append(path)
    if not slices:
        raise ConversionError(f"{train_folder}: no <case>_slice_<n>.npz files")
    jobs: list[CaseJob] = []
    names: dict[str, str] = {}
    origin: dict[str, list[Path]] = defaultdict(list)
    slice_numbers: dict[str, list[int]] = {}
    for name, by_number in sorted(slices.items()):
        for number, paths in by_number.items():
            if len(paths) > 1:
                raise ConversionError(f"duplicate cases: slice {number} of {name} is in {[str(p) for p in paths]}")
        ordered = tuple(by_number[n][0] for n in sorted(by_number))
        for path in ordered:
            absent = [k for k in ("image", "label") if k not in npz_keys(path)]
            if absent:
                raise ConversionError(f"{path}: missing keys {absent} (has {sorted(npz_keys(path))})")
        case_id = safe_case_id(name)
        names[case_id], slice_numbers[case_id] = name, sorted(by_number)
        origin[case_id].append(train_folder / f"{name}_slice_*.npz")
        jobs.append(SliceStackJob(case_id, "Tr", slice_paths=ordered, max_label=1, geometry=geometry))
    test_names = []
    for path in sorted(test_folder.iterdir()):
        if not path.name.endswith(".h5"):
            continue
        shapes = h5_keys_and_shapes(path, TEST_VOLUME_KEYS)
        if shapes["image"] != shapes["label"]:
            raise ConversionError(f"{path}: image shape {shapes['image']} != label shape {shapes['label']}")
        name = path.name[: -len(".h5")]
        case_id = safe_case_id(name)
        names[case_id] = name
        origin[case_id].append(path)
        test_names.append(name)
        jobs.append(GeometryH5VolumeJob(case_id, "Ts", path=path))
    check_unique([j.case_id for j in jobs], origin)
    check_published_cases(TEST_CASES, test_names, "ParaTransCNN test cases", test_folder)
    extra = sorted(set(test_names) - set(TEST_CASES))
    if extra:
        raise ConversionError(f"{test_folder}: test volumes {extra} are not in ParaTransCNN's test list")
    return jobs, names, slice_numbers


def plan_avt(source: Path, spacing: Sequence[float] | None = None, hu_shift: str = "auto") -> ConversionPlan:
    """Detect the layout of ``source`` and collect its cases, split and metadata.

    Args:
        hu_shift: Figshare layout: ``auto`` detects HU + 1024 images per case and subtracts 1024 (refusing a case
            that fits neither scale); ``none`` converts every image as stored (and warns about mixed scales).

    Raises:
        ConversionError: If neither layout is found or the source fails a structural check.
    """
    if hu_shift not in HU_SHIFT_MODES:
        raise ConversionError(f"-hu_shift must be one of {list(HU_SHIFT_MODES)}, got {hu_shift!r}")
    require_folder(source, "the AVT release")
    train_folder, test_folder = first_existing(source, TRAIN_FOLDERS), first_existing(source, TEST_FOLDERS)
    extra_json: dict[str, object]
    check_notes = None
    if train_folder is not None or test_folder is not None:
        if train_folder is None or test_folder is None:
            raise ConversionError(
                f"{source}: the 2D layout needs a training folder ({' or '.join(TRAIN_FOLDERS)}) and a test folder "
                f"({' or '.join(TEST_FOLDERS)}); found only {(train_folder or test_folder).name}"
            )
        jobs, names, slice_numbers = collect_2d_layout(train_folder, test_folder, spacing_geometry(spacing))
        spacing_note = (
            f"training spacing {list(spacing)} (x, y, z) given on the command line"
            if spacing is not None
            else "training spacing 1x1x1: the slices store none (pass -spacing to set one)"
        )
        description = (
            "AVT aorta CTA from the papers' 2D layout: training slices (only those containing aorta) stacked in "
            f"slice-number order without filling the gaps, so train with the 2d configuration only; {spacing_note}; "
            f"test volumes with their stored origin, direction and spacing. {CT_NOTE}"
        )
        extra_json = {"source_layout": "2d", "training_slice_numbers": slice_numbers}
    elif collection_folders(source):
        if spacing is not None:
            raise ConversionError(f"{source}: -spacing is only for the 2D layout; the figshare files carry spacing")
        jobs, names, ignored = collect_figshare(source, hu_shift)
        if ignored:
            print(f"note: not part of the AVT release, passed over: {ignored}")
        shift_note = (
            f"images stored as HU + {HU_OFFSET} were detected per case by their air value and {HU_OFFSET} subtracted "
            "(dataset.json's case_intensity lists each case)"
            if hu_shift == "auto"
            else "images converted as stored (-hu_shift none)"
        )
        description = (
            "AVT aorta CTA from the figshare release (KiTS, Rider, Dongyang): any non-zero mask voxel is aorta; "
            f"spacing, origin and direction from the release; {shift_note}. {CT_NOTE}"
        )
        extra_json = {
            "source_layout": "figshare",
            "hu_shift": {"mode": hu_shift, "rule": HU_SHIFT_RULE, "source": HU_SHIFT_SOURCE},
        }
        check_notes = mixed_scales if hu_shift == "none" else None
    else:
        raise no_layout_found(source, "AVT", LAYOUTS)
    training_ids = sorted(j.case_id for j in jobs if j.subset == "Tr")
    training_set, warnings = compare_training_set(
        TRAINING_CASES, [names[c] for c in training_ids], "ParaTransCNN training cases", TRAINING_REFERENCE, source
    )
    return ConversionPlan(
        jobs=list(jobs),
        channel_names={0: "CT"},
        labels=dict(LABELS),
        splits=five_fold_splits(training_ids),
        description=f"{description} Split: ParaTransCNN's 18 test cases in imagesTs/labelsTs, 5 folds over the rest.",
        source=source,
        reference="https://doi.org/10.6084/m9.figshare.14806362",
        extra_json={**extra_json, "original_case_names": dict(sorted(names.items())), "training_set": training_set},
        warnings=warnings,
        check_notes=check_notes,
    )


def convert_avt(
    source: Path,
    dataset_id: int = DEFAULT_DATASET_ID,
    name: str = DEFAULT_NAME,
    spacing: Sequence[float] | None = None,
    num_processes: int = 1,
    overwrite: bool = False,
    hu_shift: str = "auto",
) -> Path:
    """Convert an AVT release into ``$nnUNet_raw/DatasetXXX_Name`` and write ParaTransCNN's split.

    Returns:
        The dataset folder.
    """
    check_target(dataset_id, name, overwrite, Path(source))
    plan = plan_avt(Path(source), spacing, hu_shift)
    return execute_plan(plan, dataset_id, name, num_processes, overwrite)


def main(argv: Sequence[str] | None = None) -> int:
    """Console entry point ``nnUNetv2_resunet_convert_avt``."""
    parser = build_parser(
        "nnUNetv2_resunet_convert_avt",
        "Convert the Aortic Vessel Tree (AVT) CTA collection (figshare release or the papers' 2D npz/h5 layout) into "
        "nnU-Net raw format with ParaTransCNN's train/test split.",
        DEFAULT_DATASET_ID,
        DEFAULT_NAME,
    )
    add_spacing_argument(parser, "the 2D layout's training slices")
    add_option(
        parser,
        "-hu_shift",
        old=["--hu-shift"],
        choices=HU_SHIFT_MODES,
        default="auto",
        help="figshare release: 'auto' (default) measures each image's air value; air about 0 means the image is "
        f"stored as HU + {HU_OFFSET} (reported for KiTS and Rider) and {HU_OFFSET} is subtracted, air about -1000 "
        "means HU, kept; anything else stops the conversion. 'none' converts every image as stored",
    )
    return run_cli(
        parser,
        argv,
        lambda args: convert_avt(
            args.input, args.dataset_id, args.name, args.spacing, args.num_processes, args.overwrite, args.hu_shift
        )
    )
