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
    AVT_TEST_CASES,
    AVT_TRAINING_CASES,
    NnunetDirs,
    assert_exact,
    assert_refused,
    case_ids,
    check_five_folds,
    load_json,
    run_console,
    tree_digest,
    verify_with_nnunet,
)
from nnunetv2_resunet.dataset_conversion.common import ConversionError
from nnunetv2_resunet.dataset_conversion.convert_avt import convert_avt

# ParaTransCNN's published test list (tests/data/published_splits), not our constant.
TEST_CASES = AVT_TEST_CASES

SUFFIXES = {"R1": " (AD)", "R2": " (AD)", "R5": " (AD)", "R6": " (AAA)", "R7": " (AD)", "R8": " (AD)"}
CASES = {
    "Dongyang": [f"D{n}" for n in range(1, 19)],
    "KiTS": [f"K{n}" for n in range(1, 21)],
    "Rider": [f"R{n}{SUFFIXES.get(f'R{n}', '')}" for n in range(1, 19)],
}
ALL_NAMES = [name for names in CASES.values() for name in names]
TRAIN_NAMES = [n for n in ALL_NAMES if n not in TEST_CASES]
assert sorted(TRAIN_NAMES) == AVT_TRAINING_CASES  # the release's 56 cases are the published test and training lists
SAFE = {n: n.replace(" (", "_").replace(")", "") for n in ALL_NAMES}
SPACING = (0.8, 0.8, 2.0)
ORIGIN = (10.0, -20.0, 30.0)
DIRECTION = (1.0, 0.0, 0.0, 0.0, -1.0, 0.0, 0.0, 0.0, 1.0)


FIGSHARE_SHAPE = (3, 6, 7)


def hu_image(name: str) -> np.ndarray:
    """A CT in Hounsfield units: air (about -1000) around tissue and contrast-filled vessels (-100..600)."""
    rng = np.random.default_rng(zlib.crc32(f"hu/{name}".encode()))
    air = rng.integers(-1024, -950, FIGSHARE_SHAPE)
    tissue = rng.integers(-100, 600, FIGSHARE_SHAPE)
    return np.where(rng.random(FIGSHARE_SHAPE) < 0.4, air, tissue).astype(np.int16)


def figshare_arrays(name: str) -> tuple[np.ndarray, np.ndarray]:
    """Image int16 as stored and a mask with several non-zero values (as segmentation exports may have).

    KiTS and Rider images are stored as HU + 1024 (air about 0), as AortaExplorer's notes on AVT report; Dongyang's
    are in HU.
    """
    rng = np.random.default_rng(zlib.crc32(name.encode()))
    image = hu_image(name) + (1024 if name[0] in "KR" else 0)
    return image.astype(np.int16), rng.choice([0, 1, 255], FIGSHARE_SHAPE).astype(np.uint8)


IDENTITY = (1.0, 0.0, 0.0, 0.0, 1.0, 0.0, 0.0, 0.0, 1.0)


def write_nrrd(
    array: np.ndarray,
    path: Path,
    direction: tuple[float, ...] = DIRECTION,
    offset: tuple[float, float, float] = (0, 0, 0),
) -> None:
    """Write with the release's geometry; ``offset`` (voxels, x y z) places the grid inside the image's, like a
    segmentation 3D Slicer saved on a cropped sub-grid."""
    image = sitk.GetImageFromArray(array)
    image.SetSpacing(SPACING)
    image.SetDirection(direction)
    shift = np.asarray(direction).reshape(3, 3) @ (np.asarray(offset) * np.asarray(SPACING))
    image.SetOrigin(tuple(np.asarray(ORIGIN) + shift))
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
        _, mask = figshare_arrays(name)
        for path, expected in [
            (out / f"images{subset}" / f"{SAFE[name]}_0000.nii.gz", hu_image(name)),
            (out / f"labels{subset}" / f"{SAFE[name]}.nii.gz", (mask != 0).astype(np.uint8)),
        ]:
            written = assert_exact(path, expected)
            np.testing.assert_allclose(written.GetSpacing(), SPACING)
            np.testing.assert_allclose(written.GetOrigin(), ORIGIN)
            np.testing.assert_allclose(written.GetDirection(), DIRECTION)
    dataset = load_json(out / "dataset.json")
    assert dataset["original_case_names"] == {SAFE[n]: n for n in ALL_NAMES}
    assert dataset["numTraining"] == 38 and dataset["labels"] == {"background": 0, "aorta": 1}
    assert dataset["hu_shift"]["mode"] == "auto"
    intensity = dataset["case_intensity"]
    assert sorted(c for c, v in intensity.items() if v["subtracted"] == 1024) == sorted(
        SAFE[n] for n in ALL_NAMES if n[0] in "KR"
    )
    assert all(v["subtracted"] == 0 and v["air_value"] < -900 for c, v in intensity.items() if c[0] == "D")
    assert dataset["training_set"]["complete"] is True and dataset["training_set"]["published"] == 38
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
        "mask_larger_than_image",
        lambda r: write_nrrd(np.zeros((4, 6, 7), np.uint8), r / f"{LAST_FIGSHARE}.seg.nrrd"),
        "R9.seg.nrrd",
        "outside the image",
    ),
    ("duplicate_collection", lambda r: shutil.copytree(r / "Rider", r / "rider"), "rider", "duplicate"),
    ("missing_test_case", lambda r: shutil.rmtree(r / "Rider" / "R7 (AD)"), "R7 (AD)", "missing"),
    (
        "air_neither_hu_nor_shifted",
        lambda r: write_nrrd((hu_image("R9") + 600).astype(np.int16), r / f"{LAST_FIGSHARE}.nrrd"),
        "R9.nrrd",
        "-hu_shift none",
    ),
    (
        "inf_image",
        lambda r: write_nrrd(np.full(FIGSHARE_SHAPE, np.inf, np.float32), r / f"{LAST_FIGSHARE}.nrrd"),
        "R9.nrrd",
        "NaN/inf",
    ),
    (
        "direction_mismatch",
        lambda r: write_nrrd(figshare_arrays("R9")[1], r / f"{LAST_FIGSHARE}.seg.nrrd", direction=IDENTITY),
        "R9.seg.nrrd",
        "direction",
    ),
    (
        "mask_grid_outside_image",
        lambda r: write_nrrd(np.ones((2, 3, 4), np.uint8), r / f"{LAST_FIGSHARE}.seg.nrrd", offset=(5, 0, 0)),
        "R9.seg.nrrd",
        "outside the image",
    ),
    (
        "mask_grid_between_voxels",
        lambda r: write_nrrd(np.ones((2, 3, 4), np.uint8), r / f"{LAST_FIGSHARE}.seg.nrrd", offset=(0.5, 0, 0)),
        "R9.seg.nrrd",
        "between",
    ),
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
    (
        "nan_train_slice",
        lambda r: np.savez(r / LAST_TRAIN, image=np.full((8, 8), np.nan), label=np.zeros((8, 8))),
        LAST_TRAIN,
        "NaN",
    ),
    (
        "singular_direction",
        lambda r: _set_key(r / LAST_TEST, "direction", np.zeros((3, 3))),
        LAST_TEST,
        "direction",
    ),
    (
        "nan_test_image",
        lambda r: write_test_volume(r / LAST_TEST, np.full((4, 8, 8), np.nan, np.float32), np.zeros((4, 8, 8), "u1")),
        LAST_TEST,
        "NaN",
    ),
]


def _set_key(path: Path, key: str, value: np.ndarray) -> None:
    with h5py.File(path, "a") as f:
        del f[key]
        f[key] = value


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


@pytest.mark.integration
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


def test_figshare_hu_shift_none_keeps_values_and_warns(
    figshare_release: Path, conversion_nnunet_dirs: NnunetDirs, capsys: pytest.CaptureFixture[str]
) -> None:
    out = convert_avt(figshare_release, 803, hu_shift="none")
    for name in ("K1", "D1", "R9"):
        assert_exact(out / "imagesTr" / f"{name}_0000.nii.gz", figshare_arrays(name)[0])
    said = capsys.readouterr().err
    assert "two intensity scales" in said and "K1" in said
    dataset = load_json(out / "dataset.json")
    assert dataset["hu_shift"]["mode"] == "none"
    assert {v["subtracted"] for v in dataset["case_intensity"].values()} == {0}
    assert dataset["case_intensity"]["K1"]["air_value"] > -100


def test_figshare_only_collection_folders_hold_cases(
    figshare_release: Path, conversion_nnunet_dirs: NnunetDirs, capsys: pytest.CaptureFixture[str]
) -> None:
    """A user's predictions/, a backup copy inside a case folder: image + .seg.nrrd, but not cases."""
    for folder in (figshare_release / "predictions" / "P1", figshare_release / "Dongyang" / "D1" / "backup"):
        folder.mkdir(parents=True)
        image, mask = figshare_arrays("D1")
        write_nrrd(image, folder / "X.nrrd")
        write_nrrd(mask, folder / "X.seg.nrrd")
    out = convert_avt(figshare_release, 803)
    assert case_ids(out / "labelsTr") == sorted(SAFE[n] for n in TRAIN_NAMES)
    assert "predictions" in capsys.readouterr().out


def test_figshare_collections_extracted_twice(figshare_release: Path, conversion_nnunet_dirs: NnunetDirs) -> None:
    """Unzipping KiTS.zip into a folder KiTS/ gives KiTS/KiTS/K1/..."""
    (figshare_release / "KiTS").rename(figshare_release / "KiTS-inner")
    (figshare_release / "KiTS").mkdir()
    (figshare_release / "KiTS-inner").rename(figshare_release / "KiTS" / "KiTS")
    out = convert_avt(figshare_release, 803)
    assert case_ids(out / "labelsTr") == sorted(SAFE[n] for n in TRAIN_NAMES)


def test_figshare_mask_on_a_cropped_subgrid_is_placed_on_the_image_grid(
    figshare_release: Path, conversion_nnunet_dirs: NnunetDirs
) -> None:
    crop = np.zeros((2, 3, 4), np.uint8)
    crop[0, 1, 2] = crop[1, 2, 3] = 1
    write_nrrd(crop, figshare_release / f"{LAST_FIGSHARE}.seg.nrrd", offset=(2, 1, 1))
    out = convert_avt(figshare_release, 803)
    expected = np.zeros(FIGSHARE_SHAPE, np.uint8)
    expected[1:3, 1:4, 2:6] = crop
    written = assert_exact(out / "labelsTr" / "R9.nii.gz", expected)
    np.testing.assert_allclose(written.GetOrigin(), ORIGIN)


def test_partial_training_set_is_reported_and_recorded(
    figshare_release: Path, conversion_nnunet_dirs: NnunetDirs, capsys: pytest.CaptureFixture[str]
) -> None:
    shutil.rmtree(figshare_release / "Dongyang" / "D1")
    out = convert_avt(figshare_release, 803)
    assert "1 of the 38 ParaTransCNN training cases are missing: D1;" in capsys.readouterr().err
    training_set = load_json(out / "dataset.json")["training_set"]
    assert training_set["missing"] == ["D1"] and training_set["complete"] is False


def test_source_one_level_too_deep(figshare_release: Path, conversion_nnunet_dirs: NnunetDirs) -> None:
    with pytest.raises(ConversionError) as error:
        convert_avt(figshare_release / "KiTS", 803)
    message = str(error.value)
    assert message.startswith(f"{figshare_release / 'KiTS'}: no AVT layout"), message
    assert "KiTS/, Rider/, Dongyang/" in message and f"pass -i '{figshare_release}'" in message
