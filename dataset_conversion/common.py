"""What the three converters share: the command line skeleton, reading and checking source files, writing a case,
checking the target, dataset.json, splits_final.json and the parallel map.

A converter collects its source into a :class:`ConversionPlan` (cheap structural checks: folders, names, pairs,
duplicates, keys and shapes where headers allow), then :func:`execute_plan` converts every case in parallel into a
hidden work folder inside ``$nnUNet_raw`` (value checks happen there, while each case is read once), writes
dataset.json and the split, and only when every case succeeded swaps dataset and split in together
(:mod:`.transaction`). Any error or interrupt removes the work folders, so no half-written dataset is ever visible,
and the source is only ever read.
"""

from __future__ import annotations

import argparse
import gzip
import json
import multiprocessing
import os
import re
import signal
import sys
import uuid
import zipfile
import zlib
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field, replace
from functools import partial
from pathlib import Path
from typing import Any

import h5py
import numpy as np
import SimpleITK as sitk
from nnunetv2.configuration import default_num_processes
from nnunetv2.dataset_conversion.generate_dataset_json import generate_dataset_json
from nnunetv2.paths import nnUNet_preprocessed, nnUNet_raw, nnUNet_results
from tqdm import tqdm

from .transaction import (
    Interrupted,
    Transaction,
    TransactionError,
    init_worker,
    interrupts_deferred,
    interrupts_raise,
    owner_description,
    recover_leftovers,
    report_leftovers,
)

IDENTITY_DIRECTION: tuple[float, ...] = (1.0, 0.0, 0.0, 0.0, 1.0, 0.0, 0.0, 0.0, 1.0)
FILE_ENDING = ".nii.gz"
CROSSVAL_SEED = 12345
NUM_FOLDS = 5


class ConversionError(ValueError):
    """A source that cannot be converted; the message names the offending file or folder and the problem."""


@dataclass(frozen=True)
class Geometry:
    """Physical placement of a volume, in SimpleITK's (x, y, z) order.

    Attributes:
        spacing: Voxel size (x, y, z) in mm.
        origin: World position of the first voxel (x, y, z).
        direction: Row-major 3x3 direction cosine matrix, 9 values.
    """

    spacing: tuple[float, float, float] = (1.0, 1.0, 1.0)
    origin: tuple[float, float, float] = (0.0, 0.0, 0.0)
    direction: tuple[float, ...] = IDENTITY_DIRECTION

    @classmethod
    def of_image(cls, image: sitk.Image) -> Geometry:
        """Geometry of a 3D SimpleITK image."""
        return cls(tuple(image.GetSpacing()), tuple(image.GetOrigin()), tuple(image.GetDirection()))


@dataclass(frozen=True)
class CaseJob:
    """One case to convert. Subclasses carry the source paths and implement :meth:`convert`.

    Attributes:
        case_id: File-name-safe case ID.
        subset: ``"Tr"`` (imagesTr/labelsTr) or ``"Ts"`` (imagesTs, and labelsTs where labels exist).
    """

    case_id: str
    subset: str

    def convert(self, output_folder: Path) -> dict[str, Any] | None:
        """Read, check and write this case into ``output_folder``; raise :class:`ConversionError` on bad input.

        Returns:
            None, or notes to record in dataset.json: ``{key: value}`` becomes ``dataset[key][case_id] = value``.
        """
        raise NotImplementedError


@dataclass
class ConversionPlan:
    """Everything a converter decided before converting: the cases, the labels, the split and the metadata.

    Attributes:
        jobs: Cases to convert, training and test.
        channel_names: nnU-Net channel names, e.g. ``{0: "CT"}``; they pick nnU-Net's normalisation.
        labels: nnU-Net label dict, ``{"background": 0, ...}``.
        splits: Content of splits_final.json (list of ``{"train": [...], "val": [...]}``).
        description: Free text for dataset.json (where the data came from, spacing and normalisation choices).
        extra_json: Further dataset.json keys (e.g. mappings back to the original case names).
        source: The folder the user passed, checked against the output location.
        warnings: Lines printed before converting (e.g. cases of a published list that are missing).
        check_notes: Called with the cases' notes after converting; returns further warning lines.
    """

    jobs: list[CaseJob]
    channel_names: dict[int, str]
    labels: dict[str, int]
    splits: list[dict[str, list[str]]]
    description: str
    source: Path
    reference: str = ""
    extra_json: dict[str, Any] = field(default_factory=dict)
    warnings: list[str] = field(default_factory=list)
    check_notes: Callable[[dict[str, dict[str, Any]]], list[str]] | None = None

    @property
    def training_case_ids(self) -> list[str]:
        return sorted(j.case_id for j in self.jobs if j.subset == "Tr")

    @property
    def test_case_ids(self) -> list[str]:
        return sorted(j.case_id for j in self.jobs if j.subset == "Ts")


# ----------------------------------------------------------------------------------------------------------------------
# Names and locations
# ----------------------------------------------------------------------------------------------------------------------


def dataset_folder_name(dataset_id: int, name: str) -> str:
    """``DatasetXXX_Name`` as nnU-Net expects it.

    Raises:
        ConversionError: If the ID is outside 1..999 or the name has characters other than letters, digits, '-'.
    """
    if not 1 <= dataset_id <= 999:
        raise ConversionError(f"dataset ID must be in 1..999, got {dataset_id}")
    if not re.fullmatch(r"[A-Za-z0-9-]+", name):
        raise ConversionError(f"dataset name may only contain letters, digits and '-', got {name!r}")
    return f"Dataset{dataset_id:03d}_{name}"


def safe_case_id(original: str) -> str:
    """File-name-safe case ID: runs of anything but letters and digits become one '_', e.g. 'R7 (AD)' -> 'R7_AD'."""
    return re.sub(r"[^A-Za-z0-9]+", "_", original).strip("_")


def _env_folder(env_path: Any) -> Path:
    value = env_path.get()
    if not value:
        raise ConversionError(
            f"environment variable {env_path.env_var_name} is not set; set it to the folder nnU-Net should use "
            "(see nnU-Net's documentation/setting_up_paths.md)"
        )
    return Path(value)


def raw_root() -> Path:
    """``$nnUNet_raw``, read when called (nnunetv2.paths reads the environment lazily)."""
    return _env_folder(nnUNet_raw)


def preprocessed_root() -> Path:
    """``$nnUNet_preprocessed``, read when called."""
    return _env_folder(nnUNet_preprocessed)


def _overlaps(a: Path, b: Path) -> bool:
    a, b = a.resolve(), b.resolve()
    return a == b or a in b.parents or b in a.parents


def require_folder(path: Path, what: str) -> Path:
    """Return ``path`` if it is a folder, else raise naming it and what was expected there."""
    if not path.is_dir():
        raise ConversionError(f"{path}: missing folder ({what})")
    return path


@dataclass(frozen=True)
class Layout:
    """A source layout a converter reads: a description for messages and a test of whether a folder holds it."""

    description: str
    found_in: Callable[[Path], bool]


def no_layout_found(source: Path, release: str, layouts: Sequence[Layout]) -> ConversionError:
    """The error for a source that holds none of ``layouts``, pointing one level up or down where one is found."""
    looked = "; ".join(layout.description for layout in layouts)

    def holds(folder: Path) -> Layout | None:
        return next((layout for layout in layouts if folder.is_dir() and layout.found_in(folder)), None)

    hint = ""
    candidates = [source.parent] + (sorted(p for p in source.iterdir() if p.is_dir()) if source.is_dir() else [])
    for candidate in candidates:
        layout = holds(candidate)
        if layout is not None:
            where = "its parent" if candidate == source.parent else "its subfolder"
            hint = f". {where} {candidate} holds {layout.description.split(':')[0]}: pass -i '{candidate}'"
            break
    return ConversionError(f"{source}: no {release} layout found; looked in it for {looked}{hint}")


def first_existing(folder: Path, candidates: Sequence[str]) -> Path | None:
    """The first of ``folder/c`` for c in ``candidates`` that is a folder, or None."""
    for candidate in candidates:
        if (folder / candidate).is_dir():
            return folder / candidate
    return None


def check_unique(case_ids: Iterable[str], origin: dict[str, list[Path]] | None = None) -> None:
    """Raise if a case ID occurs twice; ``origin`` maps IDs to the files they came from, for the message."""
    seen: dict[str, int] = {}
    for case_id in case_ids:
        seen[case_id] = seen.get(case_id, 0) + 1
    duplicates = sorted(c for c, n in seen.items() if n > 1)
    if duplicates:
        where = "; ".join(f"{c}: {', '.join(map(str, (origin or {}).get(c, [])))}" for c in duplicates)
        raise ConversionError(f"duplicate cases {duplicates} ({where})")


# ----------------------------------------------------------------------------------------------------------------------
# Reading and checking
# ----------------------------------------------------------------------------------------------------------------------


def h5_keys_and_shapes(path: Path, keys: Sequence[str]) -> dict[str, tuple[int, ...]]:
    """Shapes of ``keys`` in an h5 file, from its metadata only.

    Raises:
        ConversionError: If the file cannot be opened or lacks a key.
    """
    try:
        with h5py.File(path, "r") as f:
            missing = [k for k in keys if k not in f]
            present = sorted(f.keys())
            shapes = {k: tuple(f[k].shape) for k in keys if k in f}
    except OSError as e:
        raise ConversionError(f"{path}: cannot read h5 file ({e})") from e
    if missing:
        raise ConversionError(f"{path}: missing keys {missing} (has {present})")
    return shapes


def read_h5(path: Path, keys: Sequence[str]) -> dict[str, np.ndarray]:
    """Read ``keys`` of an h5 file as arrays.

    Raises:
        ConversionError: If the file is corrupt or truncated, or lacks a key.
    """
    h5_keys_and_shapes(path, keys)
    try:
        with h5py.File(path, "r") as f:
            return {k: np.asarray(f[k][()]) for k in keys}
    except (OSError, KeyError) as e:
        raise ConversionError(f"{path}: cannot read h5 data ({e})") from e


def npz_keys(path: Path) -> list[str]:
    """Array names in an npz file, from its zip directory only.

    Raises:
        ConversionError: If the file is not a readable zip archive.
    """
    try:
        with zipfile.ZipFile(path) as z:
            return [n[: -len(".npy")] for n in z.namelist() if n.endswith(".npy")]
    except (OSError, zipfile.BadZipFile) as e:
        raise ConversionError(f"{path}: cannot read npz file ({e})") from e


def read_npz(path: Path, keys: Sequence[str]) -> dict[str, np.ndarray]:
    """Read ``keys`` of an npz file.

    Raises:
        ConversionError: If the file is corrupt or truncated, or lacks a key.
    """
    present = npz_keys(path)
    missing = [k for k in keys if k not in present]
    if missing:
        raise ConversionError(f"{path}: missing keys {missing} (has {sorted(present)})")
    try:
        with np.load(path, allow_pickle=False) as data:
            return {k: np.asarray(data[k]) for k in keys}
    except (OSError, ValueError, EOFError, zipfile.BadZipFile) as e:
        raise ConversionError(f"{path}: cannot read npz data ({type(e).__name__}: {e})") from e


def gzip_data_length(path: Path) -> int:
    """Uncompressed length of a gzip file, checking the stream to its end (and its CRC).

    Raises:
        ConversionError: If the file is truncated or corrupt.
    """
    length = 0
    try:
        with gzip.open(path, "rb") as f:
            while chunk := f.read(1 << 24):
                length += len(chunk)
    except (OSError, EOFError, zlib.error) as e:
        raise ConversionError(f"{path}: cannot read image (truncated or corrupt gzip data: {e})") from e
    return length


def check_nifti_complete(path: Path) -> None:
    """Raise if a NIfTI file holds fewer bytes than its header promises.

    SimpleITK's NIfTI reader zero-fills a truncated ``.nii`` or ``.nii.gz`` without complaint, so the data length is
    checked against the header first (for ``.nii.gz`` by decompressing the stream, which zlib does quickly).
    """
    reader = sitk.ImageFileReader()
    reader.SetFileName(str(path))
    try:
        reader.ReadImageInformation()
        vox_offset = int(float(reader.GetMetaData("vox_offset")))
        bits_per_voxel = int(reader.GetMetaData("bitpix"))
    except RuntimeError as e:
        raise ConversionError(f"{path}: cannot read image header ({str(e).strip().splitlines()[-1]})") from e
    expected = vox_offset + int(np.prod(reader.GetSize())) * bits_per_voxel // 8
    found = gzip_data_length(path) if path.name.endswith(".gz") else path.stat().st_size
    if found < expected:
        raise ConversionError(f"{path}: cannot read image (truncated: {found} bytes of data, header needs {expected})")
    if reader.GetMetaData("datatype") in NIFTI_FLOAT_DATATYPES:
        _check_nifti_finite(path)


#: NIfTI datatype codes of floating-point voxels (float32, float64, float128).
NIFTI_FLOAT_DATATYPES = ("16", "64", "1536")


def _check_nifti_finite(path: Path) -> None:
    """Raise if a floating-point NIfTI file stores NaN or infinite voxels.

    SimpleITK's NIfTI reader turns them into 0 without a word, so they must be counted in the file itself.
    """
    import nibabel  # nnU-Net's dependency; only needed for floating-point NIfTI files

    try:
        data = np.asarray(nibabel.load(str(path)).dataobj.get_unscaled())
    except Exception as e:  # nibabel raises many types on files SimpleITK accepted; name the file either way
        raise ConversionError(f"{path}: cannot read image data ({type(e).__name__}: {e})") from e
    bad = int(np.count_nonzero(~np.isfinite(data)))
    if bad:
        raise ConversionError(f"{path}: image contains {bad} NaN/inf voxels (SimpleITK would silently read them as 0)")


def read_image(path: Path) -> sitk.Image:
    """Read a NIfTI/NRRD file with SimpleITK, naming the file if it is corrupt or truncated."""
    if path.name.endswith((".nii", ".nii.gz")):
        check_nifti_complete(path)
    try:
        return sitk.ReadImage(str(path))
    except RuntimeError as e:
        message = str(e).strip().splitlines()[-1] if str(e).strip() else repr(e)
        raise ConversionError(f"{path}: cannot read image ({message})") from e


def check_volume(array: np.ndarray, path: Path, what: str) -> None:
    """Raise unless ``array`` is a 3D numeric volume."""
    if array.ndim != 3:
        raise ConversionError(f"{path}: {what} must be 3D, got shape {array.shape}")
    if not (np.issubdtype(array.dtype, np.number) or array.dtype == bool):
        raise ConversionError(f"{path}: {what} has non-numeric dtype {array.dtype}")


def check_finite(image: np.ndarray, path: Path) -> None:
    """Raise if the image holds NaN or infinite values (nnU-Net cannot train on them)."""
    if np.issubdtype(image.dtype, np.floating) and not np.isfinite(image).all():
        raise ConversionError(f"{path}: image contains {int(np.count_nonzero(~np.isfinite(image)))} NaN/inf voxels")


def check_same_shape(image: np.ndarray, label: np.ndarray, path: Path) -> None:
    """Raise if image and label shapes differ."""
    if image.shape != label.shape:
        raise ConversionError(f"{path}: image shape {image.shape} != label shape {label.shape}")


def checked_labels(label: np.ndarray, max_label: int, path: Path) -> np.ndarray:
    """Label map as uint8 after checking it holds only the integers 0..``max_label``.

    Raises:
        ConversionError: On non-integer values or values outside 0..max_label, listing the offending values.
    """
    values = np.unique(label)
    if np.issubdtype(values.dtype, np.floating):
        non_integer = values[~np.isfinite(values) | (values != np.round(values))]
        if non_integer.size:
            raise ConversionError(f"{path}: label values must be integers, found {non_integer[:10].tolist()}")
    bad = values[(values < 0) | (values > max_label)]
    if bad.size:
        raise ConversionError(
            f"{path}: label values out of range 0..{max_label}: {bad[:10].tolist()} (all values {values[:20].tolist()})"
        )
    return label.astype(np.uint8, copy=False)


def _geometry_differences(label: Any, image: Any) -> list[str]:
    """What differs between two grids' spacing, origin and direction (sitk images or header readers), as text."""
    differences = []
    if not np.allclose(label.GetSpacing(), image.GetSpacing(), rtol=1e-3, atol=1e-4):
        differences.append(f"spacing {_rounded(label.GetSpacing())} vs {_rounded(image.GetSpacing())}")
    if not np.allclose(label.GetDirection(), image.GetDirection(), atol=1e-3):
        differences.append(f"direction {_rounded(label.GetDirection())} vs {_rounded(image.GetDirection())}")
    if not np.allclose(label.GetOrigin(), image.GetOrigin(), rtol=0, atol=1e-2):
        differences.append(f"origin {_rounded(label.GetOrigin())} vs {_rounded(image.GetOrigin())}")
    return differences


def _rounded(values: Sequence[float]) -> tuple[float, ...]:
    return tuple(round(float(v), 4) + 0.0 for v in values)


def subgrid_offset(label: Any, image: Any, label_path: Path, image_path: Path) -> tuple[int, int, int]:
    """Voxel offset (x, y, z) of a label grid that lies inside the image grid (as 3D Slicer crops segmentations).

    Args:
        label, image: sitk images or header readers (GetSize, GetSpacing, GetOrigin, GetDirection).

    Raises:
        ConversionError: If spacing or direction differ, the label's voxels fall between the image's, or the label
            grid reaches outside the image.
    """
    differences = [d for d in _geometry_differences(label, image) if not d.startswith("origin")]
    if differences:
        raise ConversionError(
            f"{label_path}: label grid {label.GetSize()[::-1]} differs from image {image_path} {image.GetSize()[::-1]} "
            f"and cannot be placed on it: {'; '.join(differences)}"
        )
    direction = np.asarray(image.GetDirection(), dtype=float).reshape(3, 3)
    physical = np.asarray(label.GetOrigin(), dtype=float) - np.asarray(image.GetOrigin(), dtype=float)
    index = np.linalg.solve(direction, physical) / np.asarray(image.GetSpacing(), dtype=float)
    offset = np.round(index)
    if not np.allclose(index, offset, atol=1e-2):
        raise ConversionError(
            f"{label_path}: label grid starts between the voxels of image {image_path} (at voxel {_rounded(index)}); "
            "it cannot be placed without resampling"
        )
    end = offset + np.asarray(label.GetSize())
    if (offset < 0).any() or (end > np.asarray(image.GetSize())).any():
        raise ConversionError(
            f"{label_path}: label grid (voxels {offset.astype(int).tolist()} to {(end - 1).astype(int).tolist()}) "
            f"reaches outside the image {image_path} of size {list(image.GetSize())}"
        )
    return int(offset[0]), int(offset[1]), int(offset[2])


def label_on_image_grid(label: sitk.Image, image: sitk.Image, label_path: Path, image_path: Path) -> np.ndarray:
    """The label's voxels on the image's grid, as a (z, y, x[, components]) array.

    Identical grids (up to float noise) keep the label voxels as they are; a label stored on a sub-grid with the same
    spacing and direction (as 3D Slicer saves cropped segmentations) is placed into an empty label of the image's size
    at its voxel offset, which is exact; anything else is an error naming what differs.
    """
    if label.GetDimension() != 3 or image.GetDimension() != 3:
        raise ConversionError(
            f"{label_path}: expected 3D image and label, got {image.GetDimension()}D image {image_path} and "
            f"{label.GetDimension()}D label"
        )
    array = sitk.GetArrayFromImage(label)
    if label.GetSize() == image.GetSize():
        differences = _geometry_differences(label, image)
        if differences:
            raise ConversionError(
                f"{label_path}: label geometry differs from image {image_path}: {'; '.join(differences)}"
            )
        return array
    x, y, z = subgrid_offset(label, image, label_path, image_path)
    placed = np.zeros(image.GetSize()[::-1] + array.shape[3:], dtype=array.dtype)
    depth, height, width = array.shape[:3]
    placed[z:z + depth, y:y + height, x:x + width] = array
    return placed


# ----------------------------------------------------------------------------------------------------------------------
# Writing
# ----------------------------------------------------------------------------------------------------------------------


def write_volume(array: np.ndarray, geometry: Geometry, path: Path) -> None:
    """Write a (z, y, x) array as a compressed NIfTI with the given geometry.

    ``sitk.GetArrayFromImage(sitk.ReadImage(path))`` gives ``array`` back exactly.
    """
    image = sitk.GetImageFromArray(np.ascontiguousarray(array))
    image.SetSpacing([float(s) for s in geometry.spacing])
    image.SetOrigin([float(o) for o in geometry.origin])
    image.SetDirection([float(d) for d in geometry.direction])
    try:
        sitk.WriteImage(image, str(path), useCompression=True)
    except RuntimeError as e:
        message = str(e).strip().splitlines()[-1] if str(e).strip() else repr(e)
        raise ConversionError(f"{path}: cannot write ({message}; is the disk full or read-only?)") from e


def write_case(
    output_folder: Path, job: CaseJob, image: np.ndarray, label: np.ndarray | None, geometry: Geometry
) -> None:
    """Write ``images{Tr,Ts}/CASE_0000.nii.gz`` and, when given, ``labels{Tr,Ts}/CASE.nii.gz``."""
    write_volume(image, geometry, output_folder / f"images{job.subset}" / f"{job.case_id}_0000{FILE_ENDING}")
    if label is not None:
        write_volume(label, geometry, output_folder / f"labels{job.subset}" / f"{job.case_id}{FILE_ENDING}")


def _write_json_atomically(content: Any, path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{uuid.uuid4().hex}.tmp")
    try:
        tmp.write_text(json.dumps(content, indent=4) + "\n", encoding="utf-8")
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)


# ----------------------------------------------------------------------------------------------------------------------
# Splits
# ----------------------------------------------------------------------------------------------------------------------


def five_fold_splits(case_ids: Sequence[str]) -> list[dict[str, list[str]]]:
    """nnU-Net's own default 5-fold split (``generate_crossval_split``, seed 12345) over the sorted case IDs."""
    # imported here: sklearn takes seconds to import, and worker processes never need it
    from nnunetv2.utilities.crossval_split import generate_crossval_split

    if len(case_ids) < NUM_FOLDS:
        raise ConversionError(f"need at least {NUM_FOLDS} training cases for {NUM_FOLDS} folds, got {len(case_ids)}")
    splits = generate_crossval_split(sorted(case_ids), seed=CROSSVAL_SEED, n_splits=NUM_FOLDS)
    return [{"train": [str(c) for c in s["train"]], "val": [str(c) for c in s["val"]]} for s in splits]


def check_published_cases(expected: Iterable[str], found: Iterable[str], what: str, source: Path) -> None:
    """Raise if cases of a published split list are missing from the source."""
    missing = sorted(set(expected) - set(found))
    if missing:
        raise ConversionError(f"{source}: {what} missing from the source: {missing}")


def compare_training_set(
    published: Sequence[str], found: Iterable[str], what: str, reference: str, source: Path
) -> tuple[dict[str, Any], list[str]]:
    """Compare a training set with the published one; training sets may be partial, test sets may not.

    Args:
        published: The published training cases (or patients), e.g. TransUNet's 18 Synapse cases.
        found: The same kind of names found in the source.
        what: Plural noun for the message, e.g. "TransUNet training cases".
        reference: Where the published list comes from, recorded in dataset.json.

    Returns:
        The dataset.json entry ``training_set`` (``reference``, ``published`` count, ``missing``, ``unlisted``,
        ``complete``) and warning lines for what is missing or not listed.
    """
    found = set(found)
    missing = sorted(set(published) - found)
    unlisted = sorted(found - set(published))
    warnings = []
    if missing:
        warnings.append(f"{source}: {len(missing)} of the {len(published)} {what} are missing: {missing}; the dataset "
                        "is a partial training set (dataset.json's training_set says so)")
    if unlisted:
        warnings.append(f"{source}: {unlisted} are not among the {len(published)} published {what}; they are used for "
                        "training too")
    entry = {
        "reference": reference,
        "published": len(published),
        "missing": missing,
        "unlisted": unlisted,
        "complete": not missing and not unlisted,
    }
    return entry, warnings


# ----------------------------------------------------------------------------------------------------------------------
# Running a plan
# ----------------------------------------------------------------------------------------------------------------------


def parallel_map(
    function: Callable[[Any], Any], items: Sequence[Any], num_processes: int, desc: str, lock_path: Path | None = None
) -> list[Any]:
    """Apply ``function`` to every item with a progress bar; in ``num_processes`` worker processes when > 1.

    The first exception in any worker stops the map and is re-raised here. Workers share the run's lock
    (``lock_path``), leave Ctrl-C to this process, and exit when this process dies.

    Returns:
        The results, in completion order.
    """
    if num_processes <= 1 or len(items) <= 1:
        # the bar is closed on an error too, instead of printing its last state when the interpreter exits
        with tqdm(items, desc=desc, unit="case", file=sys.stdout) as progress:
            return [function(item) for item in progress]
    # spawn: the parent may hold threads (torch, tqdm's monitor) that fork would copy in a locked state
    with multiprocessing.get_context("spawn").Pool(
        min(num_processes, len(items)),
        initializer=init_worker,
        initargs=(None if lock_path is None else str(lock_path), os.getpid()),
    ) as pool:
        results = pool.imap_unordered(function, items)
        with tqdm(results, total=len(items), desc=desc, unit="case", file=sys.stdout) as progress:
            return list(progress)


def _run_job(job: CaseJob, output_folder: Path) -> tuple[str, dict[str, Any] | None]:
    return job.case_id, job.convert(output_folder)


@dataclass(frozen=True)
class Target:
    """Where a dataset goes, and what an overwrite replaces.

    Attributes:
        raw: ``$nnUNet_raw/DatasetXXX_Name``.
        preprocessed: ``$nnUNet_preprocessed/DatasetXXX_Name``.
        stale: Entries of the preprocessed folder that nnU-Net derived from the dataset being replaced (removed by
            an overwrite, together with the old split).
    """

    raw: Path
    preprocessed: Path
    stale: tuple[str, ...] = ()

    @property
    def splits_file(self) -> Path:
        return self.preprocessed / SPLITS_FILE


SPLITS_FILE = "splits_final.json"
#: What nnU-Net writes into nnUNet_preprocessed/DatasetXXX_Name besides plans and their data folders.
NNUNET_PREPROCESSED_FILES = ("dataset_fingerprint.json", "dataset.json", SPLITS_FILE)
NNUNET_PREPROCESSED_FOLDERS = ("gt_segmentations",)
#: Files of nnU-Net's preprocessed case folders (blosc2, npz, npy arrays and their pickled properties).
PREPROCESSED_ARRAY_SUFFIXES = (".b2nd", ".npz", ".npy", ".pkl")


def _plans_data_folders(path: Path) -> set[str] | None:
    """Data folder names (``data_identifier``) of an nnU-Net plans file, or None if ``path`` is not one."""
    try:
        plans = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    if not isinstance(plans, dict) or not isinstance(plans.get("configurations"), dict) or "plans_name" not in plans:
        return None
    return {
        str(c.get("data_identifier", f"{plans['plans_name']}_{name}"))
        for name, c in plans["configurations"].items()
        if isinstance(c, dict)
    }


def classify_preprocessed(folder: Path) -> tuple[list[str], list[str]]:
    """Split the entries of ``nnUNet_preprocessed/DatasetXXX_Name`` into nnU-Net's own outputs and anything else.

    nnU-Net's outputs (fingerprint, plans, their preprocessed data folders, ``gt_segmentations``, its copy of
    dataset.json, the split) all describe the dataset they were made from, so a re-converted dataset makes them stale:
    nnU-Net reuses an existing fingerprint unless told ``--clean``, and a trainer reads whatever arrays are there.

    Returns:
        (nnU-Net's entries, unrecognised entries), names sorted, folders with a trailing '/'.
    """
    entries = sorted(folder.iterdir())
    data_folders: set[str] = set()
    plans_files = set()
    for entry in entries:
        if entry.is_file() and entry.suffix == ".json" and entry.name not in NNUNET_PREPROCESSED_FILES:
            folders = _plans_data_folders(entry)
            if folders is not None:
                plans_files.add(entry.name)
                data_folders |= folders
    known, unknown = [], []
    for entry in entries:
        name = entry.name
        if entry.is_dir():
            arrays_only = all(
                f.is_file() and f.name.endswith(PREPROCESSED_ARRAY_SUFFIXES) for f in entry.iterdir()
            )
            recognised = name in NNUNET_PREPROCESSED_FOLDERS or name in data_folders or arrays_only
            (known if recognised else unknown).append(f"{name}/")
        else:
            (known if name in NNUNET_PREPROCESSED_FILES or name in plans_files else unknown).append(name)
    return known, unknown


def _require_root(env_path: Any) -> Path:
    root = _env_folder(env_path)
    if not root.is_dir():
        raise ConversionError(
            f"{root}: {env_path.env_var_name} points to a folder that does not exist; create it (mkdir -p '{root}') "
            f"or point {env_path.env_var_name} at your nnU-Net folder (a missing network mount looks like this too)"
        )
    return root


def check_target(dataset_id: int, name: str, overwrite: bool, source: Path, report: bool = True) -> Target:
    """Check where the dataset and its split will go, before any work is done.

    Also finishes or undoes conversions that were killed earlier (see :mod:`.transaction`), printing what it did
    when ``report``.

    Returns:
        The target, with what an overwrite will remove from the preprocessed folder.

    Raises:
        ConversionError: If an env var is unset or names a missing folder, the dataset (or preprocessed data of the
            same name) exists and ``overwrite`` is False, the preprocessed folder holds files we cannot tell are
            stale, another conversion into the same dataset is running, another dataset already uses the ID, or
            the output overlaps the source.
    """
    folder_name = dataset_folder_name(dataset_id, name)
    raw, preprocessed = _require_root(nnUNet_raw), _require_root(nnUNet_preprocessed)
    leftovers = recover_leftovers(raw, preprocessed)
    if report:
        report_leftovers(leftovers)
    if folder_name in leftovers.running:
        work = leftovers.running[folder_name]
        raise ConversionError(
            f"{work}: another conversion into {folder_name} is running ({owner_description(work)}); wait for it "
            "to finish or stop it, then re-run"
        )
    target = Target(raw / folder_name, preprocessed / folder_name)
    prefix = f"Dataset{dataset_id:03d}_"
    for root in (raw, preprocessed):
        others = sorted(p.name for p in root.iterdir() if p.name.startswith(prefix) and p.name != folder_name)
        if others:
            raise ConversionError(
                f"{root}: dataset ID {dataset_id} is already used by {others}; nnU-Net would not know which one "
                f"-d {dataset_id} means. Pick another ID (-d) or remove those folders"
            )
    for out in (target.raw, target.preprocessed):
        if _overlaps(out, source):
            raise ConversionError(f"{source}: the source overlaps the output folder {out}; convert into another place")
    if target.raw.exists() and not overwrite:
        raise ConversionError(f"{target.raw} already exists; pass --overwrite to replace it")
    if target.raw.exists():
        _probe_writable(target.raw)
    if not target.preprocessed.exists():
        return target
    if not target.preprocessed.is_dir():
        raise ConversionError(f"{target.preprocessed}: expected a folder (nnU-Net's preprocessed data), found a file")
    known, unknown = classify_preprocessed(target.preprocessed)
    if not (known or unknown):
        return target
    if not overwrite:
        raise ConversionError(
            f"{target.preprocessed} already exists and holds {known + unknown}, made from an earlier conversion; "
            "pass --overwrite to replace the dataset and clear them"
        )
    if unknown:
        raise ConversionError(
            f"{target.preprocessed}: holds {unknown}, which are not nnU-Net's files and may describe the dataset "
            f"being replaced; move them out of that folder (or delete them) and re-run"
        )
    _probe_writable(target.preprocessed)
    return replace(target, stale=tuple(known))


def _probe_writable(folder: Path) -> None:
    """Raise unless ``folder`` can be written (moving a folder aside needs that too), before any work is done."""
    probe = folder / f".write-probe-{uuid.uuid4().hex[:8]}"
    try:
        probe.mkdir()
        probe.rmdir()
    except OSError as e:
        raise ConversionError(f"{folder}: cannot write here ({_describe_os_error(e)}), so it cannot be replaced") from e


def execute_plan(plan: ConversionPlan, dataset_id: int, name: str, num_processes: int, overwrite: bool) -> Path:
    """Convert all cases of ``plan`` into ``$nnUNet_raw/DatasetXXX_Name`` and put dataset and split in place together.

    The dataset and its ``splits_final.json`` (in the dataset folder, where nnU-Net's planner picks it up, and in
    ``$nnUNet_preprocessed/DatasetXXX_Name``) are built in work folders and swapped in with the previous ones in one
    step (:class:`.transaction.Transaction`); on ``overwrite`` the previous preprocessed folder, with everything
    nnU-Net derived from the old dataset, goes with it. SIGTERM is handled like Ctrl-C: the work folders are removed.

    Returns:
        The dataset folder.

    Raises:
        ConversionError: On bad input or unwritable output; nothing has changed then.
        Interrupted: On SIGINT/SIGTERM; nothing has changed unless ``completed`` says the dataset was put in place.
    """
    target = check_target(dataset_id, name, overwrite, plan.source, report=False)  # the converter checked first
    check_unique([j.case_id for j in plan.jobs])
    for line in plan.warnings:
        print(f"warning: {line}", file=sys.stderr)
    transaction = Transaction(target.raw, target.preprocessed)
    pending: list[int] = []
    with interrupts_raise():
        try:
            transaction.begin()
            _build_dataset(plan, transaction.new_raw, target.raw.name, num_processes, transaction.lock_path)
            for folder in (transaction.new_raw, transaction.new_preprocessed):
                _write_json_atomically(plan.splits, folder / SPLITS_FILE)
            pending = transaction.commit()
        except TransactionError as e:
            transaction.abort()
            raise ConversionError(str(e)) from e
        except OSError as e:
            transaction.abort()
            where = e.filename or transaction.raw_work
            raise ConversionError(f"{where}: cannot write ({_describe_os_error(e)})") from e
        except BaseException:
            transaction.abort()
            raise
        # the dataset is in place: removing the old one must not be reported as an interrupted conversion
        with interrupts_deferred(pending):
            transaction.finish()
    if target.stale:
        print(f"note: removed from {target.preprocessed} what nnU-Net had derived from the replaced dataset: "
              f"{list(target.stale)}; run nnUNetv2_plan_and_preprocess again")
    results = nnUNet_results.get()
    if overwrite and results and (Path(results) / target.raw.name).is_dir():
        print(f"note: {Path(results) / target.raw.name} holds models trained on the replaced dataset; retrain (not "
              "--c) before comparing them with this one")
    if pending:
        raise Interrupted(pending[0], completed=True)
    return target.raw


def _describe_os_error(error: OSError) -> str:
    return error.strerror or str(error)


def _build_dataset(plan: ConversionPlan, folder: Path, dataset_name: str, num_processes: int, lock: Path) -> None:
    """Convert every case into ``folder`` and write dataset.json there, with the cases' notes."""
    for sub in ("imagesTr", "labelsTr", "imagesTs", "labelsTs"):
        (folder / sub).mkdir(parents=True)
    results = parallel_map(
        partial(_run_job, output_folder=folder), plan.jobs, num_processes, desc=f"Converting to {dataset_name}",
        lock_path=lock,
    )
    notes: dict[str, dict[str, Any]] = {}
    for case_id, case_notes in sorted(results, key=lambda r: r[0]):
        for key, value in (case_notes or {}).items():
            notes.setdefault(key, {})[case_id] = value
    for line in plan.check_notes(notes) if plan.check_notes else []:
        print(f"warning: {line}", file=sys.stderr)
    for sub in ("imagesTs", "labelsTs"):
        if not any((folder / sub).iterdir()):
            (folder / sub).rmdir()
    generate_dataset_json(
        str(folder),
        channel_names=dict(plan.channel_names),
        labels=dict(plan.labels),
        num_training_cases=len(plan.training_case_ids),
        file_ending=FILE_ENDING,
        dataset_name=dataset_name,
        description=plan.description,
        reference=plan.reference or None,
        license="See the release's own terms (dataset_conversion/README.md says where each release comes from).",
        converted_by="nnunetv2-resunet dataset converters",
        training_cases=plan.training_case_ids,
        test_cases=plan.test_case_ids,
        **plan.extra_json,
        **notes,
    )


# ----------------------------------------------------------------------------------------------------------------------
# Command line
# ----------------------------------------------------------------------------------------------------------------------


def build_parser(description: str, default_id: int, default_name: str) -> argparse.ArgumentParser:
    """Argument parser with the flags every converter has: -i, -d, -n, -np, --overwrite."""
    parser = argparse.ArgumentParser(description=description)
    parser.add_argument("-i", "--input", required=True, type=Path, help="folder of the downloaded release")
    parser.add_argument(
        "-d", "--dataset_id", type=int, default=default_id, help=f"nnU-Net dataset ID (default: {default_id})"
    )
    parser.add_argument(
        "-n", "--name", default=default_name, help=f"dataset name, DatasetXXX_NAME (default: {default_name})"
    )
    parser.add_argument(
        "-np",
        "--num_processes",
        type=int,
        default=default_num_processes,
        help=f"worker processes, one case each (default: {default_num_processes}, nnU-Net's default)",
    )
    parser.add_argument("--overwrite", action="store_true", help="replace an existing dataset of the same ID and name")
    return parser


def add_spacing_argument(parser: argparse.ArgumentParser, what: str) -> None:
    """Add ``--spacing X Y Z`` for releases that carry no voxel spacing."""
    parser.add_argument(
        "--spacing",
        type=float,
        nargs=3,
        metavar=("X", "Y", "Z"),
        default=None,
        help=f"voxel spacing in mm (x, y in-plane, z between slices) for {what}, which store none (default: 1 1 1)",
    )


def spacing_geometry(spacing: Sequence[float] | None) -> Geometry:
    """Geometry for a release without spacing: the user's spacing or 1x1x1, origin 0, identity direction."""
    if spacing is None:
        return Geometry()
    if len(spacing) != 3 or any(not np.isfinite(s) or s <= 0 for s in spacing):
        raise ConversionError(f"--spacing needs three positive numbers (x y z), got {list(spacing)}")
    return Geometry(spacing=(float(spacing[0]), float(spacing[1]), float(spacing[2])))


def run_cli(convert: Callable[[], Path]) -> int:
    """Run a conversion, printing a ConversionError or an interrupt as one line instead of a traceback.

    Returns:
        The exit code: 0, 1 on a ConversionError, 128 + the signal number on SIGINT/SIGTERM.
    """
    try:
        with interrupts_raise():
            target = convert()
    except ConversionError as e:
        print(f"error: {e}", file=sys.stderr)
        return 1
    except KeyboardInterrupt as e:
        signum = e.signum if isinstance(e, Interrupted) else signal.SIGINT
        if isinstance(e, Interrupted) and e.completed:
            print(f"interrupted by {signal.Signals(signum).name} after the dataset was put in place; it is complete",
                  file=sys.stderr)
        else:
            print(f"interrupted by {signal.Signals(signum).name}: nothing was changed in nnUNet_raw or "
                  "nnUNet_preprocessed", file=sys.stderr)
        return 128 + signum
    print(f"Done: {target}")
    return 0


# ----------------------------------------------------------------------------------------------------------------------
# A job kind several releases share
# ----------------------------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class H5VolumeJob(CaseJob):
    """A volume stored slice-first (Z, H, W) in an h5 file under ``image`` and ``label``, without geometry."""

    path: Path = Path()
    max_label: int = 1
    geometry: Geometry = Geometry()

    def convert(self, output_folder: Path) -> None:
        """Read, check and write the volume; the arrays are written exactly as stored."""
        arrays = read_h5(self.path, ("image", "label"))
        image, label = arrays["image"], arrays["label"]
        check_volume(image, self.path, "image")
        check_same_shape(image, label, self.path)
        check_finite(image, self.path)
        write_case(output_folder, self, image, checked_labels(label, self.max_label, self.path), self.geometry)


@dataclass(frozen=True)
class ImageLabelFilesJob(CaseJob):
    """A case stored as an image file and (optionally) a label file that SimpleITK reads (NIfTI, NRRD).

    Attributes:
        image_path: The image; its spacing, origin and direction are kept.
        label_path: The label map, or None for an unlabelled test case.
        max_label: Largest allowed label value (ignored when ``binarise``).
        binarise: Write 1 wherever the label is non-zero (in any component), 0 elsewhere.
    """

    image_path: Path = Path()
    label_path: Path | None = None
    max_label: int = 1
    binarise: bool = False

    def convert(self, output_folder: Path) -> dict[str, Any] | None:
        """Read, check and write the case; the image array is written as read (unless :meth:`adjust_image` says
        otherwise), the label as uint8."""
        image = read_image(self.image_path)
        if image.GetDimension() != 3 or image.GetNumberOfComponentsPerPixel() != 1:
            raise ConversionError(
                f"{self.image_path}: expected a 3D single-channel image, got {image.GetDimension()}D with "
                f"{image.GetNumberOfComponentsPerPixel()} components"
            )
        image_array = sitk.GetArrayFromImage(image)
        check_finite(image_array, self.image_path)
        label_array = None
        if self.label_path is not None:
            label = read_image(self.label_path)
            label_array = label_on_image_grid(label, image, self.label_path, self.image_path)
            if self.binarise:
                nonzero = label_array != 0
                label_array = nonzero.any(axis=-1) if label.GetNumberOfComponentsPerPixel() > 1 else nonzero
                label_array = label_array.astype(np.uint8)
            else:
                label_array = checked_labels(label_array, self.max_label, self.label_path)
        image_array, notes = self.adjust_image(image_array)
        write_case(output_folder, self, image_array, label_array, Geometry.of_image(image))
        return notes

    def adjust_image(self, image: np.ndarray) -> tuple[np.ndarray, dict[str, Any] | None]:
        """Hook for a release's intensity corrections; returns the image to write and notes for dataset.json."""
        return image, None


def header_size(path: Path) -> tuple[int, ...]:
    """Image size (x, y, z) from a file's header only."""
    reader = sitk.ImageFileReader()
    reader.SetFileName(str(path))
    try:
        reader.ReadImageInformation()
    except RuntimeError as e:
        raise ConversionError(f"{path}: cannot read image header ({str(e).strip().splitlines()[-1]})") from e
    return tuple(reader.GetSize())


def check_header_shapes(image_path: Path, label_path: Path, allow_subgrid: bool = False) -> None:
    """Raise if image and label headers promise different sizes.

    With ``allow_subgrid``, a label on a sub-grid of the image (same spacing and direction, inside the image, at a
    whole-voxel offset) is accepted: :func:`label_on_image_grid` places it.
    """
    image_size, label_size = header_size(image_path), header_size(label_path)
    if image_size == label_size:
        return
    if not allow_subgrid:
        raise ConversionError(
            f"{label_path}: label shape {label_size[::-1]} != image shape {image_size[::-1]} of {image_path}"
        )
    subgrid_offset(_header(label_path), _header(image_path), label_path, image_path)


def _header(path: Path) -> sitk.ImageFileReader:
    reader = sitk.ImageFileReader()
    reader.SetFileName(str(path))
    reader.ReadImageInformation()
    return reader


@dataclass(frozen=True)
class SliceStackJob(CaseJob):
    """A case stored as 2D slice files (npz with ``image`` and ``label``), stacked in the given order."""

    slice_paths: tuple[Path, ...] = ()
    max_label: int = 1
    geometry: Geometry = Geometry()

    def convert(self, output_folder: Path) -> None:
        """Stack the case's 2D slices into one (Z, H, W) volume, check and write it."""
        images, labels = [], []
        for path in self.slice_paths:
            arrays = read_npz(path, ("image", "label"))
            image, label = arrays["image"], arrays["label"]
            if image.ndim != 2:
                raise ConversionError(f"{path}: image must be a 2D slice, got shape {image.shape}")
            check_same_shape(image, label, path)
            if images and image.shape != images[0].shape:
                raise ConversionError(
                    f"{path}: slice shape {image.shape} differs from {self.slice_paths[0].name}'s {images[0].shape}"
                )
            check_finite(image, path)
            images.append(image)
            labels.append(checked_labels(label, self.max_label, path))
        write_case(output_folder, self, np.stack(images), np.stack(labels), self.geometry)
