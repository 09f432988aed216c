"""Tests of nnUNetv2_resunet_convert_avt on small replicas of the figshare release and of the papers' 2D layout."""

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
    NnunetDirs,
    assert_exact,
    assert_refused,
    case_ids,
    check_five_folds,
    load_json,
    make_nnunet_dirs,
    run_console,
    tree_digest,
    verify_with_nnunet,
)
from nnunetv2_resunet.dataset_conversion.convert_avt import TEST_CASES, convert_avt

SUFFIXES = {"R1": " (AD)", "R2": " (AD)", "R5": " (AD)", "R6": " (AAA)", "R7": " (AD)", "R8": " (AD)"}
CASES = {
    "Dongyang": [f"D{n}" for n in range(1, 19)],
    "KiTS": [f"K{n}" for n in range(1, 21)],
    "Rider": [f"R{n}{SUFFIXES.get(f'R{n}', '')}" for n in range(1, 19)],
}
ALL_NAMES = [name for names in CASES.values() for name in names]
TRAIN_NAMES = [n for n in ALL_NAMES if n not in TEST_CASES]
SAFE = {n: n.replace(" (", "_").replace(")", "") for n in ALL_NAMES}
SPACING = (0.8, 0.8, 2.0)
ORIGIN = (10.0, -20.0, 30.0)
DIRECTION = (1.0, 0.0, 0.0, 0.0, -1.0, 0.0, 0.0, 0.0, 1.0)


@pytest.fixture
def conversion_nnunet_dirs(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> NnunetDirs:
    return make_nnunet_dirs(tmp_path, monkeypatch)


def figshare_arrays(name: str) -> tuple[np.ndarray, np.ndarray]:
    """Image int16 in HU and a mask with several non-zero values (as segmentation exports may have)."""
    rng = np.random.default_rng(zlib.crc32(name.encode()))
    return rng.integers(-1000, 2000, (3, 6, 7)).astype(np.int16), rng.choice([0, 1, 255], (3, 6, 7)).astype(np.uint8)


def write_nrrd(array: np.ndarray, path: Path) -> None:
    image = sitk.GetImageFromArray(array)
    image.SetSpacing(SPACING)
    image.SetOrigin(ORIGIN)
    image.SetDirection(DIRECTION)
    sitk.WriteImage(image, str(path), useCompression=True)


def make_figshare_release(root: Path) -> Path:
    """KiTS/K1/K1.nrrd + K1.seg.nrrd, Rider/R1 (AD)/R1 (AD).nrrd + .seg.nrrd, Dongyang/D1/... (56 cases)."""
    for group, names in CASES.items():
        for name in names:
            folder = root / group / name
            folder.mkdir(parents=True)
            image, mask = figshare_arrays(name)
            write_nrrd(image, folder / f"{name}.nrrd")
            write_nrrd(mask, folder / f"{name}.seg.nrrd")
    return root


def slice_numbers(name: str) -> list[int]:
    """Gapped slice numbers (only slices with aorta are released)."""
    start = zlib.crc32(name.encode()) % 50
    return [start, start + 3, start + 17]


def training_slice(name: str, number: int) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(zlib.crc32(f"{name}/{number}".encode()))
    return rng.random((8, 8)), rng.integers(0, 2, (8, 8)).astype(np.float64)


def avt_test_volume(name: str) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(zlib.crc32(name.encode()))
    return rng.random((4, 8, 8)).astype(np.float32), rng.integers(0, 2, (4, 8, 8)).astype(np.uint8)


def write_test_volume(path: Path, image: np.ndarray, label: np.ndarray) -> None:
    with h5py.File(path, "w") as f:
        f["image"], f["label"] = image, label
        f["origin"], f["direction"] = np.array(ORIGIN), np.array(DIRECTION).reshape(3, 3)
        f["xyz_thickness"] = np.array(SPACING)


def make_2d_release(root: Path) -> Path:
    """ParaTransCNN layout: train/<name>_slice_<n>.npz (gapped) and test_vol_h5/<name>.h5."""
    (root / "train").mkdir(parents=True)
    (root / "test_vol_h5").mkdir()
    for name in TRAIN_NAMES:
        for number in slice_numbers(name):
            image, label = training_slice(name, number)
            np.savez(root / "train" / f"{name}_slice_{number}.npz", image=image, label=label)
    for name in TEST_CASES:
        write_test_volume(root / "test_vol_h5" / f"{name}.h5", *avt_test_volume(name))
    return root


@pytest.fixture
def figshare_release(tmp_path: Path) -> Path:
    return make_figshare_release(tmp_path / "AVT")


@pytest.fixture
def avt_2d_release(tmp_path: Path) -> Path:
    return make_2d_release(tmp_path / "AVT2D")


def test_figshare_round_trip_split_and_names(figshare_release: Path, conversion_nnunet_dirs: NnunetDirs) -> None:
    before = tree_digest(figshare_release)
    out = convert_avt(figshare_release, 803, num_processes=2)
    assert case_ids(out / "imagesTr", "_0000") == case_ids(out / "labelsTr") == sorted(SAFE[n] for n in TRAIN_NAMES)
    assert case_ids(out / "imagesTs", "_0000") == case_ids(out / "labelsTs") == sorted(SAFE[n] for n in TEST_CASES)
    assert "R7_AD" in case_ids(out / "labelsTs") and "R6_AAA" in case_ids(out / "labelsTs")
    for name in ALL_NAMES:
        subset = "Ts" if name in TEST_CASES else "Tr"
        image, mask = figshare_arrays(name)
        for path, expected in [
            (out / f"images{subset}" / f"{SAFE[name]}_0000.nii.gz", image),
            (out / f"labels{subset}" / f"{SAFE[name]}.nii.gz", (mask != 0).astype(np.uint8)),
        ]:
            written = assert_exact(path, expected)
            np.testing.assert_allclose(written.GetSpacing(), SPACING)
            np.testing.assert_allclose(written.GetOrigin(), ORIGIN)
            np.testing.assert_allclose(written.GetDirection(), DIRECTION)
    dataset = load_json(out / "dataset.json")
    assert dataset["original_case_names"] == {SAFE[n]: n for n in ALL_NAMES}
    assert dataset["numTraining"] == 38 and dataset["labels"] == {"background": 0, "aorta": 1}
    splits = load_json(conversion_nnunet_dirs.preprocessed / "Dataset803_AVT" / "splits_final.json")
    check_five_folds(splits, sorted(SAFE[n] for n in TRAIN_NAMES))
    assert tree_digest(figshare_release) == before


def test_2d_layout_round_trip(avt_2d_release: Path, conversion_nnunet_dirs: NnunetDirs) -> None:
    before = tree_digest(avt_2d_release)
    out = convert_avt(avt_2d_release, 803, spacing=(1.0, 1.0, 2.5))
    assert case_ids(out / "labelsTr") == sorted(SAFE[n] for n in TRAIN_NAMES)
    assert case_ids(out / "imagesTs", "_0000") == case_ids(out / "labelsTs") == sorted(SAFE[n] for n in TEST_CASES)
    dataset = load_json(out / "dataset.json")
    for name in TRAIN_NAMES:
        slices = [training_slice(name, n) for n in slice_numbers(name)]
        written = assert_exact(out / "imagesTr" / f"{SAFE[name]}_0000.nii.gz", np.stack([s[0] for s in slices]))
        assert_exact(out / "labelsTr" / f"{SAFE[name]}.nii.gz", np.stack([s[1] for s in slices]).astype(np.uint8))
        np.testing.assert_allclose(written.GetSpacing(), (1.0, 1.0, 2.5))
        assert dataset["training_slice_numbers"][SAFE[name]] == slice_numbers(name)
    for name in TEST_CASES:
        image, label = avt_test_volume(name)
        written = assert_exact(out / "imagesTs" / f"{SAFE[name]}_0000.nii.gz", image)
        assert_exact(out / "labelsTs" / f"{SAFE[name]}.nii.gz", label)
        np.testing.assert_allclose(written.GetSpacing(), SPACING)
        np.testing.assert_allclose(written.GetOrigin(), ORIGIN)
        np.testing.assert_allclose(written.GetDirection(), DIRECTION)
    check_five_folds(
        load_json(conversion_nnunet_dirs.preprocessed / "Dataset803_AVT" / "splits_final.json"),
        sorted(SAFE[n] for n in TRAIN_NAMES),
    )
    assert tree_digest(avt_2d_release) == before


def _truncate(path: Path) -> None:
    path.write_bytes(path.read_bytes()[: path.stat().st_size // 2])


LAST_FIGSHARE = "Rider/R9/R9"
FIGSHARE_BAD_INPUTS: list[tuple[str, Callable[[Path], None], str, str]] = [
    ("missing_seg", lambda r: Path(r / f"{LAST_FIGSHARE}.seg.nrrd").unlink(), "R9", "one .seg.nrrd"),
    ("truncated_seg", lambda r: _truncate(r / f"{LAST_FIGSHARE}.seg.nrrd"), "R9.seg.nrrd", "cannot read"),
    (
        "shape_mismatch",
        lambda r: write_nrrd(np.zeros((2, 6, 7), np.uint8), r / f"{LAST_FIGSHARE}.seg.nrrd"),
        "R9.seg.nrrd",
        "shape",
    ),
    (
        "duplicate_case",
        lambda r: shutil.copytree(r / "Rider" / "R9", r / "Extra" / "R9"),
        "R9",
        "duplicate",
    ),
    ("missing_test_case", lambda r: shutil.rmtree(r / "Rider" / "R7 (AD)"), "R7 (AD)", "missing"),
]


@pytest.mark.parametrize(
    ("break_release", "names", "says"), [pytest.param(b, n, s, id=i) for i, b, n, s in FIGSHARE_BAD_INPUTS]
)
def test_figshare_bad_input(
    figshare_release: Path,
    conversion_nnunet_dirs: NnunetDirs,
    break_release: Callable[[Path], None],
    names: str,
    says: str,
) -> None:
    break_release(figshare_release)
    assert_refused(lambda: convert_avt(figshare_release, 803, num_processes=2),
                   figshare_release, names, says, conversion_nnunet_dirs)


LAST_TEST = "test_vol_h5/R18.h5"
LAST_TRAIN = f"train/R9_slice_{slice_numbers('R9')[-1]}.npz"
TWO_D_BAD_INPUTS: list[tuple[str, Callable[[Path], None], str, str]] = [
    ("missing_test_folder", lambda r: shutil.rmtree(r / "test_vol_h5"), "AVT2D", "test folder"),
    ("truncated_npz", lambda r: _truncate(r / LAST_TRAIN), LAST_TRAIN, "cannot read"),
    ("corrupt_h5", lambda r: (r / LAST_TEST).write_bytes(b"\x89HDF garbage"), LAST_TEST, "cannot read"),
    (
        "missing_geometry_key",
        lambda r: _drop_key(r / LAST_TEST, "xyz_thickness"),
        LAST_TEST,
        "missing keys ['xyz_thickness']",
    ),
    (
        "label_out_of_range",
        lambda r: write_test_volume(r / LAST_TEST, np.zeros((4, 8, 8), np.float32), np.full((4, 8, 8), 2, np.uint8)),
        LAST_TEST,
        "out of range 0..1: [2]",
    ),
    (
        "shape_mismatch",
        lambda r: np.savez(r / LAST_TRAIN, image=np.zeros((8, 8)), label=np.zeros((8, 7))),
        LAST_TRAIN,
        "shape",
    ),
    (
        "train_and_test_case",
        lambda r: shutil.copy(r / "test_vol_h5" / "K2.h5", r / "test_vol_h5" / "K3.h5"),
        "K3",
        "duplicate",
    ),
    (
        "test_case_not_in_list",
        lambda r: shutil.copy(r / "test_vol_h5" / "K2.h5", r / "test_vol_h5" / "K99.h5"),
        "K99",
        "not in ParaTransCNN",
    ),
]


def _drop_key(path: Path, key: str) -> None:
    with h5py.File(path, "a") as f:
        del f[key]


@pytest.mark.parametrize(
    ("break_release", "names", "says"), [pytest.param(b, n, s, id=i) for i, b, n, s in TWO_D_BAD_INPUTS]
)
def test_2d_layout_bad_input(
    avt_2d_release: Path,
    conversion_nnunet_dirs: NnunetDirs,
    break_release: Callable[[Path], None],
    names: str,
    says: str,
) -> None:
    break_release(avt_2d_release)
    assert_refused(lambda: convert_avt(avt_2d_release, 803, num_processes=2),
                   avt_2d_release, names, says, conversion_nnunet_dirs)


def test_console_command_overwrite_and_nnunet_integrity(
    figshare_release: Path, conversion_nnunet_dirs: NnunetDirs
) -> None:
    args = ["-i", str(figshare_release), "-np", "2"]
    assert run_console("nnUNetv2_resunet_convert_avt", args, conversion_nnunet_dirs).returncode == 0
    refused = run_console("nnUNetv2_resunet_convert_avt", args, conversion_nnunet_dirs)
    assert refused.returncode == 1 and "--overwrite" in refused.stderr
    replaced = run_console("nnUNetv2_resunet_convert_avt", [*args, "--overwrite"], conversion_nnunet_dirs)
    assert replaced.returncode == 0, replaced.stderr
    assert sorted(p.name for p in conversion_nnunet_dirs.raw.iterdir()) == ["Dataset803_AVT"]
    verified = verify_with_nnunet(803, conversion_nnunet_dirs, preprocess=False)
    assert verified.returncode == 0, verified.stdout[-3000:] + verified.stderr[-3000:]
    assert "verify_dataset_integrity Done" in verified.stdout
