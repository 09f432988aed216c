"""What the converters share: the error type, a volume's geometry, a case job and a conversion plan, and where
things go (names, nnU-Net's folders, the layouts a release is looked for in).

A converter collects its source into a :class:`ConversionPlan` (cheap structural checks: folders, names, pairs,
duplicates, keys and shapes where headers allow), then :func:`.execute.execute_plan` converts every case in
parallel into a hidden work folder inside ``$nnUNet_raw`` (value checks happen there, while each case is read
once), writes dataset.json and the split, and only when every case succeeded swaps dataset and split in together
(:mod:`.transaction`). Any error or interrupt removes the work folders, so no half-written dataset is ever visible,
and the source is only ever read. Reading and checking source files is :mod:`.reading`, writing cases and the job
kinds several releases share :mod:`.jobs`, splits :mod:`.splits`, the command line :mod:`.cli`.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import SimpleITK as sitk
from nnunetv2.paths import nnUNet_preprocessed, nnUNet_raw

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


def env_folder(env_path: Any) -> Path:
    value = env_path.get()
    if not value:
        raise ConversionError(
            f"environment variable {env_path.env_var_name} is not set; set it to the folder nnU-Net should use "
            "(see nnU-Net's documentation/setting_up_paths.md)"
        )
    return Path(value)


def raw_root() -> Path:
    """``$nnUNet_raw``, read when called (nnunetv2.paths reads the environment lazily)."""
    return env_folder(nnUNet_raw)


def preprocessed_root() -> Path:
    """``$nnUNet_preprocessed``, read when called."""
    return env_folder(nnUNet_preprocessed)


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
