"""Reading and checking source files: h5, npz and NIfTI headers and arrays, values, labels, geometry."""

from __future__ import annotations

import gzip
import zipfile
import zlib
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import h5py
import numpy as np
import SimpleITK as sitk

from .common import ConversionError


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
