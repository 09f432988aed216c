"""``nnUNetv2_resunet_convert_avt``: the Aortic Vessel Tree (AVT) CTA collection into nnU-Net raw format.

Two source layouts, detected from the folder given with ``-i``:

* The figshare release: ``KiTS/K1/K1.nrrd`` + ``K1.seg.nrrd``, ``Rider/R1 (AD)/...``, ``Dongyang/D1/...`` (56 cases):
  one folder per case holding one image and one ``.seg.nrrd``. Any non-zero mask voxel becomes aorta (1); spacing,
  origin and direction are kept.
* The 2D layout of the papers (ParaTransCNN): ``train/<case>_slice_<n>.npz`` (``image``, ``label``; only slices that
  contain aorta, so slice numbers have gaps) and ``test_vol_h5/<case>.h5`` (``image``, ``label``, ``origin``,
  ``direction``, ``xyz_thickness``). Training slices are stacked in slice-number order without filling the gaps
  (the numbers are kept in dataset.json), so those volumes suit the 2d configuration only; they store no spacing
  (1x1x1 unless ``--spacing``). Test volumes keep their stored geometry.

Case IDs are the case names made file-name safe ('R7 (AD)' -> 'R7_AD'); dataset.json maps them back. The split is
ParaTransCNN's: 18 test cases in imagesTs/labelsTs, 5 folds over the other 38.
"""

from __future__ import annotations

import re
from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from .common import (
    CaseJob,
    ConversionError,
    ConversionPlan,
    Geometry,
    ImageLabelFilesJob,
    SliceStackJob,
    add_spacing_argument,
    build_parser,
    check_finite,
    check_header_shapes,
    check_published_cases,
    check_same_shape,
    check_target,
    check_unique,
    check_volume,
    checked_labels,
    execute_plan,
    first_existing,
    five_fold_splits,
    h5_keys_and_shapes,
    npz_keys,
    read_h5,
    require_folder,
    run_cli,
    safe_case_id,
    spacing_geometry,
    write_case,
)

DEFAULT_DATASET_ID = 803
DEFAULT_NAME = "AVT"
LABELS: dict[str, int] = {"background": 0, "aorta": 1}

#: ParaTransCNN's test cases (lists_AVT/test_vol.txt), by their names in the release.
TEST_CASES: tuple[str, ...] = (
    "R15", "K19", "D15", "K2", "R7 (AD)", "D17", "D13", "R10", "K12", "D4", "R1 (AD)", "K5", "R6 (AAA)", "D12", "R18",
    "K20", "D18", "K9",
)  # fmt: skip
NUM_CASES = 56
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
    """Geometry from ``xyz_thickness`` (3 spacings), ``origin`` (3) and ``direction`` (9, or 3x3)."""
    spacing = np.asarray(arrays["xyz_thickness"], dtype=float).ravel()
    origin = np.asarray(arrays["origin"], dtype=float).ravel()
    direction = np.asarray(arrays["direction"], dtype=float).ravel()
    if spacing.size != 3 or origin.size != 3 or direction.size != 9 or (spacing <= 0).any():
        raise ConversionError(
            f"{path}: need 3 positive xyz_thickness, 3 origin and 9 direction values, got {spacing.tolist()}, "
            f"{origin.tolist()}, {direction.tolist()}"
        )
    return Geometry(tuple(spacing.tolist()), tuple(origin.tolist()), tuple(direction.tolist()))


def collect_figshare(source: Path) -> tuple[list[ImageLabelFilesJob], dict[str, str]]:
    """One job per case folder holding one ``X.nrrd`` and one ``Y.seg.nrrd``; returns the jobs and ID -> name."""
    nrrd_by_folder: dict[Path, list[Path]] = defaultdict(list)
    for path in sorted(source.rglob("*.nrrd")):
        nrrd_by_folder[path.parent].append(path)
    if not nrrd_by_folder:
        raise ConversionError(f"{source}: no .nrrd files (expected e.g. KiTS/K1/K1.nrrd and K1.seg.nrrd)")
    jobs, names, origin = [], {}, defaultdict(list)
    for folder, paths in sorted(nrrd_by_folder.items()):
        segs = [p for p in paths if p.name.endswith(".seg.nrrd")]
        images = [p for p in paths if not p.name.endswith(".seg.nrrd")]
        if len(segs) != 1 or len(images) != 1:
            raise ConversionError(
                f"{folder}: a case folder needs one image .nrrd and one .seg.nrrd, found {[p.name for p in paths]}"
            )
        case_id = safe_case_id(folder.name)
        if not case_id:
            raise ConversionError(f"{folder}: cannot derive a case ID from the folder name")
        check_header_shapes(images[0], segs[0])
        origin[case_id].append(folder)
        names[case_id] = folder.name
        subset = "Ts" if folder.name in TEST_CASES else "Tr"
        jobs.append(ImageLabelFilesJob(case_id, subset, images[0], segs[0], binarise=True))
    check_unique([j.case_id for j in jobs], origin)
    check_published_cases(TEST_CASES, [names[j.case_id] for j in jobs], "ParaTransCNN test cases", source)
    return jobs, names


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


def plan_avt(source: Path, spacing: Sequence[float] | None = None) -> ConversionPlan:
    """Detect the layout of ``source`` and collect its cases, split and metadata.

    Raises:
        ConversionError: If neither layout is found or the source fails a structural check.
    """
    require_folder(source, "the AVT release")
    train_folder, test_folder = first_existing(source, TRAIN_FOLDERS), first_existing(source, TEST_FOLDERS)
    extra_json: dict[str, object]
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
            else "training spacing 1x1x1: the slices store none (pass --spacing to set one)"
        )
        description = (
            "AVT aorta CTA from the papers' 2D layout: training slices (only those containing aorta) stacked in "
            f"slice-number order without filling the gaps, so train with the 2d configuration only; {spacing_note}; "
            f"test volumes with their stored origin, direction and spacing. {CT_NOTE}"
        )
        extra_json = {"source_layout": "2d", "training_slice_numbers": slice_numbers}
    else:
        if spacing is not None:
            raise ConversionError(f"{source}: --spacing is only for the 2D layout; the figshare files carry spacing")
        jobs, names = collect_figshare(source)
        description = (
            "AVT aorta CTA from the figshare release (KiTS, Rider, Dongyang): any non-zero mask voxel is aorta; "
            f"spacing, origin and direction from the release. {CT_NOTE}"
        )
        extra_json = {"source_layout": "figshare"}
    training_ids = sorted(j.case_id for j in jobs if j.subset == "Tr")
    return ConversionPlan(
        jobs=list(jobs),
        channel_names={0: "CT"},
        labels=dict(LABELS),
        splits=five_fold_splits(training_ids),
        description=f"{description} Split: ParaTransCNN's 18 test cases in imagesTs/labelsTs, 5 folds over the rest.",
        source=source,
        reference="https://doi.org/10.6084/m9.figshare.14806362",
        extra_json={**extra_json, "original_case_names": dict(sorted(names.items()))},
    )


def convert_avt(
    source: Path,
    dataset_id: int = DEFAULT_DATASET_ID,
    name: str = DEFAULT_NAME,
    spacing: Sequence[float] | None = None,
    num_processes: int = 1,
    overwrite: bool = False,
) -> Path:
    """Convert an AVT release into ``$nnUNet_raw/DatasetXXX_Name`` and write ParaTransCNN's split.

    Returns:
        The dataset folder.
    """
    check_target(dataset_id, name, overwrite, Path(source))
    plan = plan_avt(Path(source), spacing)
    return execute_plan(plan, dataset_id, name, num_processes, overwrite)


def main(argv: Sequence[str] | None = None) -> int:
    """Console entry point ``nnUNetv2_resunet_convert_avt``."""
    parser = build_parser(
        "Convert the Aortic Vessel Tree (AVT) CTA collection (figshare release or the papers' 2D npz/h5 layout) into "
        "nnU-Net raw format with ParaTransCNN's train/test split.",
        DEFAULT_DATASET_ID,
        DEFAULT_NAME,
    )
    add_spacing_argument(parser, "the 2D layout's training slices")
    args = parser.parse_args(argv)
    return run_cli(
        lambda: convert_avt(args.input, args.dataset_id, args.name, args.spacing, args.num_processes, args.overwrite)
    )
