"""Writing a case (NIfTI volumes with their geometry) and the job kinds several releases share."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import SimpleITK as sitk

from .common import FILE_ENDING, CaseJob, ConversionError, Geometry
from .reading import (
    check_finite,
    check_same_shape,
    check_volume,
    checked_labels,
    label_on_image_grid,
    read_h5,
    read_image,
    read_npz,
    subgrid_offset,
)


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
