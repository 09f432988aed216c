"""Tests of nnUNetv2_resunet_convert_acdc: the real h5 sample and replicas of the h5 and challenge layouts."""

from __future__ import annotations

import shutil
import zlib
from collections.abc import Callable
from pathlib import Path

import h5py
import numpy as np
import pytest
import SimpleITK as sitk
from conversion_helpers import (
    ACDC_TEST_PATIENTS,
    ACDC_TRAINING_PATIENTS,
    ACDC_VALIDATION_PATIENTS,
    NnunetDirs,
    assert_exact,
    assert_nothing_written,
    assert_refused,
    case_ids,
    load_json,
    tree_digest,
)
from nnunetv2_resunet.dataset_conversion.common import ConversionError
from nnunetv2_resunet.dataset_conversion.convert_acdc import convert_acdc

from nnunetv2_resunet.demo.cli import SAMPLE

REAL_SAMPLE = SAMPLE  # the demo's shipped sample: 4 real patients, 8 volumes
REAL_SAMPLE_CASES = sorted(p.name[: -len(".h5")] for p in REAL_SAMPLE.glob("*.h5"))
SPACING = (1.5625, 1.5625, 10.0)
ORIGIN = (-120.0, 80.5, 12.0)
DIRECTION = (0.0, 1.0, 0.0, -1.0, 0.0, 0.0, 0.0, 0.0, 1.0)


def convert_real_acdc_sample(tmp_path: Path, dataset_id: int = 802, name: str = "ACDCSample") -> Path:
    """Convert the real ACDC h5 sample (4 patients) into ``$nnUNet_raw``; returns the dataset folder.

    For tests that need a small real dataset (e.g. a brief training run); ``$nnUNet_raw`` and ``$nnUNet_preprocessed``
    must point into ``tmp_path`` already.
    """
    source = tmp_path / "acdc_h5_sample"
    shutil.copytree(REAL_SAMPLE, source)
    return convert_acdc(source, dataset_id, name)


def write_h5_volume(path: Path, image: np.ndarray, label: np.ndarray, scribble: bool = True) -> None:
    with h5py.File(path, "w") as f:
        f["image"], f["label"] = image, label
        if scribble:
            f["scribble"] = np.full(label.shape, 4, np.uint16)


def replica_arrays(case_id: str, depth: int = 2) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(zlib.crc32(case_id.encode()))
    return rng.random((depth, 8, 8), dtype=np.float32), rng.integers(0, 4, (depth, 8, 8)).astype(np.uint8)


def make_h5_replica(root: Path, patients: range) -> Path:
    """SSL4MIS layout: ACDC_training_volumes/patientXXX_frameYY.h5 (two frames each) next to a slices folder."""
    volumes = root / "ACDC_training_volumes"
    volumes.mkdir(parents=True)
    (root / "ACDC_training_slices").mkdir()
    for n in patients:
        for frame in (1, 10 + n % 5):
            case_id = f"patient{n:03d}_frame{frame:02d}"
            write_h5_volume(volumes / f"{case_id}.h5", *replica_arrays(case_id))
    return root


def write_nifti(array: np.ndarray, path: Path) -> None:
    image = sitk.GetImageFromArray(array)
    image.SetSpacing(SPACING)
    image.SetOrigin(ORIGIN)
    image.SetDirection(DIRECTION)
    sitk.WriteImage(image, str(path), useCompression=True)


def challenge_arrays(case_id: str) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(zlib.crc32(case_id.encode()))
    return rng.integers(0, 400, (3, 8, 10)).astype(np.int16), rng.integers(0, 4, (3, 8, 10)).astype(np.uint8)


def make_challenge_replica(root: Path) -> Path:
    """Challenge layout: training/ with 6 patients, testing/ with 2 (one labelled); _4d and Info.cfg included."""
    for subset, patients, labelled in [("training", range(1, 7), True), ("testing", range(101, 103), None)]:
        for n in patients:
            patient = f"patient{n:03d}"
            folder = root / subset / patient
            folder.mkdir(parents=True)
            (folder / "Info.cfg").write_text("ED: 1\nES: 12\nGroup: NOR\n")
            write_nifti(np.zeros((4, 3, 8, 10), np.int16), folder / f"{patient}_4d.nii.gz")
            for frame in (1, 12):
                case_id = f"{patient}_frame{frame:02d}"
                image, label = challenge_arrays(case_id)
                write_nifti(image, folder / f"{case_id}.nii.gz")
                if labelled or (labelled is None and n == 101):
                    write_nifti(label, folder / f"{case_id}_gt.nii.gz")
    return root


def test_real_sample_round_trip(tmp_path: Path, conversion_nnunet_dirs: NnunetDirs) -> None:
    before = tree_digest(REAL_SAMPLE)
    out = convert_real_acdc_sample(tmp_path)
    assert case_ids(out / "imagesTr", "_0000") == case_ids(out / "labelsTr") == REAL_SAMPLE_CASES
    assert not (out / "imagesTs").exists()
    for case_id in REAL_SAMPLE_CASES:
        with h5py.File(REAL_SAMPLE / f"{case_id}.h5") as f:
            image, label = f["image"][()], f["label"][()]
        written = assert_exact(out / "imagesTr" / f"{case_id}_0000.nii.gz", image)
        assert_exact(out / "labelsTr" / f"{case_id}.nii.gz", label)
        assert written.GetSpacing() == (1.0, 1.0, 1.0)
    dataset = load_json(out / "dataset.json")
    assert dataset["labels"] == {"background": 0, "RV": 1, "MYO": 2, "LV": 3}
    assert dataset["numTraining"] == 8
    splits = load_json(conversion_nnunet_dirs.preprocessed / "Dataset802_ACDCSample" / "splits_final.json")
    # 4 patients: one fold per patient, both frames of a patient together in its validation set
    assert len(splits) == 4
    assert sorted(c for fold in splits for c in fold["val"]) == REAL_SAMPLE_CASES
    for fold in splits:
        assert len({c[:10] for c in fold["val"]}) == 1 and len(fold["val"]) == 2
        assert sorted(fold["train"] + fold["val"]) == REAL_SAMPLE_CASES
    assert tree_digest(REAL_SAMPLE) == before


def test_default_split_matches_nnunet_dataset027(tmp_path: Path, conversion_nnunet_dirs: NnunetDirs) -> None:
    from nnunetv2.dataset_conversion.Dataset027_ACDC import create_ACDC_split

    source = make_h5_replica(tmp_path / "ACDC", range(1, 13))
    out = convert_acdc(source, 802, spacing=(1.5, 1.25, 5.0))
    splits = load_json(conversion_nnunet_dirs.preprocessed / "Dataset802_ACDC" / "splits_final.json")
    expected = create_ACDC_split(str(out / "labelsTr"))
    assert [{"train": sorted(f["train"]), "val": sorted(f["val"])} for f in expected] == splits
    assert len(splits) == 5
    image = sitk.ReadImage(str(out / "imagesTr" / "patient001_frame01_0000.nii.gz"))
    np.testing.assert_allclose(image.GetSpacing(), (1.5, 1.25, 5.0))


def test_transunet_split(tmp_path: Path, conversion_nnunet_dirs: NnunetDirs) -> None:
    source = make_h5_replica(tmp_path / "ACDC", range(1, 101))
    out = convert_acdc(source, 802, split="transunet", num_processes=2)
    test_patients = sorted({c[:10] for c in case_ids(out / "labelsTs")})
    assert test_patients == ACDC_TEST_PATIENTS
    assert case_ids(out / "imagesTs", "_0000") == case_ids(out / "labelsTs")
    assert len(case_ids(out / "labelsTs")) == 40 and len(case_ids(out / "labelsTr")) == 160
    splits = load_json(conversion_nnunet_dirs.preprocessed / "Dataset802_ACDC" / "splits_final.json")
    assert len(splits) == 1
    assert sorted({c[:10] for c in splits[0]["val"]}) == ACDC_VALIDATION_PATIENTS
    assert sorted({c[:10] for c in splits[0]["train"]}) == ACDC_TRAINING_PATIENTS  # 70 patients
    assert sorted(splits[0]["train"] + splits[0]["val"]) == case_ids(out / "labelsTr")
    image, label = replica_arrays("patient002_frame01")
    assert_exact(out / "imagesTs" / "patient002_frame01_0000.nii.gz", image)
    assert_exact(out / "labelsTs" / "patient002_frame01.nii.gz", label)


def test_transunet_split_needs_all_patients(tmp_path: Path, conversion_nnunet_dirs: NnunetDirs) -> None:
    source = make_h5_replica(tmp_path / "ACDC", [n for n in range(1, 101) if n != 50])
    with pytest.raises(ConversionError, match=r"missing from the source: \['patient050'\]"):
        convert_acdc(source, 802, split="transunet")
    assert_nothing_written(conversion_nnunet_dirs)


def test_challenge_round_trip(tmp_path: Path, conversion_nnunet_dirs: NnunetDirs) -> None:
    from nnunetv2.dataset_conversion.Dataset027_ACDC import create_ACDC_split

    source = make_challenge_replica(tmp_path / "ACDC")
    before = tree_digest(source)
    out = convert_acdc(source, 802)
    training = [f"patient{n:03d}_frame{f:02d}" for n in range(1, 7) for f in (1, 12)]
    assert case_ids(out / "imagesTr", "_0000") == case_ids(out / "labelsTr") == training
    assert case_ids(out / "imagesTs", "_0000") == ["patient101_frame01", "patient101_frame12"] + [
        "patient102_frame01",
        "patient102_frame12",
    ]
    assert case_ids(out / "labelsTs") == ["patient101_frame01", "patient101_frame12"]
    for subset, case_id in [("Tr", "patient003_frame12"), ("Ts", "patient101_frame01")]:
        image, label = challenge_arrays(case_id)
        for path, expected in [
            (out / f"images{subset}" / f"{case_id}_0000.nii.gz", image),
            (out / f"labels{subset}" / f"{case_id}.nii.gz", label),
        ]:
            written = assert_exact(path, expected)
            np.testing.assert_allclose(written.GetSpacing(), SPACING)
            np.testing.assert_allclose(written.GetOrigin(), ORIGIN)
            np.testing.assert_allclose(written.GetDirection(), DIRECTION)
    splits = load_json(conversion_nnunet_dirs.preprocessed / "Dataset802_ACDC" / "splits_final.json")
    assert splits == [
        {"train": sorted(f["train"]), "val": sorted(f["val"])} for f in create_ACDC_split(out / "labelsTr")
    ]
    assert tree_digest(source) == before
    with pytest.raises(ConversionError, match="--overwrite"):
        convert_acdc(source, 802)
    assert convert_acdc(source, 802, overwrite=True, num_processes=2) == out


def _drop_key(path: Path, key: str) -> None:
    with h5py.File(path, "a") as f:
        del f[key]


def _truncate(path: Path) -> None:
    path.write_bytes(path.read_bytes()[: path.stat().st_size // 2])


H5_LAST = "ACDC_training_volumes/patient006_frame11.h5"
H5_BAD_INPUTS: list[tuple[str, Callable[[Path], None], str, str]] = [
    ("missing_folder", lambda r: shutil.rmtree(r), "ACDC", "missing folder"),
    ("no_volumes", lambda r: shutil.rmtree(r / "ACDC_training_volumes") or (r / "x").mkdir(), "ACDC", "no ACDC layout"),
    ("truncated", lambda r: _truncate(r / H5_LAST), H5_LAST, "cannot read"),
    (
        "missing_key",
        lambda r: _drop_key(r / H5_LAST, "label"),
        H5_LAST,
        "missing keys ['label']",
    ),
    (
        "shape_mismatch",
        lambda r: write_h5_volume(r / H5_LAST, np.zeros((2, 8, 8), np.float32), np.zeros((2, 8, 9), np.uint8)),
        H5_LAST,
        "shape",
    ),
    (
        "label_out_of_range",
        lambda r: write_h5_volume(r / H5_LAST, np.zeros((2, 8, 8), np.float32), np.full((2, 8, 8), 4, np.uint8)),
        H5_LAST,
        "out of range 0..3: [4]",
    ),
    (
        "nan_image",
        lambda r: write_h5_volume(r / H5_LAST, np.full((2, 8, 8), np.nan, np.float32), np.zeros((2, 8, 8), np.uint8)),
        H5_LAST,
        "NaN",
    ),
    (
        "slice_file",
        lambda r: shutil.copy(r / H5_LAST, r / "ACDC_training_volumes/patient006_frame11_slice_1.h5"),
        "slice_1.h5",
        "ACDC_training_volumes",
    ),
    ("one_frame", lambda r: (r / H5_LAST).unlink(), "patient006_frame01.h5", "one frame"),
    (
        "inf_image",
        lambda r: write_h5_volume(r / H5_LAST, np.full((2, 8, 8), -np.inf, np.float32), np.zeros((2, 8, 8), np.uint8)),
        H5_LAST,
        "NaN/inf",
    ),
]


@pytest.mark.parametrize(
    ("break_release", "names", "says"), [pytest.param(b, n, s, id=i) for i, b, n, s in H5_BAD_INPUTS]
)
def test_h5_bad_input(
    tmp_path: Path,
    conversion_nnunet_dirs: NnunetDirs,
    break_release: Callable[[Path], None],
    names: str,
    says: str,
) -> None:
    source = make_h5_replica(tmp_path / "ACDC", range(1, 7))
    break_release(source)
    assert_refused(lambda: convert_acdc(source, 802, num_processes=2), source, names, says, conversion_nnunet_dirs)


CHALLENGE_LAST = "training/patient006/patient006_frame12"
CHALLENGE_BAD_INPUTS: list[tuple[str, Callable[[Path], None], str, str]] = [
    ("missing_gt", lambda r: Path(r / f"{CHALLENGE_LAST}_gt.nii.gz").unlink(), CHALLENGE_LAST, "without a _gt"),
    ("truncated_image", lambda r: _truncate(r / f"{CHALLENGE_LAST}.nii.gz"), CHALLENGE_LAST, "cannot read"),
    (
        "duplicate_case",
        lambda r: write_nifti(challenge_arrays("x")[0], r / f"{CHALLENGE_LAST}.nii"),
        "patient006_frame12.nii",
        "duplicate",
    ),
    (
        "wrong_patient_folder",
        lambda r: shutil.copy(r / f"{CHALLENGE_LAST}.nii.gz", r / "training/patient005/patient006_frame13.nii.gz"),
        "patient005",
        "inside the folder",
    ),
    (
        "shape_mismatch",
        lambda r: write_nifti(np.zeros((2, 8, 10), np.uint8), r / f"{CHALLENGE_LAST}_gt.nii.gz"),
        f"{CHALLENGE_LAST}_gt",
        "shape",
    ),
    (
        "label_out_of_range",
        lambda r: write_nifti(np.full((3, 8, 10), 7, np.uint8), r / f"{CHALLENGE_LAST}_gt.nii.gz"),
        f"{CHALLENGE_LAST}_gt",
        "out of range",
    ),
    (
        "nan_image",
        lambda r: write_nifti(np.full((3, 8, 10), np.nan, np.float32), r / f"{CHALLENGE_LAST}.nii.gz"),
        f"{CHALLENGE_LAST}.nii.gz",
        "NaN",
    ),
    (
        "inf_image",
        lambda r: write_nifti(np.full((3, 8, 10), np.inf, np.float32), r / f"{CHALLENGE_LAST}.nii.gz"),
        f"{CHALLENGE_LAST}.nii.gz",
        "NaN/inf",
    ),
    (
        "empty_patient_folder",
        lambda r: [p.unlink() for p in (r / "training/patient006").glob("*.nii.gz")],
        "training/patient006",
        "no frames",
    ),
    (
        "one_frame",
        lambda r: [p.unlink() for p in (r / "training/patient006").glob("patient006_frame12*")],
        "training/patient006",
        "one frame",
    ),
]


@pytest.mark.parametrize(
    ("break_release", "names", "says"), [pytest.param(b, n, s, id=i) for i, b, n, s in CHALLENGE_BAD_INPUTS]
)
def test_challenge_bad_input(
    tmp_path: Path,
    conversion_nnunet_dirs: NnunetDirs,
    break_release: Callable[[Path], None],
    names: str,
    says: str,
) -> None:
    source = make_challenge_replica(tmp_path / "ACDC")
    break_release(source)
    assert_refused(lambda: convert_acdc(source, 802), source, names, says, conversion_nnunet_dirs)


def make_ssl4mis_replica(root: Path, patients: range) -> Path:
    """SSL4MIS layout (its dataloaders read ``data/ACDC/data/{case}.h5`` and ``data/ACDC/data/slices/{slice}.h5``)."""
    volumes = root / "data"
    (volumes / "slices").mkdir(parents=True)
    for n in patients:
        for frame in (1, 10 + n % 5):
            case_id = f"patient{n:03d}_frame{frame:02d}"
            write_h5_volume(volumes / f"{case_id}.h5", *replica_arrays(case_id), scribble=False)
            write_h5_volume(volumes / "slices" / f"{case_id}_slice_1.h5", *replica_arrays(case_id, 1), scribble=False)
    return root


@pytest.mark.parametrize("level", ["ACDC", "ACDC/data"])
def test_ssl4mis_layout(tmp_path: Path, conversion_nnunet_dirs: NnunetDirs, level: str) -> None:
    make_ssl4mis_replica(tmp_path / "ACDC", range(1, 7))
    out = convert_acdc(tmp_path / level, 802)
    expected = sorted(f"patient{n:03d}_frame{f:02d}" for n in range(1, 7) for f in (1, 10 + n % 5))
    assert case_ids(out / "imagesTr", "_0000") == case_ids(out / "labelsTr") == expected
    image, label = replica_arrays("patient003_frame13")
    assert_exact(out / "imagesTr" / "patient003_frame13_0000.nii.gz", image)
    assert_exact(out / "labelsTr" / "patient003_frame13.nii.gz", label)


def test_partial_training_set_is_reported_and_recorded(
    tmp_path: Path, conversion_nnunet_dirs: NnunetDirs, capsys: pytest.CaptureFixture[str]
) -> None:
    out = convert_real_acdc_sample(tmp_path)
    missing = [f"patient{n:03d}" for n in range(1, 101) if n not in (1, 4, 5, 6)]
    said = capsys.readouterr().err
    assert "96 of the 100 ACDC training patients are missing" in said and "patient002" in said
    dataset = load_json(out / "dataset.json")
    assert dataset["training_cases"] == REAL_SAMPLE_CASES
    assert dataset["training_set"]["missing"] == missing and dataset["training_set"]["complete"] is False


@pytest.mark.parametrize(("given", "hint"), [("data/ACDC/training", True), ("data", True), ("elsewhere", False)])
def test_source_one_level_off(tmp_path: Path, conversion_nnunet_dirs: NnunetDirs, given: str, hint: bool) -> None:
    """-i one level too deep or too high: the message says what was looked for where, and the right -i."""
    source = make_challenge_replica(tmp_path / "data" / "ACDC")
    (tmp_path / "elsewhere").mkdir()
    with pytest.raises(ConversionError) as error:
        convert_acdc(tmp_path / given, 802)
    message = str(error.value)
    assert message.startswith(f"{tmp_path / given}: no ACDC layout"), message
    assert "training/" in message and "ACDC_training_volumes/" in message and "data/" in message, message
    assert (f"pass -i '{source}'" in message) == hint, message
    assert_nothing_written(conversion_nnunet_dirs)
