"""``nnUNetv2_resunet_convert_synapse``: the Synapse multi-organ CT (BTCV) into nnU-Net raw format, TransUNet's split.

Two source layouts, detected from the folder given with ``-i``:

* TransUNet's release: ``train_npz/caseXXXX_sliceNNN.npz`` (2D slices, keys ``image``, ``label``) and
  ``test_vol_h5/caseXXXX.npy.h5`` (volumes stored slice-first, keys ``image``, ``label``). Training slices are
  stacked back into one volume per case in slice-number order; the 12 test volumes go to imagesTs/labelsTs. The
  release stores no spacing: 1x1x1 unless ``-spacing`` is given.
* The raw BTCV release: ``Training/img/imgXXXX.nii.gz`` and ``Training/label/labelXXXX.nii.gz`` (13 organs), mapped
  to TransUNet's 8 organs, with the release's spacing, origin and direction, split like TransUNet.
"""

from __future__ import annotations

import re
from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import SimpleITK as sitk

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
from .jobs import H5VolumeJob, SliceStackJob, check_header_shapes, write_case
from .reading import check_finite, checked_labels, h5_keys_and_shapes, label_on_image_grid, npz_keys, read_image
from .splits import check_published_cases, compare_training_set, five_fold_splits

DEFAULT_DATASET_ID = 801
DEFAULT_NAME = "Synapse"

#: TransUNet's test cases (lists_Synapse/test_vol.txt); the other 18 labelled BTCV cases are its training set.
TEST_CASES: tuple[str, ...] = tuple(
    f"case{n}" for n in "0001 0002 0003 0004 0008 0022 0025 0029 0032 0035 0036 0038".split()
)
#: TransUNet's 18 training cases (lists_Synapse/train.txt names their slices).
TRAINING_CASES: tuple[str, ...] = tuple(
    f"case{n}"
    for n in "0005 0006 0007 0009 0010 0021 0023 0024 0026 0027 0028 0030 0031 0033 0034 0037 0039 0040".split()
)
TRAINING_REFERENCE = "TransUNet training cases (lists_Synapse/train.txt)"
LABELS: dict[str, int] = {
    "background": 0,
    "aorta": 1,
    "gallbladder": 2,
    "kidney_left": 3,
    "kidney_right": 4,
    "liver": 5,
    "pancreas": 6,
    "spleen": 7,
    "stomach": 8,
}
#: BTCV label value of each of TransUNet's organs, in TransUNet's order (aorta .. stomach -> 1 .. 8).
BTCV_LABELS_OF_ORGANS: tuple[int, ...] = (8, 4, 3, 2, 6, 11, 1, 7)
BTCV_MAX_LABEL = 13
NUM_ORGANS = len(BTCV_LABELS_OF_ORGANS)

TRAIN_SLICE_PATTERN = re.compile(r"(case\d{4})_slice(\d+)\.npz")
TEST_VOLUME_PATTERN = re.compile(r"(case\d{4})(?:\.npy)?\.h5")
BTCV_IMAGE_PATTERN = re.compile(r"img(\d{4})\.nii(?:\.gz)?")
BTCV_LABEL_PATTERN = re.compile(r"label(\d{4})\.nii(?:\.gz)?")
TRAIN_FOLDERS = ("train_npz", "train")
TEST_FOLDERS = ("test_vol_h5", "test_vol")

CT_NOTE = (
    "Channel 'CT' (nnU-Net's CT normalisation: global foreground percentile clipping and z-scoring). For TransUNet's "
    "release the intensities are already clipped to [-125, 275] HU and scaled to [0, 1] by the same fixed linear map "
    "for every case, so a global scheme stays consistent across cases and 'CT' remains the right choice."
)


def btcv_lookup_table() -> np.ndarray:
    """Array mapping each BTCV label value (0..13) to TransUNet's (0..8); organs outside the 8 become background."""
    table = np.zeros(BTCV_MAX_LABEL + 1, dtype=np.uint8)
    table[list(BTCV_LABELS_OF_ORGANS)] = np.arange(1, NUM_ORGANS + 1, dtype=np.uint8)
    return table


@dataclass(frozen=True)
class BtcvJob(CaseJob):
    """A labelled case of the raw BTCV release."""

    image_path: Path = Path()
    label_path: Path = Path()

    def convert(self, output_folder: Path) -> None:
        """Read image and label, map the label to TransUNet's 8 organs, write both with the image geometry."""
        image = read_image(self.image_path)
        image_array = sitk.GetArrayFromImage(image)
        check_finite(image_array, self.image_path)
        label = label_on_image_grid(read_image(self.label_path), image, self.label_path, self.image_path)
        label_array = checked_labels(label, BTCV_MAX_LABEL, self.label_path)
        write_case(output_folder, self, image_array, btcv_lookup_table()[label_array], Geometry.of_image(image))


def _matching_files(folder: Path, pattern: re.Pattern[str], suffixes: Sequence[str]) -> dict[Path, re.Match[str]]:
    """Files of ``folder`` whose names match ``pattern``; other files with one of ``suffixes`` are an error."""
    found = {}
    for path in sorted(folder.iterdir()):
        match = pattern.fullmatch(path.name)
        if match:
            found[path] = match
        elif path.is_file() and path.name.endswith(tuple(suffixes)):
            raise ConversionError(f"{path}: unexpected file name (expected {pattern.pattern})")
    return found


def collect_transunet_training(folder: Path, geometry: Geometry) -> list[SliceStackJob]:
    """One job per training case, its slices sorted by number; slice numbers must run 0..N-1 without gaps."""
    slices: dict[str, dict[int, list[Path]]] = defaultdict(lambda: defaultdict(list))
    for path, match in _matching_files(folder, TRAIN_SLICE_PATTERN, (".npz",)).items():
        slices[match.group(1)][int(match.group(2))].append(path)
    if not slices:
        raise ConversionError(f"{folder}: no caseXXXX_sliceNNN.npz files")
    jobs = []
    for case_id, by_number in sorted(slices.items()):
        for number, paths in by_number.items():
            if len(paths) > 1:
                raise ConversionError(f"duplicate cases: slice {number} of {case_id} is in {[str(p) for p in paths]}")
        missing = sorted(set(range(max(by_number) + 1)) - set(by_number))
        if missing:
            raise ConversionError(f"{folder}: {case_id} lacks slices {missing[:20]} (slices must run 0..N-1)")
        ordered = tuple(by_number[n][0] for n in sorted(by_number))
        for path in ordered:
            absent = [k for k in ("image", "label") if k not in npz_keys(path)]
            if absent:
                raise ConversionError(f"{path}: missing keys {absent} (has {sorted(npz_keys(path))})")
        jobs.append(SliceStackJob(case_id, "Tr", slice_paths=ordered, max_label=NUM_ORGANS, geometry=geometry))
    return jobs


def collect_transunet_test(folder: Path, geometry: Geometry) -> list[H5VolumeJob]:
    """One job per test volume; keys and shapes are checked from the h5 metadata."""
    found = _matching_files(folder, TEST_VOLUME_PATTERN, (".h5",))
    case_paths: dict[str, list[Path]] = defaultdict(list)
    for path, match in found.items():
        case_paths[match.group(1)].append(path)
    check_unique([c for c, paths in case_paths.items() for _ in paths], case_paths)
    jobs = []
    for case_id, (path,) in sorted(case_paths.items()):
        shapes = h5_keys_and_shapes(path, ("image", "label"))
        if shapes["image"] != shapes["label"]:
            raise ConversionError(f"{path}: image shape {shapes['image']} != label shape {shapes['label']}")
        jobs.append(H5VolumeJob(case_id, "Ts", path=path, max_label=NUM_ORGANS, geometry=geometry))
    return jobs


def check_transunet_split(train_ids: Sequence[str], test_ids: Sequence[str], source: Path) -> None:
    """The test volumes must be exactly TransUNet's 12, and no training case may also be a test case."""
    check_published_cases(TEST_CASES, test_ids, "TransUNet test cases", source)
    extra = sorted(set(test_ids) - set(TEST_CASES))
    if extra:
        raise ConversionError(f"{source}: test volumes {extra} are not in TransUNet's test list {list(TEST_CASES)}")
    both = sorted(set(train_ids) & set(test_ids))
    if both:
        raise ConversionError(f"{source}: duplicate cases {both} are both training slices and test volumes")


def collect_btcv(training: Path) -> list[BtcvJob]:
    """Pair ``img/imgXXXX`` with ``label/labelXXXX``; sizes are checked from the headers."""
    images = _matching_files(require_folder(training / "img", "BTCV images"), BTCV_IMAGE_PATTERN, (".nii", ".nii.gz"))
    labels = _matching_files(require_folder(training / "label", "BTCV labels"), BTCV_LABEL_PATTERN, (".nii", ".gz"))
    image_of = defaultdict(list)
    label_of = defaultdict(list)
    for path, match in images.items():
        image_of[f"case{match.group(1)}"].append(path)
    for path, match in labels.items():
        label_of[f"case{match.group(1)}"].append(path)
    check_unique([c for c, paths in image_of.items() for _ in paths], image_of)
    check_unique([c for c, paths in label_of.items() for _ in paths], label_of)
    if not image_of:
        raise ConversionError(f"{training / 'img'}: no imgXXXX.nii.gz files")
    unpaired = sorted(set(image_of) ^ set(label_of))
    if unpaired:
        files = [str(p) for c in unpaired for p in image_of.get(c, []) + label_of.get(c, [])]
        raise ConversionError(f"{training}: images and labels do not pair up; unpaired: {files}")
    jobs = []
    for case_id in sorted(image_of):
        image_path, label_path = image_of[case_id][0], label_of[case_id][0]
        check_header_shapes(image_path, label_path)
        subset = "Ts" if case_id in TEST_CASES else "Tr"
        jobs.append(BtcvJob(case_id, subset, image_path=image_path, label_path=label_path))
    return jobs


BTCV_FOLDERS = ("Training", "RawData/Training")
LAYOUTS = (
    Layout(
        "TransUNet's release: train_npz/ (or train/) with test_vol_h5/ (or test_vol/)",
        lambda f: first_existing(f, TRAIN_FOLDERS) is not None and first_existing(f, TEST_FOLDERS) is not None,
    ),
    Layout(
        "the raw BTCV release: Training/img and Training/label (or under RawData/)",
        lambda f: first_existing(f, BTCV_FOLDERS) is not None,
    ),
)


def _training_set(train_ids: Sequence[str], source: Path) -> tuple[dict[str, object], list[str]]:
    return compare_training_set(TRAINING_CASES, train_ids, "TransUNet training cases", TRAINING_REFERENCE, source)


def plan_synapse(source: Path, spacing: Sequence[float] | None = None) -> ConversionPlan:
    """Detect the layout of ``source`` and collect its cases, split and metadata.

    Raises:
        ConversionError: If neither layout is found or the source fails a structural check.
    """
    require_folder(source, "the Synapse release")
    train_folder, test_folder = first_existing(source, TRAIN_FOLDERS), first_existing(source, TEST_FOLDERS)
    btcv_training = first_existing(source, BTCV_FOLDERS)
    if train_folder is not None or test_folder is not None:
        if train_folder is None or test_folder is None:
            raise ConversionError(
                f"{source}: TransUNet's release needs both a training folder ({' or '.join(TRAIN_FOLDERS)}) and a "
                f"test folder ({' or '.join(TEST_FOLDERS)}); found only {(train_folder or test_folder).name}"
            )
        geometry = spacing_geometry(spacing)
        train_jobs = collect_transunet_training(train_folder, geometry)
        test_jobs = collect_transunet_test(test_folder, geometry)
        train_ids, test_ids = [j.case_id for j in train_jobs], [j.case_id for j in test_jobs]
        check_transunet_split(train_ids, test_ids, source)
        training_set, warnings = _training_set(train_ids, source)
        spacing_note = (
            f"voxel spacing {list(geometry.spacing)} (x, y, z) given on the command line"
            if spacing is not None
            else "voxel spacing 1x1x1: TransUNet's release stores none (pass -spacing to set one)"
        )
        return ConversionPlan(
            jobs=[*train_jobs, *test_jobs],
            channel_names={0: "CT"},
            labels=dict(LABELS),
            splits=five_fold_splits(train_ids),
            description=f"Synapse multi-organ CT from TransUNet's release (training slices restacked per case in "
            f"slice order, test volumes as stored); {spacing_note}. {CT_NOTE}",
            source=source,
            reference="https://github.com/Beckschen/TransUNet",
            extra_json={"source_layout": "transunet", "spacing_from_release": False, "training_set": training_set},
            warnings=warnings,
        )
    if btcv_training is not None:
        if spacing is not None:
            raise ConversionError(f"{source}: -spacing is only for TransUNet's release; BTCV carries its own spacing")
        jobs = collect_btcv(btcv_training)
        ids = [j.case_id for j in jobs]
        check_published_cases(TEST_CASES, ids, "TransUNet test cases", btcv_training)
        train_ids = [j.case_id for j in jobs if j.subset == "Tr"]
        training_set, warnings = _training_set(train_ids, btcv_training)
        return ConversionPlan(
            jobs=jobs,
            channel_names={0: "CT"},
            labels=dict(LABELS),
            splits=five_fold_splits(train_ids),
            description="Synapse multi-organ CT from the raw BTCV release (Training/img, Training/label), labels "
            f"mapped BTCV {list(BTCV_LABELS_OF_ORGANS)} -> 1..8, other organs background; spacing, origin and "
            f"direction from the release; TransUNet's test cases in imagesTs/labelsTs. {CT_NOTE}",
            source=source,
            reference="https://www.synapse.org/#!Synapse:syn3193805",
            extra_json={"source_layout": "btcv", "spacing_from_release": True, "training_set": training_set},
            warnings=warnings,
        )
    raise no_layout_found(source, "Synapse", LAYOUTS)


def convert_synapse(
    source: Path,
    dataset_id: int = DEFAULT_DATASET_ID,
    name: str = DEFAULT_NAME,
    spacing: Sequence[float] | None = None,
    num_processes: int = 1,
    overwrite: bool = False,
) -> Path:
    """Convert a Synapse release into ``$nnUNet_raw/DatasetXXX_Name`` and write TransUNet's split.

    Returns:
        The dataset folder.
    """
    check_target(dataset_id, name, overwrite, Path(source))
    plan = plan_synapse(Path(source), spacing)
    return execute_plan(plan, dataset_id, name, num_processes, overwrite)


def main(argv: Sequence[str] | None = None) -> int:
    """Console entry point ``nnUNetv2_resunet_convert_synapse``."""
    parser = build_parser(
        "nnUNetv2_resunet_convert_synapse",
        "Convert the Synapse multi-organ CT release (TransUNet's npz/h5 or raw BTCV) into nnU-Net raw format with "
        "TransUNet's train/test split.",
        DEFAULT_DATASET_ID,
        DEFAULT_NAME,
    )
    add_spacing_argument(parser, "TransUNet's release")
    return run_cli(
        parser,
        argv,
        lambda args: convert_synapse(
            args.input, args.dataset_id, args.name, args.spacing, args.num_processes, args.overwrite
        )
    )
