"""``nnUNetv2_resunet_study run`` on CPU through nnU-Net's real CLI: a tiny study end to end, re-runs that change
nothing, a training killed mid-way and resumed (not restarted), and a half-written checkpoint reported, not
trained over."""

import csv
import json
import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
from conftest import ABLATION_SHORT, CLI_EXTRA, DEFAULT_SHORT, RESUMABLE, RESUNET_SHORT, V1_SHORT, write_study
from nnunet_workspace import SYNTHETIC_NAME, console_script, process_alive

from nnunetv2_resunet.studies import cli
from nnunetv2_resunet.studies.execute import process_descendants
from nnunetv2_resunet.studies.locks import RunLock, read_lock
from nnunetv2_resunet.studies.state import checkpoint_problem

# Exec the command as a terminal's shell starts one: SIGINT at its default and no signal blocked, whatever the
# process running the tests inherited (Python installs its KeyboardInterrupt handler only over the default).
AS_FROM_A_TERMINAL = ("import os, signal, sys; signal.signal(signal.SIGINT, signal.SIG_DFL); "
                      "signal.pthread_sigmask(signal.SIG_SETMASK, []); os.execv(sys.argv[1], sys.argv[1:])")


def signal_dispositions(pid: int) -> dict[str, str]:
    """Process ``pid``'s blocked, ignored and caught signals (hex masks, from /proc; Linux)."""
    try:
        status = Path(f"/proc/{pid}/status").read_text()
    except OSError as error:
        return {"error": str(error)}
    return dict(re.findall(r"^(SigBlk|SigIgn|SigCgt):\s*(\S+)$", status, flags=re.MULTILINE))


def outputs(root) -> dict[str, float]:
    """Every file under ``root`` with its modification time."""
    return {str(p): p.stat().st_mtime for p in root.rglob("*") if p.is_file()}


def test_a_study_runs_end_to_end_and_a_rerun_changes_nothing(study_workspace, local_study, study_cli):
    """nnU-Net's default on its plans and on ResEnc M plans, ResUnet v1.0 in two seeded repeats and EMCAD without
    its transformer blocks: planned, trained, predicted and reported, with the paired comparison; a re-run changes
    nothing."""
    model = study_workspace.model_dir(DEFAULT_SHORT)
    assert (model / "fold_0" / "checkpoint_final.pth").is_file()
    assert (model / "fold_0" / "validation" / "summary.json").is_file()
    predictions = model / "predictions_imagesTs_folds_0"
    assert sorted(p.name for p in predictions.glob("*.nii.gz")) == ["test_000.nii.gz", "test_001.nii.gz"]
    log = (model / "fold_0" / "study_train.log").read_text()
    assert "=== command: nnUNetv2_train 901 2d 0 -tr nnUNetTrainer_short -p nnUNetPlans -device cpu\n" in log
    assert "=== exit code 0 after" in log

    report = study_workspace.nnunet.results / "studies" / "tiny"  # beside nnU-Net's results, not in the current folder
    assert not (study_workspace.studies / "results").exists()
    summary = json.loads((report / SYNTHETIC_NAME / "summary.json").read_text())
    models = [(DEFAULT_SHORT, "nnUNetPlans"), (DEFAULT_SHORT, "nnUNetResEncUNetMPlans"),
              (f"{V1_SHORT}_seed0", "nnUNetPlans"), (f"{V1_SHORT}_seed1", "nnUNetPlans"),
              (ABLATION_SHORT, "nnUNetPlans")]
    assert {r["label"] for r in summary["runs"]} == {f"{t} {p} 2d ({s})" for t, p in models for s in ("cv", "test")}
    assert (report / SYNTHETIC_NAME / "report.md").is_file() and (report / SYNTHETIC_NAME / "per_case.csv").is_file()
    _assert_resenc_repeats_and_ablation(study_workspace, report / SYNTHETIC_NAME, summary)
    assert (report / "tiny.toml").read_text() == local_study.read_text()  # the study file that produced it
    status = (report / "status.md").read_text()
    assert re.search(r"train\s+Dataset901_Synthetic\s+nnUNetTrainer_short__nnUNetPlans__2d\s+fold_0\s+done\s+\d+m\d\ds",
                     status)

    before = outputs(study_workspace.nnunet.root) | outputs(report)
    _, out, err = study_cli("run", local_study)  # (the run above was the console command, in a process of its own)
    assert "start " not in out + err  # nothing was started
    assert "6 runs" not in out and "13 runs: 13 done" in out  # 2 plans, 5 models trained and predicted
    assert outputs(study_workspace.nnunet.root) | outputs(report) == before  # nothing written, nothing overwritten
    assert "$ " not in study_cli("plan", local_study)[1]  # no command left to run


def test_status_finds_the_report_from_any_folder(local_study, study_cli, tmp_path):
    """The report is in the study's folder under $nnUNet_results, so status finds it from anywhere (in this process;
    test_study_checks has the record of reports that `-o DIR` put elsewhere)."""
    _, out, _ = study_cli("status", local_study, cwd=tmp_path)
    assert re.search(rf"report\s+{SYNTHETIC_NAME}\s+folds 0\s+done", out), out
    assert list(tmp_path.iterdir()) == []



def _assert_resenc_repeats_and_ablation(study_workspace, report, summary) -> None:
    """The done-criterion of issue 17 on the local study's outputs."""
    # ResEnc M: planned with nnU-Net's preset planner, after the default plans; nothing re-preprocessed (it shares
    # nnUNetPlans_2d), and its model trained on those plans.
    preprocessed = study_workspace.nnunet.preprocessed / SYNTHETIC_NAME
    resenc_log = (preprocessed / "study_preprocess_nnUNetResEncUNetMPlans.log").read_text()
    assert "-pl nnUNetPlannerResEncM" in resenc_log and "--no_pp" in resenc_log
    assert "nnUNetv2_preprocess" not in resenc_log
    resenc = study_workspace.model_dir(DEFAULT_SHORT, "nnUNetResEncUNetMPlans") / "fold_0"
    assert "ResidualEncoderUNet" in (resenc / "debug.json").read_text()
    # Two seeded repeats of ResUnet v1.0: their own folders, their seeds in nnU-Net's logs, different networks.
    weights = []
    for seed in (0, 1):
        fold = study_workspace.model_dir(f"{V1_SHORT}_seed{seed}") / "fold_0"
        log = next(fold.glob("training_log_*.txt")).read_text()
        assert f"Seeded repeat: seed {seed}; Python, numpy, torch and the data-augmentation workers" in log
        weights.append(torch.load(fold / "checkpoint_final.pth", map_location="cpu",
                                  weights_only=False)["network_weights"])
    assert not all(torch.equal(weights[0][k], weights[1][k]) for k in weights[0])
    # EMCAD without its transformer blocks trained and predicted like any model.
    ablation = study_workspace.model_dir(ABLATION_SHORT)
    assert (ablation / "predictions_imagesTs_folds_0" / "test_000.nii.gz").is_file()
    # The report: paired table, CSV and forest plots, against the first ResUnet row (ResUnet's repeats), per repeat
    # and pooled; the repeats' spread; every row's training cost.
    markdown = (report / "report.md").read_text()
    assert f"Reference: **{V1_SHORT}_seed* (2 repeats) nnUNetPlans 2d** (the first ResUnet row" in markdown
    assert "## Paired comparison with the reference" in markdown and "## Repeats: spread across" in markdown
    with open(report / "paired.csv", newline="") as handle:
        rows = list(csv.DictReader(handle))
    compared = {(r["reference"], r["model"], r["split"]) for r in rows}
    for split in ("cv", "test"):
        for other in (f"{DEFAULT_SHORT}__nnUNetPlans__2d", f"{DEFAULT_SHORT}__nnUNetResEncUNetMPlans__2d",
                      f"{ABLATION_SHORT}__nnUNetPlans__2d"):
            assert {(f"{V1_SHORT}_seed{s}__nnUNetPlans__2d", other, split) for s in (0, 1)} <= compared
            assert (f"{V1_SHORT}_seed*__nnUNetPlans__2d", other, split) in compared
    # Fold 0 validates 2 cases and the test set has 2: too few for a test, and said so.
    # (HD95 is undefined for a case a 2-iteration model predicts empty: such a pair drops out of the HD95 rows.)
    assert {r["n"] for r in rows if r["class"] == "mean" and r["metric"] == "dice"} == {"2"}
    assert {r["n"] for r in rows if r["metric"] == "hd95"} <= {"0", "1", "2"}
    assert all(r["p_wilcoxon"] == "" for r in rows)
    assert "not tested, only 2 cases, a test needs at least 6" in markdown
    for split in ("cv", "test"):
        assert (report / f"paired_forest_{split}.png").stat().st_size > 1000
    cost = next(r for r in summary["runs"] if r["trainer"] == DEFAULT_SHORT and r["split"] == "cv")["training"]
    assert (cost["epochs"], cost["iterations_per_epoch"], cost["device"]) == ("1", "2", "cpu")
    assert "## Training cost" in markdown


def test_a_killed_training_resumes_and_a_cut_short_checkpoint_is_reported(study_workspace, local_study, study_cli):
    """A model that starts from published weights (a file in torchvision's format): the fresh start writes the
    init file and trains with -pretrained_weights. SIGKILL to the study (and the nnU-Net process it started) after
    the first checkpoint; the next run resumes with --c from that epoch (no -pretrained_weights then). A
    half-written checkpoint in another fold stops only that fold; a study naming no weights for the same model
    reports the fold as a mismatch."""
    import torchvision  # installed with nnunetv2 (through dynamic-network-architectures); only tests use it

    weights = study_workspace.studies / "weights" / "resnet34-random.pth"
    weights.parent.mkdir(exist_ok=True)
    torch.save(torchvision.models.resnet34(weights=None).state_dict(), weights)
    with_weights = 'weights = "weights/resnet34-random.pth"\n'
    study = write_study(study_workspace.studies, "resume", [RESUMABLE], dataset_lines='test_images = ""',
                        model_lines=with_weights)
    fold0 = study_workspace.model_dir(RESUMABLE) / "fold_0"
    command = [*console_script("nnUNetv2_resunet_study"), "run", str(study), *CLI_EXTRA["run"]]
    process = subprocess.Popen(command, env=study_workspace.env, cwd=study_workspace.studies, start_new_session=True,
                               stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    latest = fold0 / "checkpoint_latest.pth"
    deadline = time.monotonic() + 600
    while not (latest.is_file() and checkpoint_problem(latest) is None):
        assert process.poll() is None, "the study ended before its first checkpoint"
        assert time.monotonic() < deadline, "no checkpoint within 10 minutes"
        time.sleep(0.2)
    holder = read_lock(fold0 / "study_train.lock")  # the study and the nnU-Net training it started
    os.killpg(process.pid, signal.SIGKILL)
    process.wait(timeout=60)
    # nnU-Net's process is not ours to wait for: until it has exited (a big process takes a moment), its lock
    # rightly says the run is still running.
    deadline = time.monotonic() + 60
    while any(process_alive(pid) for pid in holder.pids):
        assert time.monotonic() < deadline, f"the killed processes {holder.pids} did not exit within a minute"
        time.sleep(0.1)
    assert not (fold0 / "checkpoint_final.pth").is_file()

    status = study_cli("status", study)[1]
    assert re.search(r"fold_0\s+interrupted\s+resumes from checkpoint_latest.pth \(epoch \d of 3 reached\)", status)

    # Fold 1 holds a checkpoint cut short (as a kill during torch.save leaves it).
    fold1 = fold0.parent / "fold_1"
    fold1.mkdir()
    whole = latest.read_bytes()
    (fold1 / "checkpoint_latest.pth").write_bytes(whole[: len(whole) // 2])
    study = write_study(study_workspace.studies, "resume", [RESUMABLE], folds=[0, 1], dataset_lines='test_images = ""',
                        model_lines=with_weights)
    status = study_cli("status", study)[1]
    assert re.search(r"fold_1\s+corrupt\s+\S+fold_1/checkpoint_latest.pth is not a complete checkpoint", status)

    result = study_workspace.study("run", study, "-gpus", "5", check=False)  # one slot, seeing "GPU 5" only
    assert result.returncode == 1  # not everything is done: fold 1 needs a person
    assert (fold0 / "checkpoint_final.pth").is_file() and (fold0 / "validation" / "summary.json").is_file()
    attempts = (fold0 / "study_train.log").read_text().split("=== nnUNetv2_resunet_study")[1:]
    commands = [a.splitlines()[1] for a in attempts]
    assert len(attempts) == 3
    assert commands[0].startswith("=== command: nnUNetv2_resunet_init_weights -d 901 -c 2d -tr " + RESUMABLE)
    assert f"-i {weights}" in commands[0] and "-o " in commands[0]
    assert "--c" not in commands[1] and "-pretrained_weights" in commands[1]
    assert commands[2].endswith("-device cpu --c") and "-pretrained_weights" not in commands[2]
    assert "CUDA_VISIBLE_DEVICES=5" in attempts[2].splitlines()[2]
    first = min(fold0.glob("training_log_*.txt"), key=lambda p: p.stat().st_mtime)
    assert "Network weights: loaded before training by nnUNetv2_train's -pretrained_weights" in first.read_text()
    assert not (fold0 / "study_init_weights.pth").exists()  # in the checkpoints now
    # nnU-Net's log of the resumed process starts at the epoch it reached, not at epoch 0.
    newest = max(fold0.glob("training_log_*.txt"), key=lambda p: p.stat().st_mtime)
    epochs = [int(e) for e in re.findall(r": Epoch (\d+)\s*$", newest.read_text(), flags=re.MULTILINE)]
    assert epochs and epochs[0] >= 1 and epochs[-1] == 2
    # The damaged checkpoint is untouched and never trained over.
    assert (fold1 / "checkpoint_latest.pth").read_bytes() == whole[: len(whole) // 2]
    assert not list(fold1.glob("training_log_*.txt")) and not (fold1 / "study_train.log").exists()
    assert re.search(r"fold_0\s+done", result.stdout) and re.search(r"fold_1\s+corrupt", result.stdout)
    assert re.search(r"report\s+\S+\s+folds 0 1\s+waiting\s+after a finished model", result.stdout)

    # The same model in a study that names no weights: that fold is not what this study would train.
    scratch = write_study(study_workspace.studies, "resume_scratch", [RESUMABLE], dataset_lines='test_images = ""')
    status = study_cli("status", scratch)[1]
    assert re.search(r"fold_0\s+mismatch\s+started from -pretrained_weights", status)


@pytest.mark.parametrize("how", ["SIGTERM", "Ctrl-C"])
def test_sigterm_or_ctrl_c_stops_the_study_and_its_nnunet_process(study_workspace, local_study, study_cli, how):
    """``kill`` (SIGTERM, to our process only; once nnU-Net trains) or Ctrl-C (SIGINT, to the terminal's whole process
    group; during nnU-Net's start-up): the study stops the nnU-Net training it started, with its data-augmentation
    workers, writes its exit to the run's log, releases the run's lock and exits with 128 + the signal, saying so in
    one line."""
    fold = {"SIGTERM": 2, "Ctrl-C": 3}[how]  # folds of their own: the killed-training test uses 0 and 1
    study = write_study(study_workspace.studies, f"stopped_{fold}", [RESUMABLE], folds=[fold],
                        dataset_lines='test_images = ""')
    run_folder = study_workspace.model_dir(RESUMABLE) / f"fold_{fold}"
    lock_file, log_file = run_folder / "study_train.lock", run_folder / "study_train.log"
    command = [*console_script("nnUNetv2_resunet_study"), "run", str(study), *CLI_EXTRA["run"]]
    process = subprocess.Popen([sys.executable, "-c", AS_FROM_A_TERMINAL, *command], env=study_workspace.env,
                               cwd=study_workspace.studies, start_new_session=True, stdout=subprocess.PIPE,
                               stderr=subprocess.PIPE, text=True)
    try:
        deadline = time.monotonic() + 300
        while (holder := read_lock(lock_file)) is None or len(holder.pids) < 2:  # our pid and nnU-Net's
            assert process.poll() is None, process.communicate(timeout=30)
            assert time.monotonic() < deadline, "nnU-Net's training never started"
            time.sleep(0.1)
        nnunet_pid = holder.pids[1]
        workers = []
        if how == "SIGTERM":  # into training: nnU-Net has started its data-augmentation workers
            while not (workers := process_descendants(nnunet_pid)):
                assert process.poll() is None, process.communicate(timeout=30)
                assert time.monotonic() < deadline, "nnU-Net started no worker"
                time.sleep(0.1)
        else:
            time.sleep(0.5)  # into nnU-Net's start-up
        # Should the signal go unheeded, the failure shows how the processes stood towards it when it was sent.
        dispositions = {name: signal_dispositions(pid) for name, pid in (
            ("study", process.pid), ("nnU-Net", nnunet_pid), ("this test", os.getpid()))}
        if how == "SIGTERM":
            process.send_signal(signal.SIGTERM)
        else:
            os.killpg(process.pid, signal.SIGINT)
        _, err = process.communicate(timeout=120)
    finally:
        if process.poll() is None:
            os.killpg(process.pid, signal.SIGKILL)
            process.communicate(timeout=30)
    signum = signal.SIGTERM if how == "SIGTERM" else signal.SIGINT
    assert process.returncode == 128 + signum, f"{dispositions}\n{err[-3000:]}"
    assert "Traceback" not in err, err[-3000:]
    if how == "Ctrl-C":
        assert "nnUNetv2_resunet_study: interrupted (Ctrl-C)" in err
    for _ in range(100):  # the study waited for it, but a zombie may take a moment to be reaped by init
        if not any(map(process_alive, [nnunet_pid, *workers])):
            break
        time.sleep(0.1)
    assert not process_alive(nnunet_pid), "the nnU-Net process outlived the study"
    assert not any(map(process_alive, workers)), "nnU-Net's data-augmentation workers outlived the study"
    assert re.search(r"=== exit code -?\d+ after [\d.]+ s \(finished", log_file.read_text().splitlines()[-1])
    assert not lock_file.exists()
    status = study_cli("status", study)[1]
    assert re.search(rf"fold_{fold}\s+failed\s+", status), status


def test_a_run_held_by_another_invocation_is_left_alone(study_workspace, study_cli):
    """Another invocation (here: this test) holds the lock of a study's preprocessing: `run` neither starts it nor
    what depends on it, and says who holds it. (The run is in this process: a lock is judged by its file and the
    pids in it, so this process's own run finds it held as another process would.)"""
    study = write_study(study_workspace.studies, "held", [RESUNET_SHORT],
                        dataset_lines='plans = "nnUNetPlans_held"\ngpu_memory_target = 1\ntest_images = ""')
    folder = study_workspace.nnunet.preprocessed / SYNTHETIC_NAME
    lock = RunLock(folder / "study_preprocess_nnUNetPlans_held.lock", "preprocess (held by the test)")
    assert lock.acquire()
    try:
        code, out, err = study_cli("run", study, check=False)
    finally:
        lock.release()
    assert code == 1 and "start " not in out + err
    assert re.search(rf"preprocess\s+{SYNTHETIC_NAME}\s+nnUNetPlans_held 2d\s+running\s+\S+ pid {os.getpid()}",
                     out)
    assert not (folder / "study_preprocess_nnUNetPlans_held.log").exists()
    assert not (folder / "nnUNetPlans_held.json").exists()


def test_status_names_what_is_missing_before_anything_runs(study_cli, tmp_path, monkeypatch, capsys):
    """In this process (the check imports nnU-Net's trainers; a subprocess would pay for that again)."""
    study = tmp_path / "later.toml"
    study.write_text('name = "later"\n[[datasets]]\nid = 977\n[[models]]\nconfiguration = "2d"\n'
                     'trainers = ["nnUNetTrainer"]\n')
    code, _, err = study_cli("status", study, check=False)
    assert code == 2
    assert "dataset 977 is not in $nnUNet_raw" in err and "convert it first" in err
    for variable in ("nnUNet_raw", "nnUNet_preprocessed", "nnUNet_results"):
        monkeypatch.delenv(variable)
    assert cli.main(["status", str(study)]) == 2
    assert "set nnU-Net's environment variables first: nnUNet_raw, nnUNet_preprocessed, nnUNet_results" in \
        capsys.readouterr().err


def test_runs_on_several_gpus_share_the_cpus_for_augmentation(monkeypatch):
    """nnU-Net sizes each training's augmentation workers as if it had the node alone (12 + 6 on an unknown host):
    four runs at once on a 32-core node get 5 + 2 each (plus their main process: 8 per run)."""
    from nnunetv2.utilities import default_n_proc_DA

    from nnunetv2_resunet.studies.local import augmentation_workers, slot_environments

    monkeypatch.delenv("nnUNet_n_proc_DA", raising=False)
    monkeypatch.setattr(default_n_proc_DA, "get_allowed_n_proc_DA", lambda: 12)  # nnU-Net's default host
    slots = slot_environments(["0", "1", "2", "3"], 1, cpus=32)
    assert slots == [{"CUDA_VISIBLE_DEVICES": g, "nnUNet_n_proc_DA": "5"} for g in "0123"]
    assert slot_environments(["0"], 1, cpus=32) == [{"CUDA_VISIBLE_DEVICES": "0"}]  # one run: nnU-Net's own choice
    assert augmentation_workers(2, 64) == 12  # never more than nnU-Net would take
    assert augmentation_workers(8, 8) == 1  # never none (0 would augment in the training process)
    assert slot_environments(None, 2, cpus=12) == [{"nnUNet_n_proc_DA": "3"}] * 2  # -j 2 on CPU as well: 3 + 1 + 1
    monkeypatch.setenv("nnUNet_n_proc_DA", "3")  # the user's choice holds for every run
    assert slot_environments(["0", "1"], 1, cpus=32) == [{"CUDA_VISIBLE_DEVICES": "0"}, {"CUDA_VISIBLE_DEVICES": "1"}]
