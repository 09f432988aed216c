"""Execute one run: take its lock, decide from the disk what is left to do (resume with ``--c``, validate with
``--val``, continue a prediction), run nnU-Net's or our command as a subprocess with its output in the run's log,
and read the state back from the disk. The same function serves a local ``run`` and a SLURM job.

The log gets a header per attempt (run, command, host, pid, start) and a last line ``=== exit code N after T s``
that :func:`.state.last_attempt` reads; an attempt without one was killed.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from dataclasses import dataclass
from datetime import datetime
from importlib.metadata import entry_points
from pathlib import Path

from nnunetv2_resunet.studies.locks import RunLock, read_lock
from nnunetv2_resunet.studies.progress import format_status
from nnunetv2_resunet.studies.runs import NnUNetFolders, Run
from nnunetv2_resunet.studies.state import (
    LOG_HEADER,
    NEEDS_A_PERSON,
    RunState,
    Status,
    checkpoint_problem,
    finished_models,
    ready,
    resume_checkpoint,
    study_states,
    unprepared_configurations,
)
from nnunetv2_resunet.studies.study_file import PLANNERS, Study

TERMINATE_GRACE_S = 60.0
# A train run with published weights writes its network's starting point here, for -pretrained_weights.
INIT_WEIGHTS_FILE = "study_init_weights.pth"


@dataclass(frozen=True)
class Options:
    """How runs execute: nnU-Net's ``-device`` and process counts, and where the study came from."""

    device: str = "cuda"
    # nnU-Net's -npp / -nps for prediction (0: its sequential mode), -np for the report (0 or 1: no worker
    # processes), -np / -npfp for preprocessing (at least 1: nnU-Net's preprocessing has no sequential mode).
    num_processes: int = 8

    @property
    def preprocessing_processes(self) -> int:
        return max(1, self.num_processes)


def console_command(name: str) -> list[str]:
    """An installed console command, run with this interpreter's environment: the script beside ``sys.executable``
    when there is one, else the same entry point called the way the generated script calls it (a virtual
    environment that inherits nnunetv2 from the system has no nnUNetv2_* scripts of its own)."""
    script = Path(sys.executable).parent / name
    if script.is_file():
        return [str(script)]
    found = entry_points(group="console_scripts", name=name)
    if not found:
        on_path = shutil.which(name)
        if on_path is None:
            raise RuntimeError(f"command {name} not found: is nnunetv2 installed in {sys.executable}'s environment?")
        return [on_path]
    module, function = next(iter(found)).value.split(":")
    return [sys.executable, "-c", f"import sys; sys.argv[0] = {name!r}; from {module} import {function}; "
                                  f"sys.exit({function}())"]


def preprocess_command(run: Run, folders: NnUNetFolders, options: Options) -> list[str] | None:
    """Plan (fingerprint first if missing; no preprocessing) when the plans file is missing; else prepare the
    configurations whose data are missing; None when nothing is. Planning and preparing are separate commands because
    nnU-Net's ResEnc plans (and ours) share the default plans' 2d and 3d_fullres data: planning them must not
    rewrite data that other runs may be training on (nnU-Net's resenc_presets.md: plan only)."""
    np_args = ["-np", str(options.preprocessing_processes)]
    missing = None
    if (run.folder / f"{run.plans}.json").is_file():
        num_training = json.loads((folders.raw / run.dataset / "dataset.json").read_text())["numTraining"]
        missing = unprepared_configurations(run, num_training)
    if missing is not None:  # planned already: never re-plan (that would rewrite the plans), prepare what is missing
        if not missing:
            return None
        return ["nnUNetv2_preprocess", "-d", str(run.dataset_id), "-plans_name", run.plans,
                "-c", *missing, *np_args]
    common = ["-d", str(run.dataset_id), *np_args, "-npfp", str(options.preprocessing_processes),
              "--verify_dataset_integrity", "--no_pp"]
    planner, default_plans = PLANNERS[run.planner]
    if planner is None:  # ours
        target = run.gpu_memory_target if run.gpu_memory_target is not None else 8
        return ["nnUNetv2_resunet_plan", *common, "-gpu_memory_target", str(target),
                "-overwrite_plans_name", run.plans]
    command = ["nnUNetv2_plan_and_preprocess", *common]
    if run.planner != "nnunet":
        command += ["-pl", planner]
    if run.gpu_memory_target is not None:
        command += ["-gpu_memory_target", str(run.gpu_memory_target)]
    if run.plans != default_plans:
        command += ["-overwrite_plans_name", run.plans]
    return command


def train_command(run: Run, state: RunState, options: Options) -> list[str]:
    command = ["nnUNetv2_train", str(run.dataset_id), run.configurations[0], str(run.fold),
               "-tr", run.trainer, "-p", run.plans, "-device", options.device]
    if state.resume in ("--c", "--val"):  # the checkpoint holds the weights; nnU-Net refuses both with --c
        return command + [state.resume]
    if run.weights is not None:
        command += ["-pretrained_weights", str(run.folder / INIT_WEIGHTS_FILE)]
    return command


def init_weights_command(run: Run) -> list[str]:
    """The trainer's network for the plan, its encoder from the published file: what ``-pretrained_weights`` reads."""
    return ["nnUNetv2_resunet_init_weights", "-d", str(run.dataset_id), "-c", run.configurations[0],
            "-tr", run.trainer, "-p", run.plans, "-i", str(run.weights), "-o", str(run.folder / INIT_WEIGHTS_FILE)]


def predict_command(run: Run, state: RunState, options: Options) -> list[str]:
    command = ["nnUNetv2_predict", "-i", str(run.test_images), "-o", str(run.folder),
               "-d", str(run.dataset_id), "-c", run.configurations[0], "-p", run.plans, "-tr", run.trainer,
               "-f", *map(str, run.folds), "-device", options.device, "-npp", str(options.num_processes),
               "-nps", str(options.num_processes)]
    return command + (["--continue_prediction"] if state.resume == "--continue_prediction" else [])


def report_command(run: Run, runs: list[Run], states: dict[str, RunState], options: Options) -> list[str]:
    models, _ = finished_models(run, runs, states)
    if not models:
        raise RuntimeError(f"{run.key}: no model of {run.dataset} has finished all its folds")
    command = ["nnUNetv2_resunet_report", "-d", str(run.dataset_id),
               "-tr", *(m.identifier for m in models), "-f", *map(str, run.folds), "-o", str(run.folder),
               "-np", str(options.num_processes)]
    tested = [m for m in models if m.test_predictions]
    if tested:
        command += ["-test_pred", *(f"{m.identifier}={m.test_predictions}" for m in tested),
                    "-test_gt", str(run.test_labels)]
    return command


def command_for(run: Run, runs: list[Run], states: dict[str, RunState], folders: NnUNetFolders,
                options: Options) -> list[str]:
    """The command (a console command's name and its arguments) that does what is left of ``run``, given the
    states read from the disk."""
    state = states[run.key]
    if run.stage == "preprocess":
        return preprocess_command(run, folders, options)
    if run.stage == "train":
        return train_command(run, state, options)
    if run.stage == "predict":
        return predict_command(run, state, options)
    return report_command(run, runs, states, options)


def execute_run(run: Run, study: Study, runs: list[Run], folders: NnUNetFolders, options: Options,
                env: dict[str, str] | None = None, on_start=None) -> RunState:
    """Run ``run`` if it still needs running and nobody else is at it; return its state afterwards.

    ``env``: extra environment variables (e.g. ``CUDA_VISIBLE_DEVICES``); ``on_start(process)`` is called with the
    child process (so that a scheduler can stop it).
    """
    lock = RunLock(run.lock_path, run.key)
    if not lock.acquire():
        holder = read_lock(run.lock_path)
        return RunState(Status.RUNNING, f"held by {holder.describe() if holder else 'another process'}", run.log_path)
    try:
        states = study_states(runs, folders.raw, own=run.key)
        state = states[run.key]
        if state.status == Status.DONE or state.status in NEEDS_A_PERSON:
            return state
        if not ready(run, states):  # e.g. a SLURM task whose folds failed: say why instead of running nnU-Net
            return RunState(Status.WAITING, state.detail or "what it needs is not done", run.log_path)
        if run.stage == "train" and state.resume == "--c":
            problem = checkpoint_problem(resume_checkpoint(run.folder), full=True)
            if problem:
                return RunState(Status.CORRUPT, problem, run.log_path)
        command = command_for(run, runs, states, folders, options)
        starts_from_weights = "-pretrained_weights" in command
        if starts_from_weights:
            code, _ = _run_logged(run, init_weights_command(run), env or {}, lock, on_start)
            if code != 0:  # the log's last attempt says why; the state reads it as failed
                return study_states(runs, folders.raw, own=run.key)[run.key]
        code, seconds = _run_logged(run, command, env or {}, lock, on_start)
        if run.stage == "preprocess" and code == 0 and command[0] != "nnUNetv2_preprocess":
            prepare = preprocess_command(run, folders, options)  # planned now: prepare what is missing
            if prepare is not None:
                code, _ = _run_logged(run, prepare, env or {}, lock, on_start)
        if run.stage == "train" and code == 0:  # also after a --c that finished a run whose start was killed
            (run.folder / INIT_WEIGHTS_FILE).unlink(missing_ok=True)  # in the checkpoints now; the log names its source
        states = study_states(runs, folders.raw, own=run.key)
        if run.stage == "report" and code == 0:
            _write_study_record(study, runs, states, folders)
        return states[run.key]
    finally:
        lock.release()


def _run_logged(run: Run, command: list[str], extra_env: dict[str, str], lock: RunLock, on_start) -> tuple[int, float]:
    run.log_path.parent.mkdir(parents=True, exist_ok=True)
    env = {**os.environ, **extra_env, "PYTHONUNBUFFERED": "1"}
    started = time.monotonic()
    with open(run.log_path, "a", encoding="utf-8") as log:
        log.write(f"{LOG_HEADER}: {run.key}\n=== command: {subprocess.list2cmdline(command)}\n"
                  f"=== host {socket.gethostname()}, pid {os.getpid()}, started "
                  f"{datetime.now().isoformat(timespec='seconds')}, "
                  f"CUDA_VISIBLE_DEVICES={env.get('CUDA_VISIBLE_DEVICES', '(unset)')}, "
                  f"nnUNet_n_proc_DA={env.get('nnUNet_n_proc_DA', '(unset)')}\n")
        log.flush()
        process = subprocess.Popen([*console_command(command[0]), *command[1:]], stdout=log,
                                   stderr=subprocess.STDOUT, env=env)
        lock.set_child(process.pid)
        if on_start is not None:
            on_start(process)
        code = None
        try:
            code = process.wait()
        finally:
            if code is None:  # interrupted (Ctrl-C, SLURM's time limit, a stop request): stop nnU-Net too
                stop_process_tree(process)
                try:
                    code = process.wait(TERMINATE_GRACE_S)
                except subprocess.TimeoutExpired:
                    stop_process_tree(process, signal.SIGKILL)
                    code = process.wait()
            seconds = time.monotonic() - started
            log.write(f"\n=== exit code {code} after {seconds:.1f} s (finished "
                      f"{datetime.now().isoformat(timespec='seconds')})\n")
    return code, seconds


def stop_process_tree(process: subprocess.Popen, signum: int = signal.SIGTERM) -> None:
    """Send ``signum`` to ``process`` and then to every process it started. nnU-Net's data-augmentation workers
    (batchgenerators' daemon processes) outlive a trainer killed by a signal (only its normal exit stops them): left
    alone, they poll forever, reparented to init, holding their batches in shared memory."""
    descendants = process_descendants(process.pid)
    process.send_signal(signum)
    for pid in descendants:
        try:
            os.kill(pid, signum)
        except (ProcessLookupError, PermissionError):  # ended meanwhile (its pid is not reused this soon)
            pass


def process_descendants(pid: int) -> list[int]:
    """The children of process ``pid``, their children, and so on, from /proc (Linux; none found elsewhere)."""
    parents: dict[int, list[int]] = {}
    for entry in Path("/proc").glob("[0-9]*"):
        try:
            parent = int((entry / "stat").read_text().rsplit(")", 1)[1].split()[1])
        except (OSError, IndexError, ValueError):
            continue
        parents.setdefault(parent, []).append(int(entry.name))
    found, frontier = [], [pid]
    while frontier:
        children = parents.get(frontier.pop(), [])
        found += children
        frontier += children
    return found


def _write_study_record(study: Study, runs: list[Run], states: dict[str, RunState], folders: NnUNetFolders) -> None:
    """Beside the reports: the study file that produced them and the status of every run, wall times included."""
    folders.reports.mkdir(parents=True, exist_ok=True)
    shutil.copyfile(study.path, folders.reports / study.path.name)
    (folders.reports / "status.md").write_text(
        f"# Study {study.name}: status when the report was written\n\n"
        f"Written {datetime.now().isoformat(timespec='seconds')} on {socket.gethostname()} from "
        f"`{study.path.name}`. Wall time: each run's attempts together, from its log (a run resumed after an "
        f"interruption also lost the time since its last checkpoint).\n\n"
        f"```\n{format_status(study, runs, states, folders)}\n```\n",
        encoding="utf-8")
