"""What every converter guarantees about its output, whatever the release.

Dataset and split land together or not at all; an overwrite clears what nnU-Net derived from the old dataset (or
refuses, naming what it cannot judge); unwritable or missing output folders are one clear line; runs interrupted by
SIGTERM or SIGKILL (real subprocesses, stopped mid-conversion) leave nothing that the next run does not clean up, and
a run that is still writing is never touched; a case that fails, or a worker process that dies, ends the run with
its error instead of hanging it.
"""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import SimpleITK as sitk
from conversion_helpers import (
    NnunetDirs,
    case_ids,
    hidden_entries,
    load_json,
    make_nnunet_dirs,
    permissions_bind,
    run_console,
    verify_with_nnunet,
)
from nnunet_workspace import process_alive
from nnunetv2_resunet.dataset_conversion.common import ConversionError
from nnunetv2_resunet.dataset_conversion.convert_acdc import convert_acdc
from nnunetv2_resunet.dataset_conversion.convert_synapse import convert_synapse
from test_conversion_acdc import make_h5_replica
from test_conversion_avt import make_figshare_release
from test_conversion_synapse import TRAIN_CASES, make_transunet_release

SYNAPSE = "Dataset801_Synapse"


@pytest.fixture
def dirs(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> NnunetDirs:
    return make_nnunet_dirs(tmp_path, monkeypatch)


@pytest.fixture
def synapse_release(tmp_path: Path) -> Path:
    return make_transunet_release(tmp_path / "Synapse")


def assert_one_error_line(result: subprocess.CompletedProcess[str], names: str, says: str) -> None:
    """The command failed with exactly one ``CONVERTER: error:`` line naming ``names`` and saying ``says``, no
    traceback."""
    errors = [line for line in result.stderr.splitlines() if re.match(r"nnUNetv2_resunet_convert_\w+: error: ", line)]
    assert result.returncode == 1, result.stdout[-2000:] + result.stderr[-3000:]
    assert "Traceback" not in result.stderr, result.stderr[-3000:]
    assert len(errors) == 1 and names in errors[0] and says in errors[0], result.stderr[-3000:]


# ----------------------------------------------------------------------------------------------------------------------
# Dataset and split together
# ----------------------------------------------------------------------------------------------------------------------


def test_split_is_written_into_the_dataset_too(synapse_release: Path, dirs: NnunetDirs) -> None:
    out = convert_synapse(synapse_release, 801)
    # nnU-Net's planner copies DatasetXXX/splits_final.json into nnUNet_preprocessed (or checks it matches there)
    assert load_json(out / "splits_final.json") == load_json(dirs.preprocessed / SYNAPSE / "splits_final.json")


@pytest.mark.parametrize("read_only", ["preprocessed_root", "preprocessed_dataset"])
def test_overwrite_that_cannot_write_the_split_keeps_the_old_dataset_and_split(
    tmp_path: Path, dirs: NnunetDirs, read_only: str
) -> None:
    """--overwrite -split transunet over an nnunet conversion must not leave test patients in an old split."""
    source = make_h5_replica(tmp_path / "ACDC", range(1, 101))
    convert_acdc(source, 802, num_processes=2)
    dataset, split = dirs.raw / "Dataset802_ACDC", dirs.preprocessed / "Dataset802_ACDC"
    old_json, old_split = load_json(dataset / "dataset.json"), load_json(split / "splits_final.json")
    locked = dirs.preprocessed if read_only == "preprocessed_root" else split
    locked.chmod(0o555)
    try:
        result = run_console(
            "nnUNetv2_resunet_convert_acdc",
            ["-i", str(source), "-split", "transunet", "--overwrite", "-np", "1"],
            dirs,
            prefix=permissions_bind(),
        )
    finally:
        locked.chmod(0o755)
    assert_one_error_line(result, str(locked), "Permission denied")
    assert load_json(dataset / "dataset.json") == old_json and old_json["split"] == "nnunet"
    assert load_json(split / "splits_final.json") == old_split
    assert len(case_ids(dataset / "labelsTr")) == 200 and not (dataset / "imagesTs").exists()
    assert hidden_entries(dirs) == []


def test_overwrite_of_a_read_only_dataset_is_one_line(synapse_release: Path, dirs: NnunetDirs) -> None:
    out = convert_synapse(synapse_release, 801)
    before = sorted(str(p) for p in out.rglob("*"))
    out.chmod(0o555)
    try:
        args = ["-i", str(synapse_release), "-np", "1", "--overwrite"]
        result = run_console("nnUNetv2_resunet_convert_synapse", args, dirs, prefix=permissions_bind())
    finally:
        out.chmod(0o755)
    assert_one_error_line(result, str(out), "cannot write here (Permission denied)")
    assert sorted(str(p) for p in out.rglob("*")) == before and hidden_entries(dirs) == []


def test_read_only_raw_folder_is_one_line(synapse_release: Path, dirs: NnunetDirs) -> None:
    dirs.raw.chmod(0o555)
    try:
        args = ["-i", str(synapse_release), "-np", "1"]
        result = run_console("nnUNetv2_resunet_convert_synapse", args, dirs, prefix=permissions_bind())
    finally:
        dirs.raw.chmod(0o755)
    assert_one_error_line(result, str(dirs.raw), "cannot write here (Permission denied)")
    assert list(dirs.raw.iterdir()) == [] and list(dirs.preprocessed.iterdir()) == []


@pytest.mark.parametrize("variable", ["nnUNet_raw", "nnUNet_preprocessed"])
def test_missing_output_folder_is_refused_not_created(
    synapse_release: Path, dirs: NnunetDirs, monkeypatch: pytest.MonkeyPatch, variable: str
) -> None:
    missing = dirs.raw.parent / "unmounted" / variable
    monkeypatch.setenv(variable, str(missing))
    with pytest.raises(ConversionError, match=f"{missing}: {variable} points to a folder that does not exist"):
        convert_synapse(synapse_release, 801)
    assert not missing.parent.exists()


# ----------------------------------------------------------------------------------------------------------------------
# What an overwrite does with nnUNet_preprocessed/DatasetXXX_Name
# ----------------------------------------------------------------------------------------------------------------------


def plan_with_nnunet(dirs: NnunetDirs) -> Path:
    """nnU-Net's fingerprint and plans (real), plus a data folder and gt_segmentations as preprocessing leaves them."""
    verified = verify_with_nnunet(801, dirs, preprocess=False)
    assert verified.returncode == 0, verified.stdout[-2000:] + verified.stderr[-2000:]
    folder = dirs.preprocessed / SYNAPSE
    (folder / "nnUNetPlans_2d").mkdir()
    (folder / "nnUNetPlans_2d" / "case0005.b2nd").write_bytes(b"old arrays")
    (folder / "nnUNetPlans_2d" / "case0005.pkl").write_bytes(b"old properties")
    (folder / "gt_segmentations").mkdir()
    (folder / "gt_segmentations" / "case0005.nii.gz").write_bytes(b"old label")
    assert {"dataset_fingerprint.json", "nnUNetPlans.json", "dataset.json"} <= {p.name for p in folder.iterdir()}
    return folder


@pytest.mark.integration
def test_overwrite_clears_what_nnunet_derived_from_the_old_dataset(
    synapse_release: Path, dirs: NnunetDirs, capsys: pytest.CaptureFixture[str]
) -> None:
    convert_synapse(synapse_release, 801)
    folder = plan_with_nnunet(dirs)
    out = convert_synapse(synapse_release, 801, spacing=(0.8, 0.8, 3.0), overwrite=True)
    assert sorted(p.name for p in folder.iterdir()) == ["splits_final.json"]
    assert load_json(folder / "splits_final.json") == load_json(out / "splits_final.json")
    said = capsys.readouterr().out
    assert "dataset_fingerprint.json" in said and "nnUNetPlans_2d/" in said and "nnUNetv2_plan_and_preprocess" in said
    assert hidden_entries(dirs) == []


@pytest.mark.integration
def test_overwrite_refuses_files_it_cannot_judge(synapse_release: Path, dirs: NnunetDirs) -> None:
    out = convert_synapse(synapse_release, 801)
    folder = plan_with_nnunet(dirs)
    (folder / "my_notes.txt").write_text("which folds I ran")
    (out / "marker").write_text("first conversion")
    before = sorted(p.name for p in folder.iterdir())
    with pytest.raises(ConversionError, match=r"my_notes\.txt.*move them out of that folder"):
        convert_synapse(synapse_release, 801, overwrite=True)
    assert (out / "marker").exists() and sorted(p.name for p in folder.iterdir()) == before


@pytest.mark.integration
def test_stale_preprocessed_data_without_overwrite_is_refused(synapse_release: Path, dirs: NnunetDirs) -> None:
    """A raw dataset deleted by hand leaves its fingerprint behind, which nnU-Net would reuse for the new one."""
    out = convert_synapse(synapse_release, 801)
    folder = plan_with_nnunet(dirs)
    for path in sorted(out.rglob("*"), reverse=True):
        path.rmdir() if path.is_dir() else path.unlink()
    out.rmdir()
    (folder / "splits_final.json").unlink()
    with pytest.raises(ConversionError, match=r"dataset_fingerprint\.json.*pass --overwrite"):
        convert_synapse(synapse_release, 801)
    assert not out.exists()


# ----------------------------------------------------------------------------------------------------------------------
# Interrupts: a real converter process, stopped after it has written its first file
# ----------------------------------------------------------------------------------------------------------------------

# Runs the real console entry point, but stops at one point (PAUSE_AT) and waits there, after writing its pid into
# PAUSE_DIR, until PAUSE_DIR/go exists (or it is killed):
#   case: after a case file is written (the converter itself with -np 1, its spawned workers otherwise, which import
#         this file as __mp_main__);
#   before_commit_record: in the final swap, after the old dataset and preprocessed folder were moved aside, before
#         commit.json is written;
#   after_commit_record: in the final swap, after commit.json, before the new folders are moved into place.
PAUSING_DRIVER = """
import os, sys, time
import nnunetv2_resunet.dataset_conversion.jobs as jobs
import nnunetv2_resunet.dataset_conversion.transaction as transaction


def pause(where):
    with open(os.path.join(os.environ["PAUSE_DIR"], str(os.getpid())), "w") as f:
        f.write(where)
    go, deadline = os.path.join(os.environ["PAUSE_DIR"], "go"), time.monotonic() + 600
    while not os.path.exists(go) and time.monotonic() < deadline:
        time.sleep(0.05)


_write_volume, _write_json = jobs.write_volume, transaction.write_json_atomically
_roll_forward = transaction._roll_forward


def write_volume(array, geometry, path):
    _write_volume(array, geometry, path)
    pause(str(path))


def write_json_atomically(content, path):
    if path.name == transaction.COMMIT_FILE:
        pause(str(path))
    _write_json(content, path)


def roll_forward(*args):
    pause("roll forward")
    _roll_forward(*args)


point = os.environ.get("PAUSE_AT", "case")
if point == "case":
    jobs.write_volume = write_volume
elif point == "before_commit_record":
    transaction.write_json_atomically = write_json_atomically
else:
    transaction._roll_forward = roll_forward

if __name__ == "__main__":
    import importlib

    converter = importlib.import_module("nnunetv2_resunet.dataset_conversion." + os.environ["CONVERTER"])
    sys.exit(converter.main(sys.argv[1:]))
"""


class PausedConversion:
    """A converter's console entry point in a subprocess, waiting at ``pause_at`` (see ``PAUSING_DRIVER``); in a
    process group of its own, so that a Ctrl-C can reach it and its workers together."""

    def __init__(
        self, tmp_path: Path, dirs: NnunetDirs, source: Path, args: list[str], converter: str = "convert_synapse",
        pause_at: str = "case",
    ):
        self.pause_dir = tmp_path / f"paused-{len(list(tmp_path.glob('paused-*')))}"
        self.pause_dir.mkdir()
        driver = tmp_path / "pausing_driver.py"
        driver.write_text(PAUSING_DRIVER)
        self.process = subprocess.Popen(
            [sys.executable, str(driver), "-i", str(source), *args],
            env={**dirs.env(), "PAUSE_DIR": str(self.pause_dir), "CONVERTER": converter, "PAUSE_AT": pause_at},
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            start_new_session=True,
        )
        deadline = time.monotonic() + 180
        while not any(self.pause_dir.iterdir()):
            if self.process.poll() is not None or time.monotonic() > deadline:
                out, err = self.process.communicate(timeout=30)
                code = self.process.returncode
                pytest.fail(f"the converter never paused (exit {code}):\n{out[-2000:]}\n{err[-3000:]}")
            time.sleep(0.05)

    @property
    def writer_pids(self) -> list[int]:
        return [int(p.name) for p in self.pause_dir.iterdir() if p.name.isdigit()]

    def stop(self, signum: int) -> tuple[int, str, str]:
        self.process.send_signal(signum)
        out, err = self.process.communicate(timeout=120)
        return self.process.returncode, out, err

    def wait_for_writers(self, count: int, seconds: float = 180) -> list[int]:
        """Wait until ``count`` processes have paused (both workers of -np 2, past their start-up); their pids."""
        deadline = time.monotonic() + seconds
        while len(self.writer_pids) < count:
            assert self.process.poll() is None and time.monotonic() < deadline, f"{count} writers never paused"
            time.sleep(0.05)
        return self.writer_pids

    def go_on(self) -> tuple[int, str, str]:
        """Let the paused process continue; its exit code and output."""
        (self.pause_dir / "go").write_text("")
        out, err = self.process.communicate(timeout=120)
        return self.process.returncode, out, err

    def kill_everything(self) -> None:
        for pid in [self.process.pid, *self.writer_pids]:
            if process_alive(pid):
                os.kill(pid, signal.SIGKILL)
        if self.process.poll() is None:
            self.process.communicate(timeout=30)


def wait_until_dead(pids: list[int], seconds: float = 20) -> None:
    deadline = time.monotonic() + seconds
    while any(process_alive(p) for p in pids) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert not any(process_alive(p) for p in pids), f"still running: {[p for p in pids if process_alive(p)]}"


RELEASES = {
    "convert_synapse": lambda root: make_transunet_release(root / "Synapse"),
    "convert_acdc": lambda root: make_h5_replica(root / "ACDC", range(1, 7)),
    "convert_avt": lambda root: make_figshare_release(root / "AVT"),
}


@pytest.mark.integration
@pytest.mark.parametrize(
    ("converter", "num_processes"),
    [("convert_synapse", 1), ("convert_synapse", 2), ("convert_acdc", 2), ("convert_avt", 2)],
)
def test_sigterm_mid_conversion_leaves_nothing(
    tmp_path: Path, dirs: NnunetDirs, converter: str, num_processes: int
) -> None:
    source = RELEASES[converter](tmp_path)
    run = PausedConversion(tmp_path, dirs, source, ["-np", str(num_processes)], converter)
    try:
        (work,) = [p for p in dirs.raw.iterdir() if ".converting-" in p.name]
        assert any(work.rglob("*_0000.nii.gz")), "the run had written a case when it was stopped"
        code, _, err = run.stop(signal.SIGTERM)
        assert code == 128 + signal.SIGTERM, err[-3000:]
        assert "interrupted by SIGTERM: nothing was changed" in err and "Traceback" not in err, err[-3000:]
        wait_until_dead(run.writer_pids)
        assert list(dirs.raw.iterdir()) == [] and list(dirs.preprocessed.iterdir()) == []
    finally:
        run.kill_everything()


@pytest.mark.integration
def test_sigkill_leftover_is_removed_by_the_next_run(
    tmp_path: Path, synapse_release: Path, dirs: NnunetDirs, capsys: pytest.CaptureFixture[str]
) -> None:
    run = PausedConversion(tmp_path, dirs, synapse_release, ["-np", "2"])
    try:
        workers = run.writer_pids
        run.stop(signal.SIGKILL)
        # the parent is gone at once; its workers notice and follow (else they would write into a removed folder)
        wait_until_dead(workers)
        assert len(hidden_entries(dirs)) == 2, "a killed run leaves its work folders"
        out = convert_synapse(synapse_release, 801)
        assert "an interrupted conversion" in capsys.readouterr().out
        assert hidden_entries(dirs) == []
        assert case_ids(out / "labelsTr") == TRAIN_CASES
    finally:
        run.kill_everything()


@pytest.mark.integration
def test_a_conversion_still_running_is_left_alone(tmp_path: Path, synapse_release: Path, dirs: NnunetDirs) -> None:
    run = PausedConversion(tmp_path, dirs, synapse_release, ["-np", "1"])
    try:
        before = hidden_entries(dirs)
        with pytest.raises(ConversionError, match=f"another conversion into {SYNAPSE} is running"):
            convert_synapse(synapse_release, 801)
        other = convert_synapse(synapse_release, 805, "Other")
        assert case_ids(other / "labelsTr") == TRAIN_CASES
        assert hidden_entries(dirs) == before, "the running conversion's work folders must be untouched"
        code, _, err = run.stop(signal.SIGTERM)
        assert code == 128 + signal.SIGTERM, err[-3000:]
        assert hidden_entries(dirs) == [] and not (dirs.raw / SYNAPSE).exists()
    finally:
        run.kill_everything()


@pytest.mark.integration
def test_ctrl_c_stops_the_converter_and_its_workers_with_exit_code_130(
    tmp_path: Path, synapse_release: Path, dirs: NnunetDirs
) -> None:
    """Ctrl-C in a terminal sends SIGINT to the whole foreground process group: the converter and its workers."""
    run = PausedConversion(tmp_path, dirs, synapse_release, ["-np", "2"])
    try:
        workers = run.wait_for_writers(2)
        os.killpg(run.process.pid, signal.SIGINT)
        _, err = run.process.communicate(timeout=120)
        assert run.process.returncode == 130, err[-3000:]
        assert "interrupted by SIGINT: nothing was changed" in err and "Traceback" not in err, err[-3000:]
        wait_until_dead(workers)
        assert list(dirs.raw.iterdir()) == [] and list(dirs.preprocessed.iterdir()) == []
    finally:
        run.kill_everything()


def convert_old_synapse(release: Path, dirs: NnunetDirs) -> tuple[Path, dict]:
    """A first conversion (1 x 1 x 1 mm) with a marker file, to be replaced by an --overwrite at 0.8 x 0.8 x 3 mm."""
    old = convert_synapse(release, 801)
    (old / "marker").write_text("the old dataset")
    return old, load_json(dirs.preprocessed / SYNAPSE / "splits_final.json")


OVERWRITE_ARGS = ["-np", "1", "--overwrite", "-spacing", "0.8", "0.8", "3"]


def spacing_of(dataset: Path) -> tuple[float, ...]:
    return sitk.ReadImage(str(dataset / "imagesTr" / f"{TRAIN_CASES[0]}_0000.nii.gz")).GetSpacing()


@pytest.mark.integration
def test_sigkill_after_the_commit_record_is_rolled_forward_by_the_next_run(
    tmp_path: Path, synapse_release: Path, dirs: NnunetDirs, capsys: pytest.CaptureFixture[str]
) -> None:
    dataset, split = dirs.raw / SYNAPSE, dirs.preprocessed / SYNAPSE
    convert_old_synapse(synapse_release, dirs)
    run = PausedConversion(tmp_path, dirs, synapse_release, OVERWRITE_ARGS, pause_at="after_commit_record")
    try:
        (work,) = [p for p in dirs.raw.iterdir() if ".converting-" in p.name]
        assert (work / "commit.json").is_file() and not dataset.exists() and not split.exists()  # mid-swap
        run.stop(signal.SIGKILL)
        capsys.readouterr()
        with pytest.raises(ConversionError, match="already exists; pass --overwrite"):
            convert_synapse(synapse_release, 801)  # the next run finishes the swap first: the new dataset is there
        said = capsys.readouterr().out
        assert f"{work}: an interrupted conversion" in said and "finished its last step" in said
        assert not (dataset / "marker").exists() and spacing_of(dataset) == pytest.approx((0.8, 0.8, 3.0))
        assert case_ids(dataset / "labelsTr") == TRAIN_CASES
        assert load_json(split / "splits_final.json") == load_json(dataset / "splits_final.json")
        assert sorted(p.name for p in split.iterdir()) == ["splits_final.json"]
        assert hidden_entries(dirs) == []
    finally:
        run.kill_everything()


@pytest.mark.integration
def test_sigkill_in_an_overwrite_after_the_old_dataset_was_moved_aside_is_rolled_back(
    tmp_path: Path, synapse_release: Path, dirs: NnunetDirs, capsys: pytest.CaptureFixture[str]
) -> None:
    dataset, split = dirs.raw / SYNAPSE, dirs.preprocessed / SYNAPSE
    _, old_split = convert_old_synapse(synapse_release, dirs)
    run = PausedConversion(tmp_path, dirs, synapse_release, OVERWRITE_ARGS, pause_at="before_commit_record")
    try:
        (work,) = [p for p in dirs.raw.iterdir() if ".converting-" in p.name]
        assert (work / "old" / "marker").is_file() and not dataset.exists() and not split.exists()  # moved aside
        assert not (work / "commit.json").exists()
        run.stop(signal.SIGKILL)
        capsys.readouterr()
        convert_synapse(synapse_release, 805, "Other")  # any next run of a converter recovers the leftovers
        said = capsys.readouterr().out
        assert f"{work}: an interrupted conversion" in said and "was undone" in said
        assert (dataset / "marker").read_text() == "the old dataset" and spacing_of(dataset) == (1.0, 1.0, 1.0)
        assert load_json(split / "splits_final.json") == old_split == load_json(dataset / "splits_final.json")
        assert hidden_entries(dirs) == []
    finally:
        run.kill_everything()


@pytest.mark.integration
@pytest.mark.parametrize("signum", [signal.SIGTERM, signal.SIGINT], ids=lambda s: signal.Signals(s).name)
def test_a_signal_during_the_swap_waits_until_the_new_dataset_is_in_place(
    tmp_path: Path, synapse_release: Path, dirs: NnunetDirs, signum: int
) -> None:
    dataset = dirs.raw / SYNAPSE
    convert_old_synapse(synapse_release, dirs)
    run = PausedConversion(tmp_path, dirs, synapse_release, OVERWRITE_ARGS, pause_at="after_commit_record")
    try:
        run.process.send_signal(signum)
        time.sleep(1.0)
        assert run.process.poll() is None, "the signal stopped the run in the middle of the swap"
        code, _, err = run.go_on()
        assert code == 128 + signum, err[-3000:]
        assert f"interrupted by {signal.Signals(signum).name} after the dataset was put in place; it is complete" in err
        assert not (dataset / "marker").exists() and spacing_of(dataset) == pytest.approx((0.8, 0.8, 3.0))
        assert load_json(dirs.preprocessed / SYNAPSE / "splits_final.json") == load_json(dataset / "splits_final.json")
        assert hidden_entries(dirs) == []
    finally:
        run.kill_everything()


def test_folders_left_by_an_earlier_version_are_reported_and_left_alone(
    synapse_release: Path, dirs: NnunetDirs, capsys: pytest.CaptureFixture[str]
) -> None:
    """Earlier versions built in ``.DatasetXXX_Name.converting-<8 hex>`` and moved the dataset they replaced to
    ``.DatasetXXX_Name.replaced-<8 hex>``, without a lock: nothing tells whether one is still being written, so they
    are named, never touched. A ``.replaced-`` folder may be the only copy of the previous dataset (a run killed
    between its two renames): the warning says so and how to put it back, rather than only how to delete it."""
    building = dirs.raw / f".{SYNAPSE}.converting-1a2b3c4d"
    replaced = dirs.raw / f".{SYNAPSE}.replaced-5e6f7a8b"
    for folder in (building / "imagesTr", replaced / "labelsTr"):
        folder.mkdir(parents=True)
        (folder / "case0005.nii.gz").write_bytes(b"written by an earlier version")
    before = sorted(str(p) for p in dirs.raw.rglob("*"))
    out = convert_synapse(synapse_release, 801)
    err = capsys.readouterr().err
    assert case_ids(out / "labelsTr") == TRAIN_CASES
    assert sorted(str(p) for p in dirs.raw.rglob("*") if not p.is_relative_to(out)) == before  # untouched
    warnings = [line for line in err.splitlines() if line.startswith("warning:")]
    assert len(warnings) == 2, err
    (about_building,) = [w for w in warnings if str(building) in w]
    assert "earlier converter version" in about_building and f"rm -rf '{building}'" in about_building
    (about_replaced,) = [w for w in warnings if str(replaced) in w]
    assert "the dataset it was replacing" in about_replaced and f"mv '{replaced}' '{dirs.raw / SYNAPSE}'" in (
        about_replaced)


def run_parallel_map(items: list[str], cwd: Path) -> subprocess.CompletedProcess[str]:
    """``parallel_map(doomed_item, items)`` on 2 worker processes, in a subprocess with a time limit: a hang fails
    the test instead of stopping the suite."""
    code = ("import sys\n"
            "from conversion_helpers import doomed_item\n"
            "from nnunetv2_resunet.dataset_conversion.common import ConversionError\n"
            "from nnunetv2_resunet.dataset_conversion.execute import parallel_map\n"
            "try:\n"
            f"    parallel_map(doomed_item, {items!r}, 2, 'cases')\n"
            "except ConversionError as error:\n"
            "    sys.exit(f'ConversionError: {error}')\n")
    here = Path(__file__).parent
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(here), str(here.parent), os.environ.get("PYTHONPATH", "")])}
    try:
        return subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60, env=env,
                              cwd=cwd)  # not the repository root, whose source folders would shadow the install
    except subprocess.TimeoutExpired:
        pytest.fail(f"parallel_map over {items} hung")


def test_a_worker_that_dies_mid_case_ends_the_run_with_an_error(tmp_path: Path) -> None:
    # multiprocessing.Pool waits for a dead worker's result forever
    result = run_parallel_map(["ok", "die", "ok", "ok"], tmp_path)
    assert result.returncode == 1
    assert "ConversionError: cases: a worker process ended abruptly" in result.stderr
    assert "-np" in result.stderr


def test_a_failing_case_ends_the_run_with_its_error_while_others_convert(tmp_path: Path) -> None:
    # Pool.terminate() kills workers that may hold its queue's lock, and can then wait for it forever; repeated
    # because that deadlock depends on timing
    for _ in range(5):
        result = run_parallel_map(["ok", "ok", "fail", "ok", "ok", "ok"], tmp_path)
        assert result.returncode == 1
        assert result.stderr.strip().endswith("ConversionError: fail: this case is broken")


def test_overwrite_replaces_what_a_study_recorded_and_waits_for_a_study_preprocessing_it(
    tmp_path: Path, dirs: NnunetDirs
) -> None:
    """A dataset a study has preprocessed: the study's log and SLURM record of that preprocessing go with nnU-Net's
    files on --overwrite; while a study holds its preprocessing lock, the conversion is refused, naming the lock."""
    from nnunetv2_resunet.dataset_conversion.execute import check_target

    (dirs.raw / SYNAPSE).mkdir()
    (dirs.raw / SYNAPSE / "dataset.json").write_text("{}")
    folder = dirs.preprocessed / SYNAPSE
    (folder / "nnUNetPlans_2d").mkdir(parents=True)
    (folder / "nnUNetPlans_2d" / "case0005.b2nd").write_bytes(b"old arrays")
    (folder / "nnUNetPlans.json").write_text('{"plans_name": "nnUNetPlans", "configurations": {"2d": {}}}')
    for name in ("dataset_fingerprint.json", "study_preprocess_nnUNetPlans.log", "study_preprocess_nnUNetPlans.slurm"):
        (folder / name).write_text("{}")
    target = check_target(801, "Synapse", True, tmp_path / "source")
    assert sorted(target.stale) == ["dataset_fingerprint.json", "nnUNetPlans.json", "nnUNetPlans_2d/",
                                    "study_preprocess_nnUNetPlans.log", "study_preprocess_nnUNetPlans.slurm"]
    (folder / "study_preprocess_nnUNetPlans.lock").write_text('{"host": "node7", "pids": [41]}')
    with pytest.raises(ConversionError, match=r"study_preprocess_nnUNetPlans\.lock: nnUNetv2_resunet_study is "
                                              r"preprocessing this dataset \(the lock says: \{\"host\": \"node7\""):
        check_target(801, "Synapse", True, tmp_path / "source")
