"""Run states from files, locks, and SLURM settings, without running nnU-Net: a checkpoint cut short is corrupt, a
log says how the last attempt ended, a lock of a dead process is stale, resources combine in the documented order."""

import json
import os
import socket
import subprocess
import sys
import time
import zipfile
from pathlib import Path

import pytest
import torch

from nnunetv2_resunet.studies import locks
from nnunetv2_resunet.studies.locks import STALE_AFTER_S, RunLock, read_lock
from nnunetv2_resunet.studies.runs import Run
from nnunetv2_resunet.studies.slurm import executor_parameters, minutes, stage_settings
from nnunetv2_resunet.studies.state import (
    LOG_HEADER,
    Status,
    checkpoint_problem,
    last_attempt,
    train_state,
)
from nnunetv2_resunet.studies.study_file import parse_study


def write_checkpoint(path: Path, epoch: int = 3) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    torch.save({"network_weights": {"w": torch.zeros(64, 64)}, "current_epoch": epoch}, path)


def train_run(folder: Path) -> Run:
    return Run("train", 901, "Dataset901_Synthetic", "nnUNetPlans", ("2d",), "nnUNetTrainer", fold=0, folder=folder)


def test_complete_and_cut_short_checkpoints(tmp_path):
    path = tmp_path / "checkpoint_latest.pth"
    write_checkpoint(path)
    assert checkpoint_problem(path) is None and checkpoint_problem(path, full=True) is None
    whole = path.read_bytes()
    path.write_bytes(whole[: len(whole) // 2])  # what a kill during torch.save leaves
    assert checkpoint_problem(path) == (
        f"{path} is not a complete checkpoint (a torch checkpoint is a zip file; this one is cut short or damaged: "
        "File is not a zip file)")
    path.write_bytes(whole[:-300] + bytes(300))  # the zip's directory damaged
    assert checkpoint_problem(path).startswith(f"{path} is not a complete checkpoint (a torch checkpoint is a zip "
                                               "file; this one is cut short or damaged: ")
    # A bit flipped inside a stored tensor: the zip's directory is intact, only the CRC check (before resuming) sees it.
    damaged = bytearray(whole)
    offset = whole.index(bytes(64 * 64 * 4)[:256]) + 100  # inside the zeros of the 64 x 64 tensor
    damaged[offset] ^= 0xFF
    path.write_bytes(bytes(damaged))
    assert checkpoint_problem(path) is None  # a status does not read every byte
    member = next(n for n in zipfile.ZipFile(path).namelist() if "/data/" in n)
    assert checkpoint_problem(path, full=True) == f"{path} is damaged: member {member} fails its CRC check"
    torch.save({"not": "a checkpoint"}, path)
    path.write_bytes(path.read_bytes().replace(b"data.pkl", b"data.xyz"))  # a zip, but not torch's layout
    assert checkpoint_problem(path) == f"{path} is a zip file but not a torch checkpoint (no data.pkl)"


def test_log_tells_how_the_last_attempt_ended(tmp_path):
    log = tmp_path / "study_train.log"
    assert last_attempt(log) is None
    log.write_text(f"{LOG_HEADER}: x\n...\n=== exit code 1 after 12.5 s (finished)\n{LOG_HEADER}: x\nEpoch 3\n")
    assert last_attempt(log).exit_code is None  # the second attempt was killed: no exit line
    log.write_text(log.read_text() + "=== exit code 0 after 99.0 s (finished)\n")
    attempt = last_attempt(log)
    assert (attempt.exit_code, attempt.seconds) == (0, 12.5 + 99.0)  # wall time of every finished attempt


def test_train_states(tmp_path):
    fold = tmp_path / "fold_0"
    run = train_run(fold)
    assert train_state(run, None).status == Status.WAITING
    write_checkpoint(fold / "checkpoint_latest.pth")
    state = train_state(run, last_attempt(run.log_path))
    assert (state.status, state.resume) == (Status.INTERRUPTED, "--c")  # trained part-way, by hand or killed
    run.log_path.write_text(f"{LOG_HEADER}: x\n=== exit code -9 after 5.0 s\n")
    state = train_state(run, last_attempt(run.log_path))
    assert (state.status, state.resume) == (Status.FAILED, "--c") and "exit code -9" in state.detail
    write_checkpoint(fold / "checkpoint_final.pth")
    assert train_state(run, None).resume == "--val"  # trained, validation missing
    (fold / "validation").mkdir()
    (fold / "validation" / "summary.json").write_text("{}")
    assert train_state(run, None).status == Status.DONE
    final = fold / "checkpoint_final.pth"
    final.write_bytes(final.read_bytes()[:100])
    state = train_state(run, None)
    assert state.status == Status.CORRUPT and str(final) in state.detail


def test_lock_is_exclusive_and_released(tmp_path):
    path = tmp_path / "study_train.lock"
    first, second = RunLock(path, "a"), RunLock(path, "a")
    assert first.acquire()
    assert not second.acquire()  # this process is alive: the lock is held
    holder = read_lock(path)
    assert holder.host == socket.gethostname() and os.getpid() in holder.pids and holder.alive()
    first.release()
    assert not path.exists()
    assert second.acquire()
    second.release()


def test_the_heartbeat_keeps_a_held_lock_fresh_and_stops_at_release(tmp_path, monkeypatch):
    """The heartbeat thread itself: while a run holds its lock, the lock's mtime is refreshed, so another host keeps
    trusting it even after STALE_AFTER_S; release stops the thread."""
    monkeypatch.setattr(locks, "HEARTBEAT_S", 0.05)
    path = tmp_path / "study_train.lock"
    lock = RunLock(path, "a")
    assert lock.acquire()
    try:
        old = time.time() - STALE_AFTER_S - 60
        os.utime(path, (old, old))  # as if the heartbeat had stopped long ago
        deadline = time.monotonic() + 10
        while read_lock(path).age_s > 5:
            assert time.monotonic() < deadline, "the heartbeat did not refresh the lock"
            time.sleep(0.02)
        # Seen from another node (its pids cannot be checked there): fresh, so held.
        with monkeypatch.context() as elsewhere:
            elsewhere.setattr(locks.socket, "gethostname", lambda: "node-17")
            assert read_lock(path).alive() and not RunLock(path, "a").acquire()
    finally:
        lock.release()
    lock._thread.join(timeout=5)
    assert not lock._thread.is_alive() and not path.exists()


def test_lock_of_a_dead_process_is_taken_over(tmp_path):
    path = tmp_path / "study_train.lock"
    dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True,
                          timeout=60)
    path.write_text(json.dumps({"host": socket.gethostname(), "pids": [int(dead.stdout)], "started": "then"}))
    assert not read_lock(path).alive()
    lock = RunLock(path, "a")
    assert lock.acquire()
    assert os.getpid() in read_lock(path).pids
    lock.release()


def test_lock_from_another_host_is_trusted_until_its_heartbeat_stops(tmp_path):
    path = tmp_path / "study_train.lock"
    path.write_text(json.dumps({"host": "node-17", "pids": [1], "started": "then"}))
    assert not RunLock(path, "a").acquire()  # pids of another host cannot be checked: fresh heartbeat wins
    old = time.time() - STALE_AFTER_S - 60
    os.utime(path, (old, old))
    lock = RunLock(path, "a")
    assert lock.acquire()
    lock.release()


@pytest.mark.parametrize("text, expected", [(90, 90), ("90", 90), ("24:00:00", 1440), ("2-00:00:00", 2880),
                                            ("1-12", 2160), ("0:30:30", 31), ("2:30", 3)])
def test_slurm_time_formats(text, expected):
    assert minutes(text) == expected


def test_resources_combine_in_the_documented_order(tmp_path):
    study = parse_study({"name": "s", "datasets": [{"id": 1}], "models": [{"configuration": "2d", "trainers": ["T"]}],
                         "slurm": {"partition": "gpu", "time": "12:00:00", "gpus": 2, "mem_gb": 32,
                                   "setup": ["module load cuda"], "train": {"time": "2-00:00:00"}}},
                        tmp_path / "s.toml")
    train = stage_settings(study, {"partition": "a100", "gpus": None}, "train")
    assert (train["partition"], train["gpus"], train["time"], train["cpus"]) == ("a100", 2, "2-00:00:00", 8)
    preprocess = stage_settings(study, {"gpus": 4}, "preprocess")
    assert (preprocess["gpus"], preprocess["time"]) == (0, "12:00:00")  # preprocessing never asks for a GPU
    parameters = executor_parameters(train, "s:train", "afterok:17")
    assert parameters == {"job_name": "s:train", "time": 2880, "cpus_per_task": 8, "gpus_per_node": 2,
                          "partition": "a100", "setup": ["module load cuda"], "mem": "32768MB",
                          "dependency": "afterok:17", "additional_parameters": {"kill-on-invalid-dep": "yes"}}


def test_resenc_plans_are_planned_after_the_default_and_never_rewrite_its_data(tmp_path, monkeypatch):
    """A study with nnU-Net's default and ResEnc M plans: one preprocess run per plans, the second after the first;
    each plans with --no_pp, then prepares only the configurations whose data are missing (ResEnc shares
    nnUNetPlans_2d, so none); on SLURM the second plans run is a later array."""
    from nnunetv2_resunet.studies.execute import Options, preprocess_command
    from nnunetv2_resunet.studies.runs import NnUNetFolders, build_runs
    from nnunetv2_resunet.studies.slurm import _waves

    raw, preprocessed = tmp_path / "raw", tmp_path / "preprocessed"
    (raw / "Dataset901_Synthetic").mkdir(parents=True)
    (raw / "Dataset901_Synthetic" / "dataset.json").write_text(json.dumps({"numTraining": 2}))
    for name, folder in (("nnUNet_raw", raw), ("nnUNet_preprocessed", preprocessed),
                         ("nnUNet_results", tmp_path / "results")):
        monkeypatch.setenv(name, str(folder))
    study = parse_study({"name": "resenc", "folds": [0], "datasets": [{"id": 901, "test_images": ""}], "models": [
        {"configuration": "2d", "trainers": ["nnUNetTrainer", "ResUnetTrainer"]},
        {"configuration": "2d", "trainers": ["nnUNetTrainer"], "planner": "resenc_m"}]}, tmp_path / "resenc.toml")
    folders = NnUNetFolders.from_environment(study, tmp_path / "reports")
    runs = build_runs(study, folders)
    default, resenc = [r for r in runs if r.stage == "preprocess"]
    assert (default.plans, resenc.plans, resenc.needs) == ("nnUNetPlans", "nnUNetResEncUNetMPlans", (default.key,))
    trains = {r.model: r.needs for r in runs if r.stage == "train"}
    assert trains["nnUNetTrainer__nnUNetResEncUNetMPlans__2d"] == (resenc.key,)
    assert trains["ResUnetTrainer__nnUNetPlans__2d"] == (default.key,)
    options = Options(device="cpu", num_processes=2)
    common = ["-d", "901", "-np", "2", "-npfp", "2", "--verify_dataset_integrity", "--no_pp"]
    assert preprocess_command(default, folders, options) == ["nnUNetv2_plan_and_preprocess", *common]
    assert preprocess_command(resenc, folders, options) == ["nnUNetv2_plan_and_preprocess", *common,
                                                            "-pl", "nnUNetPlannerResEncM"]
    # Planned, with the default plans' 2d data in place: nothing to prepare for ResEnc M (it shares that folder).
    dataset = preprocessed / "Dataset901_Synthetic"
    (dataset / "nnUNetPlans_2d").mkdir(parents=True)
    (dataset / "gt_segmentations").mkdir()
    for case in ("a", "b"):
        (dataset / "nnUNetPlans_2d" / f"{case}.pkl").touch()
        (dataset / "gt_segmentations" / f"{case}.nii.gz").touch()
    (dataset / "nnUNetResEncUNetMPlans.json").write_text(json.dumps(
        {"configurations": {"2d": {"data_identifier": "nnUNetPlans_2d"}, "3d_fullres": {}}}))
    assert preprocess_command(resenc, folders, options) is None
    (dataset / "nnUNetPlans_2d" / "b.pkl").unlink()
    assert preprocess_command(resenc, folders, options) == ["nnUNetv2_preprocess", "-d", "901", "-plans_name",
                                                            "nnUNetResEncUNetMPlans", "-c", "2d", "-np", "2"]
    assert [[r.plans for r in wave] for wave in _waves([default, resenc])] == [["nnUNetPlans"],
                                                                               ["nnUNetResEncUNetMPlans"]]
