"""Tests of nnUNetv2_resunet_convert_synapse on small replicas of TransUNet's release and of the raw BTCV release."""

from __future__ import annotations

import shutil
from collections.abc import Callable
from pathlib import Path

import h5py
import numpy as np
import pytest
import SimpleITK as sitk
from conversion_helpers import (
    SYNAPSE_TEST_CASES,
    SYNAPSE_TRAINING_CASES,
    NnunetDirs,
    assert_exact,
    assert_refused,
    case_ids,
    check_five_folds,
    load_json,
    read_volume,
    run_console,
    tree_digest,
    verify_with_nnunet,
)
from nnunetv2_resunet.dataset_conversion.common import ConversionError
from nnunetv2_resunet.dataset_conversion.convert_synapse import convert_synapse, main

# The replica release holds the cases of TransUNet's published lists (tests/data/published_splits), not our constants.
TEST_CASES = SYNAPSE_TEST_CASES
TRAIN_CASES = SYNAPSE_TRAINING_CASES
ALL_CASES = sorted(TEST_CASES + TRAIN_CASES)
SIZE = 16
BTCV_SPACING = (0.78, 0.78, 3.0)
BTCV_ORIGIN = (-172.3, -180.1, -368.0)
BTCV_DIRECTION = (-1.0, 0.0, 0.0, 0.0, -1.0, 0.0, 0.0, 0.0, 1.0)


def num_slices(case_id: str) -> int:
    """A different depth per case (2..4), so that volumes cannot be confused."""
    return 2 + int(case_id[4:]) % 3


def transunet_slice(case_id: str, z: int) -> tuple[np.ndarray, np.ndarray]:
    """Slice z of a case: image float32 in [0, 1] that encodes (case, z); label float32 with organs 0..8."""
    rng = np.random.default_rng(int(case_id[4:]) * 100 + z)
    image = (rng.random((SIZE, SIZE)) + z).astype(np.float32) / 10
    label = rng.integers(0, 9, (SIZE, SIZE)).astype(np.float32)
    return image, label


def transunet_volume(case_id: str) -> tuple[np.ndarray, np.ndarray]:
    slices = [transunet_slice(case_id, z) for z in range(num_slices(case_id))]
    return np.stack([s[0] for s in slices]), np.stack([s[1] for s in slices])


def make_transunet_release(root: Path) -> Path:
    """TransUNet's layout: train_npz/caseXXXX_sliceNNN.npz (18 cases) and test_vol_h5/caseXXXX.npy.h5 (12 cases)."""
    (root / "train_npz").mkdir(parents=True)
    (root / "test_vol_h5").mkdir()
    for case_id in TRAIN_CASES:
        for z in range(num_slices(case_id)):
            image, label = transunet_slice(case_id, z)
            np.savez(root / "train_npz" / f"{case_id}_slice{z:03d}.npz", image=image, label=label)
    for case_id in TEST_CASES:
        image, label = transunet_volume(case_id)
        with h5py.File(root / "test_vol_h5" / f"{case_id}.npy.h5", "w") as f:
            f["image"], f["label"] = image, label
    return root


def btcv_arrays(case_id: str) -> tuple[np.ndarray, np.ndarray]:
    """Image int16 (z, y, x) and label uint8 with all 13 BTCV organs present."""
    rng = np.random.default_rng(int(case_id[4:]))
    image = rng.integers(-1000, 1000, (3, SIZE, SIZE)).astype(np.int16)
    label = rng.integers(0, 14, (3, SIZE, SIZE)).astype(np.uint8)
    label.flat[:14] = np.arange(14)
    return image, label


def write_nifti(array: np.ndarray, path: Path) -> None:
    image = sitk.GetImageFromArray(array)
    image.SetSpacing(BTCV_SPACING)
    image.SetOrigin(BTCV_ORIGIN)
    image.SetDirection(BTCV_DIRECTION)
    sitk.WriteImage(image, str(path), useCompression=True)


def make_btcv_release(root: Path) -> Path:
    """Raw BTCV layout: RawData/Training/img/imgXXXX.nii.gz and RawData/Training/label/labelXXXX.nii.gz."""
    training = root / "RawData" / "Training"
    (training / "img").mkdir(parents=True)
    (training / "label").mkdir()
    for case_id in ALL_CASES:
        image, label = btcv_arrays(case_id)
        write_nifti(image, training / "img" / f"img{case_id[4:]}.nii.gz")
        write_nifti(label, training / "label" / f"label{case_id[4:]}.nii.gz")
    return root


@pytest.fixture
def transunet_release(tmp_path: Path) -> Path:
    return make_transunet_release(tmp_path / "Synapse")


@pytest.fixture
def btcv_release(tmp_path: Path) -> Path:
    return make_btcv_release(tmp_path / "BTCV")


def test_transunet_round_trip_and_split(transunet_release: Path, conversion_nnunet_dirs: NnunetDirs) -> None:
    before = tree_digest(transunet_release)
    out = convert_synapse(transunet_release, 801)
    assert out == conversion_nnunet_dirs.raw / "Dataset801_Synapse"
    assert case_ids(out / "imagesTr", "_0000") == case_ids(out / "labelsTr") == TRAIN_CASES
    assert case_ids(out / "imagesTs", "_0000") == case_ids(out / "labelsTs") == sorted(TEST_CASES)
    for case_id in ALL_CASES:
        subset = "Ts" if case_id in TEST_CASES else "Tr"
        image, label = transunet_volume(case_id)
        written = assert_exact(out / f"images{subset}" / f"{case_id}_0000.nii.gz", image)
        assert_exact(out / f"labels{subset}" / f"{case_id}.nii.gz", label.astype(np.uint8))
        assert written.GetSpacing() == (1.0, 1.0, 1.0)
    dataset = load_json(out / "dataset.json")
    assert dataset["numTraining"] == 18
    assert dataset["file_ending"] == ".nii.gz"
    assert dataset["channel_names"] == {"0": "CT"}
    assert list(dataset["labels"].values()) == list(range(9))
    assert "1x1x1" in dataset["description"]
    splits = load_json(conversion_nnunet_dirs.preprocessed / "Dataset801_Synapse" / "splits_final.json")
    check_five_folds(splits, TRAIN_CASES)
    assert tree_digest(transunet_release) == before


def test_transunet_user_spacing(transunet_release: Path, conversion_nnunet_dirs: NnunetDirs) -> None:
    out = convert_synapse(transunet_release, 801, spacing=(0.7, 0.8, 2.5))
    _, image = read_volume(out / "imagesTr" / "case0005_0000.nii.gz")
    _, label = read_volume(out / "labelsTr" / "case0005.nii.gz")
    np.testing.assert_allclose(image.GetSpacing(), (0.7, 0.8, 2.5))
    np.testing.assert_allclose(label.GetSpacing(), (0.7, 0.8, 2.5))
    assert "command line" in load_json(out / "dataset.json")["description"]


def test_btcv_label_mapping_geometry_and_split(btcv_release: Path, conversion_nnunet_dirs: NnunetDirs) -> None:
    before = tree_digest(btcv_release)
    out = convert_synapse(btcv_release, 802, "BTCV8")
    assert case_ids(out / "imagesTr", "_0000") == case_ids(out / "labelsTr") == TRAIN_CASES
    assert case_ids(out / "imagesTs", "_0000") == case_ids(out / "labelsTs") == sorted(TEST_CASES)
    # BTCV value -> TransUNet value: 8 aorta, 4 gallbladder, 3 left kidney, 2 right kidney, 6 liver, 11 pancreas,
    # 1 spleen, 7 stomach -> 1..8; 5, 9, 10, 12, 13 -> background
    expected_map = {0: 0, 1: 7, 2: 4, 3: 3, 4: 2, 5: 0, 6: 5, 7: 8, 8: 1, 9: 0, 10: 0, 11: 6, 12: 0, 13: 0}
    for case_id in ALL_CASES:
        subset = "Ts" if case_id in TEST_CASES else "Tr"
        image, label = btcv_arrays(case_id)
        mapped = np.vectorize(expected_map.get)(label).astype(np.uint8)
        for path, expected in [
            (out / f"images{subset}" / f"{case_id}_0000.nii.gz", image),
            (out / f"labels{subset}" / f"{case_id}.nii.gz", mapped),
        ]:
            written = assert_exact(path, expected)
            np.testing.assert_allclose(written.GetSpacing(), BTCV_SPACING, rtol=1e-6)
            np.testing.assert_allclose(written.GetOrigin(), BTCV_ORIGIN, rtol=1e-6)
            np.testing.assert_allclose(written.GetDirection(), BTCV_DIRECTION)
    splits = load_json(conversion_nnunet_dirs.preprocessed / "Dataset802_BTCV8" / "splits_final.json")
    check_five_folds(splits, TRAIN_CASES)
    assert tree_digest(btcv_release) == before


def test_overwrite_and_rerun(transunet_release: Path, conversion_nnunet_dirs: NnunetDirs) -> None:
    out = convert_synapse(transunet_release, 801)
    marker = out / "marker.txt"
    marker.write_text("from the first run")
    with pytest.raises(ConversionError, match="--overwrite"):
        convert_synapse(transunet_release, 801)
    assert marker.exists(), "a refused re-run must leave the existing dataset alone"
    assert main(["-i", str(transunet_release), "-d", "801", "-np", "1"]) == 1
    assert convert_synapse(transunet_release, 801, overwrite=True) == out
    assert not marker.exists()
    assert case_ids(out / "labelsTr") == TRAIN_CASES
    assert sorted(p.name for p in conversion_nnunet_dirs.raw.iterdir()) == ["Dataset801_Synapse"]


def test_refuses_an_id_used_by_another_dataset(transunet_release: Path, conversion_nnunet_dirs: NnunetDirs) -> None:
    (conversion_nnunet_dirs.raw / "Dataset801_Other").mkdir()
    with pytest.raises(ConversionError, match="Dataset801_Other"):
        convert_synapse(transunet_release, 801, overwrite=True)


def test_unset_environment(transunet_release: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("nnUNet_raw", raising=False)
    with pytest.raises(ConversionError, match="nnUNet_raw is not set"):
        convert_synapse(transunet_release, 801)


def _save_slice(path: Path, **arrays: np.ndarray) -> None:
    np.savez(path, **arrays)


def _truncate(path: Path) -> None:
    path.write_bytes(path.read_bytes()[: path.stat().st_size // 2])


LAST_TRAIN = TRAIN_CASES[-1]
LAST_SLICE = f"train_npz/{LAST_TRAIN}_slice000.npz"

# (id, how to break the replica, file the message must name, words the message must contain)
TRANSUNET_BAD_INPUTS: list[tuple[str, Callable[[Path], None], str, str]] = [
    ("missing_test_folder", lambda r: shutil.rmtree(r / "test_vol_h5"), "Synapse", "test folder"),
    ("truncated_npz", lambda r: _truncate(r / LAST_SLICE), LAST_SLICE, "cannot read"),
    ("corrupt_h5", lambda r: (r / "test_vol_h5/case0038.npy.h5").write_bytes(b"garbage"), "case0038", "cannot read"),
    (
        "missing_key",
        lambda r: _save_slice(r / LAST_SLICE, image=np.zeros((SIZE, SIZE), np.float32)),
        LAST_SLICE,
        "missing keys ['label']",
    ),
    (
        "shape_mismatch",
        lambda r: _save_slice(
            r / LAST_SLICE, image=np.zeros((SIZE, SIZE), np.float32), label=np.zeros((SIZE, 8), np.float32)
        ),
        LAST_SLICE,
        "shape",
    ),
    (
        "label_out_of_range",
        lambda r: _save_slice(
            r / LAST_SLICE, image=np.zeros((SIZE, SIZE), np.float32), label=np.full((SIZE, SIZE), 9, np.float32)
        ),
        f"{LAST_TRAIN}_slice",
        "out of range 0..8: [9",
    ),
    (
        "duplicate_slice",
        lambda r: _save_slice(
            r / f"train_npz/{LAST_TRAIN}_slice01.npz", image=np.zeros((SIZE, SIZE)), label=np.zeros((SIZE, SIZE))
        ),
        f"{LAST_TRAIN}_slice01.npz",
        "duplicate",
    ),
    (
        "duplicate_test_case",
        lambda r: (r / "test_vol_h5/case0001.h5").write_bytes((r / "test_vol_h5/case0001.npy.h5").read_bytes()),
        "case0001.h5",
        "duplicate",
    ),
    ("missing_slice", lambda r: (r / f"train_npz/{LAST_TRAIN}_slice001.npz").unlink(), LAST_TRAIN, "lacks slices [1]"),
    ("missing_test_case", lambda r: (r / "test_vol_h5/case0038.npy.h5").unlink(), "case0038", "missing"),
    (
        "nan_slice",
        lambda r: _save_slice(
            r / LAST_SLICE, image=np.full((SIZE, SIZE), np.nan, np.float32), label=np.zeros((SIZE, SIZE), np.float32)
        ),
        LAST_SLICE,
        "NaN",
    ),
    ("inf_test_volume", lambda r: _write_h5_image(r / "test_vol_h5/case0038.npy.h5", np.inf), "case0038", "NaN/inf"),
]


def _write_h5_image(path: Path, value: float) -> None:
    with h5py.File(path, "a") as f:
        image = f["image"][()]
        del f["image"]
        f["image"] = np.full_like(image, value)


@pytest.mark.parametrize(
    ("break_release", "names", "says"),
    [pytest.param(b, n, s, id=i) for i, b, n, s in TRANSUNET_BAD_INPUTS],
)
def test_transunet_bad_input(
    transunet_release: Path,
    conversion_nnunet_dirs: NnunetDirs,
    break_release: Callable[[Path], None],
    names: str,
    says: str,
) -> None:
    break_release(transunet_release)
    assert_refused(lambda: convert_synapse(transunet_release, 801, num_processes=2),
                   transunet_release, names, says, conversion_nnunet_dirs)


BTCV_BAD_INPUTS: list[tuple[str, Callable[[Path], None], str, str]] = [
    ("missing_labels", lambda t: shutil.rmtree(t / "label"), "label", "missing folder"),
    ("unpaired", lambda t: (t / "label/label0040.nii.gz").unlink(), "img0040", "do not pair"),
    ("truncated", lambda t: _truncate(t / "label/label0040.nii.gz"), "label0040", "cannot read"),
    (
        "label_out_of_range",
        lambda t: write_nifti(np.full((3, SIZE, SIZE), 14, np.uint8), t / "label/label0040.nii.gz"),
        "label0040",
        "out of range 0..13: [14]",
    ),
    (
        "shape_mismatch",
        lambda t: write_nifti(np.zeros((2, SIZE, SIZE), np.uint8), t / "label/label0040.nii.gz"),
        "label0040",
        "shape",
    ),
    (
        "duplicate_case",
        lambda t: (t / "img/img0040.nii").write_bytes(b"not used"),
        "img0040.nii",
        "duplicate",
    ),
    (
        "nan_image",
        lambda t: write_nifti(np.full((3, SIZE, SIZE), np.nan, np.float32), t / "img/img0040.nii.gz"),
        "img0040.nii.gz",
        "NaN",
    ),
    (
        "inf_image",
        lambda t: write_nifti(np.full((3, SIZE, SIZE), np.inf, np.float32), t / "img/img0040.nii.gz"),
        "img0040.nii.gz",
        "NaN/inf",
    ),
    (
        "direction_mismatch",
        lambda t: _write_with_direction(btcv_arrays("case0040")[1], t / "label/label0040.nii.gz"),
        "label0040.nii.gz",
        "direction",
    ),
]


def _write_with_direction(array: np.ndarray, path: Path) -> None:
    image = sitk.GetImageFromArray(array)
    image.SetSpacing(BTCV_SPACING)
    image.SetOrigin(BTCV_ORIGIN)
    image.SetDirection((1.0, 0.0, 0.0, 0.0, 1.0, 0.0, 0.0, 0.0, 1.0))
    sitk.WriteImage(image, str(path), useCompression=True)


@pytest.mark.parametrize(
    ("break_release", "names", "says"), [pytest.param(b, n, s, id=i) for i, b, n, s in BTCV_BAD_INPUTS]
)
def test_btcv_bad_input(
    btcv_release: Path,
    conversion_nnunet_dirs: NnunetDirs,
    break_release: Callable[[Path], None],
    names: str,
    says: str,
) -> None:
    break_release(btcv_release / "RawData" / "Training")
    assert_refused(lambda: convert_synapse(btcv_release, 802), btcv_release, names, says, conversion_nnunet_dirs)


def test_btcv_rejects_spacing(btcv_release: Path, conversion_nnunet_dirs: NnunetDirs) -> None:
    with pytest.raises(ConversionError, match="own spacing"):
        convert_synapse(btcv_release, 802, spacing=(1.0, 1.0, 1.0))


@pytest.mark.integration
def test_console_command_and_nnunet_integrity(transunet_release: Path, conversion_nnunet_dirs: NnunetDirs) -> None:
    result = run_console(
        "nnUNetv2_resunet_convert_synapse",
        ["-i", str(transunet_release), "-d", "801", "-np", "2"],
        conversion_nnunet_dirs,
    )
    assert result.returncode == 0, result.stderr
    assert case_ids(conversion_nnunet_dirs.raw / "Dataset801_Synapse" / "labelsTr") == TRAIN_CASES
    verified = verify_with_nnunet(801, conversion_nnunet_dirs, preprocess=False)
    assert verified.returncode == 0, verified.stdout[-3000:] + verified.stderr[-3000:]
    assert "verify_dataset_integrity Done" in verified.stdout
    failed = run_console(
        "nnUNetv2_resunet_convert_synapse", ["-i", str(transunet_release), "-d", "801"], conversion_nnunet_dirs
    )
    assert failed.returncode == 1 and "--overwrite" in failed.stderr


def test_partial_training_set_is_reported_and_recorded(
    transunet_release: Path, conversion_nnunet_dirs: NnunetDirs, capsys: pytest.CaptureFixture[str]
) -> None:
    for path in (transunet_release / "train_npz").glob("case0040_slice*.npz"):
        path.unlink()
    out = convert_synapse(transunet_release, 801)
    assert "1 of the 18 TransUNet training cases are missing: case0040;" in capsys.readouterr().err
    dataset = load_json(out / "dataset.json")
    assert dataset["training_cases"] == [c for c in TRAIN_CASES if c != "case0040"]
    assert dataset["training_set"] == {
        "reference": "TransUNet training cases (lists_Synapse/train.txt)",
        "published": 18,
        "missing": ["case0040"],
        "unlisted": [],
        "complete": False,
    }
    assert dataset["test_cases"] == sorted(TEST_CASES)


def test_complete_training_set_is_recorded(transunet_release: Path, conversion_nnunet_dirs: NnunetDirs) -> None:
    out = convert_synapse(transunet_release, 801)
    training_set = load_json(out / "dataset.json")["training_set"]
    assert training_set["complete"] is True and training_set["missing"] == [] and training_set["published"] == 18


@pytest.mark.parametrize("given", ["data/Synapse/train_npz", "data"])
def test_source_one_level_off(tmp_path: Path, conversion_nnunet_dirs: NnunetDirs, given: str) -> None:
    release = make_transunet_release(tmp_path / "data" / "Synapse")
    source = tmp_path / given
    with pytest.raises(ConversionError) as error:
        convert_synapse(source, 801)
    message = str(error.value)
    assert message.startswith(f"{source}: no Synapse layout") and "train_npz/" in message and "Training/img" in message
    assert f"pass -i '{release}'" in message
