"""Helpers and fixtures shared by the dataset converter tests (tests/dataset_conversion/test_*.py).

Kept out of nnunet_workspace.py so that other test suites are unaffected; test modules import what they use and wrap
``make_nnunet_dirs`` in a module-local fixture.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import shutil
import subprocess
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest
import SimpleITK as sitk
from nnunet_workspace import TEST_DATA, console_script

# ----------------------------------------------------------------------------------------------------------------------
# The papers' published split lists (tests/data/published_splits/README.md: where each file comes from)
# ----------------------------------------------------------------------------------------------------------------------

PUBLISHED_SPLITS = TEST_DATA / "published_splits"


def published_lines(path: str) -> list[str]:
    """The non-empty lines of a published list file, in its order."""
    return [line.strip() for line in (PUBLISHED_SPLITS / path).read_text(encoding="utf-8").splitlines() if line.strip()]


def _names(path: str, pattern: str) -> list[str]:
    """The first group of ``pattern`` in every line of a list (each line must match), sorted and deduplicated."""
    matches = [re.fullmatch(pattern, line) for line in published_lines(path)]
    assert all(matches), f"{path}: lines not of the form {pattern}"
    return sorted({m[1] for m in matches})


#: TransUNet's Synapse test volumes and training cases (lists_Synapse/test_vol.txt, train.txt).
SYNAPSE_TEST_CASES = _names("transunet_synapse/test_vol.txt", r"(case\d{4})")
SYNAPSE_TRAINING_CASES = _names("transunet_synapse/train.txt", r"(case\d{4})_slice\d{3}")
#: The ACDC protocol of TransUNet/Swin-Unet (lists_ACDC/test.txt, valid.txt, train.txt), as patientXXX.
ACDC_TEST_PATIENTS = [f"patient{n}" for n in _names("agileformer_acdc/test.txt", r"case_(\d{3})_volume_E[DS]\.npz")]
ACDC_VALIDATION_PATIENTS = [f"patient{n}" for n in _names("agileformer_acdc/valid.txt",
                                                          r"case_(\d{3})_sliceE[DS]_\d+\.npz")]
ACDC_TRAINING_PATIENTS = [f"patient{n}" for n in _names("agileformer_acdc/train.txt",
                                                        r"case_(\d{3})_sliceE[DS]_\d+\.npz")]
#: ParaTransCNN's AVT test cases, by their release names in the list's order (lists_AVT/test_vol.txt), and the
#: cases of its training slices (lists_AVT/train.txt).
AVT_TEST_CASES = published_lines("paratranscnn_avt/test_vol.txt")
AVT_TRAINING_CASES = _names("paratranscnn_avt/train.txt", r"(.+)_slice_\d+")


@dataclass(frozen=True)
class NnunetDirs:
    """The three nnU-Net folders of one test, and an environment for subprocesses that points at them."""

    raw: Path
    preprocessed: Path
    results: Path

    def env(self) -> dict[str, str]:
        env = dict(os.environ)
        env.update(
            nnUNet_raw=str(self.raw), nnUNet_preprocessed=str(self.preprocessed), nnUNet_results=str(self.results)
        )
        return env


def make_nnunet_dirs(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> NnunetDirs:
    """Empty nnU-Net folders under tmp_path, exported as env vars (nnunetv2.paths reads them lazily)."""
    dirs = NnunetDirs(tmp_path / "nnUNet_raw", tmp_path / "nnUNet_preprocessed", tmp_path / "nnUNet_results")
    for folder in (dirs.raw, dirs.preprocessed, dirs.results):
        folder.mkdir()
        monkeypatch.setenv(folder.name, str(folder))
    return dirs


def tree_digest(root: Path) -> dict[str, str]:
    """SHA-256 of every file under ``root``, keyed by relative path (to prove a source was left unchanged)."""
    return {
        str(p.relative_to(root)): hashlib.sha256(p.read_bytes()).hexdigest()
        for p in sorted(root.rglob("*"))
        if p.is_file()
    }


def read_volume(path: Path) -> tuple[np.ndarray, sitk.Image]:
    """Array (z, y, x) and image of a converted file."""
    image = sitk.ReadImage(str(path))
    return sitk.GetArrayFromImage(image), image


def assert_exact(path: Path, expected: np.ndarray) -> sitk.Image:
    """The file holds exactly ``expected``: same shape, dtype and values."""
    array, image = read_volume(path)
    assert array.shape == expected.shape, (path, array.shape, expected.shape)
    assert array.dtype == expected.dtype, (path, array.dtype, expected.dtype)
    np.testing.assert_array_equal(array, expected, err_msg=str(path))
    return image


def assert_nothing_written(dirs: NnunetDirs) -> None:
    """No dataset, no hidden build folder and no split were left behind."""
    assert sorted(p.name for p in dirs.raw.iterdir()) == []
    assert sorted(p.name for p in dirs.preprocessed.rglob("*")) == []


def assert_refused(convert: Callable[[], object], source: Path, names: str, says: str, dirs: NnunetDirs) -> None:
    """``convert()`` raises a ConversionError naming ``names`` and saying ``says``, writes nothing and leaves
    ``source`` (which may be missing altogether) unchanged."""
    from nnunetv2_resunet.dataset_conversion.common import ConversionError

    before = tree_digest(source) if source.exists() else {}
    with pytest.raises(ConversionError) as error:
        convert()
    message = str(error.value)
    # pytest's temporary folder is named after the test id ("..._direction_mismatch0"): look for the words elsewhere
    words = message.replace(str(source.parent), "<tmp>")
    assert names in message and says in words, message
    assert_nothing_written(dirs)
    assert (tree_digest(source) if source.exists() else {}) == before


def load_json(path: Path) -> object:
    return json.loads(path.read_text(encoding="utf-8"))


def case_ids(folder: Path, channel_suffix: str = "") -> list[str]:
    """Case IDs of the .nii.gz files in ``folder`` (``channel_suffix="_0000"`` for images folders)."""
    ending = f"{channel_suffix}.nii.gz"
    return sorted(p.name[: -len(ending)] for p in folder.glob(f"*{ending}"))


def run_console(
    name: str, args: list[str], dirs: NnunetDirs, prefix: Sequence[str] = ()
) -> subprocess.CompletedProcess[str]:
    """Run an installed console script with the test's nnU-Net folders (``prefix``: a wrapper command)."""
    return subprocess.run(
        [*prefix, *console_script(name), *args], env=dirs.env(), capture_output=True, text=True, timeout=600,
        check=False,
    )


def permissions_bind() -> list[str]:
    """Command prefix under which file permissions bind, so a test can make a folder read-only.

    root ignores permission bits (CAP_DAC_OVERRIDE); ``setpriv`` runs the command as root without capabilities.
    """
    if os.geteuid() != 0:
        return []
    setpriv = shutil.which("setpriv")
    if setpriv is None:
        pytest.fail("tests run as root and setpriv (util-linux) is missing: read-only folders cannot be tested")
    return [setpriv, "--inh-caps=-all", "--bounding-set=-all"]


def hidden_entries(dirs: NnunetDirs) -> list[str]:
    """Hidden files and folders the converters may have left in nnUNet_raw or nnUNet_preprocessed."""
    return sorted(str(p) for root in (dirs.raw, dirs.preprocessed) for p in root.iterdir() if p.name.startswith("."))


def verify_with_nnunet(dataset_id: int, dirs: NnunetDirs, preprocess: bool = True) -> subprocess.CompletedProcess[str]:
    """``nnUNetv2_plan_and_preprocess -d ID -c 2d --verify_dataset_integrity -np 1``, nnU-Net's installed command.

    ``preprocess=False`` adds ``--no_pp``: integrity check, fingerprint and plans only, which saves time on replicas.
    """
    command = [
        *console_script("nnUNetv2_plan_and_preprocess"),
        "-d",
        str(dataset_id),
        "-c",
        "2d",
        "--verify_dataset_integrity",
        "-np",
        "1",
        "-npfp",
        "1",
        "--no_pbar",
        *([] if preprocess else ["--no_pp"]),
    ]
    return subprocess.run(command, env=dirs.env(), capture_output=True, text=True, timeout=600, check=False)


def check_five_folds(splits: list[dict[str, list[str]]], training_ids: list[str]) -> None:
    """Five folds whose validation sets partition the training cases, each fold's train set being the rest: exactly
    the folds nnU-Net's trainer makes itself when a dataset has no splits_final.json (``generate_crossval_split``
    over the sorted case IDs, seed 12345, 5 folds: nnUNetTrainer.do_split)."""
    from nnunetv2.utilities.crossval_split import generate_crossval_split

    nnunet = generate_crossval_split(sorted(training_ids), seed=12345, n_splits=5)
    assert splits == [{"train": sorted(f["train"]), "val": sorted(f["val"])} for f in nnunet]
    assert len(splits) == 5
    validation = [c for fold in splits for c in fold["val"]]
    assert sorted(validation) == sorted(training_ids)
    for fold in splits:
        assert sorted(fold["train"] + fold["val"]) == sorted(training_ids)
        assert not set(fold["train"]) & set(fold["val"])


def doomed_item(item: str) -> str:
    """A case job for ``parallel_map``'s tests (importable by its spawned workers): ``"die"`` ends its worker
    process mid-case (as the kernel's out-of-memory killer would), ``"fail"`` raises a ConversionError, anything
    else takes a moment."""
    import time

    from nnunetv2_resunet.dataset_conversion.common import ConversionError

    if item == "die":
        os._exit(1)
    if item == "fail":
        raise ConversionError(f"{item}: this case is broken")
    time.sleep(0.3)
    return item
