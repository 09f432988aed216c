"""Each run's state, read from the files nnU-Net writes (and the run's lock and log): never from a record of our
own that could disagree with the disk.

* preprocess: the plans file, and a ``.pkl`` per training case in each configuration's data folder;
* train: ``checkpoint_final.pth`` and ``validation/summary.json`` (done), ``checkpoint_latest.pth`` /
  ``checkpoint_best.pth`` (what ``--c`` resumes from); torch checkpoints are zip files, so a half-written one
  lacks the zip's central directory and is reported as corrupt, never trained over; a fold whose training log
  says it started from other weights than the study names (from scratch, or from ``-pretrained_weights``) is
  reported as a mismatch, never used or trained on;
* predict: one prediction per test image;
* report: ``summary.json`` covering exactly the finished models, newer than their outputs.

The log (``study_<stage>.log``) says how the last attempt ended (its last line, ``=== exit code N after T s``);
the lock says whether someone is at it now.
"""

from __future__ import annotations

import json
import re
import zipfile
from collections import Counter
from dataclasses import dataclass
from enum import Enum
from pathlib import Path

from nnunetv2_resunet.studies.locks import read_lock
from nnunetv2_resunet.studies.runs import Run

LOG_HEADER = "=== nnUNetv2_resunet_study"
NOT_CONVERTED = "not in $nnUNet_raw yet: convert it (the command is listed below the table)"
EXIT_LINE = re.compile(r"=== exit code (-?\d+) after ([\d.]+) s")
EPOCH_LINE = re.compile(r": Epoch (\d+)\s*$", re.MULTILINE)
# What our trainers write into nnU-Net's training log at the start (training/resunet_trainer.py).
START_WEIGHTS_LINE = re.compile(r"Network weights: (from scratch|loaded before training by nnUNetv2_train's "
                                r"-pretrained_weights)")


class Status(str, Enum):
    DONE = "done"
    RUNNING = "running"
    FAILED = "failed"  # the last attempt exited with an error; `run` retries it (resuming where it can)
    INTERRUPTED = "interrupted"  # killed or cut off mid-way; `run` resumes it
    CORRUPT = "corrupt"  # a damaged checkpoint: reported, never trained over; a person decides
    MISMATCH = "mismatch"  # trained from other starting weights than the study names: reported; a person decides
    WAITING = "waiting"


SETTLED = (Status.DONE, Status.FAILED, Status.CORRUPT, Status.MISMATCH)  # nothing more happens without a person
NEEDS_A_PERSON = (Status.CORRUPT, Status.MISMATCH)  # never run, trained over or resubmitted by the study


@dataclass(frozen=True)
class RunState:
    status: Status
    detail: str = ""
    log: Path | None = None
    seconds: float | None = None  # wall time of its finished attempts, together
    resume: str = ""  # train: "--c" or "--val"; predict: "--continue_prediction"


@dataclass(frozen=True)
class LastAttempt:
    exit_code: int | None  # None: started, never finished (killed)
    seconds: float | None  # wall time of all finished attempts together (a resumed run's total)


def last_attempt(log: Path) -> LastAttempt | None:
    """How the last attempt in a run's log ended; None when the run was never started by a study."""
    try:
        text = log.read_text(encoding="utf-8", errors="replace")
    except FileNotFoundError:
        return None
    start = text.rfind(LOG_HEADER)
    if start < 0:
        return None
    total = sum(float(seconds) for _, seconds in EXIT_LINE.findall(text)) or None
    ends = EXIT_LINE.findall(text[start:])
    return LastAttempt(int(ends[-1][0]) if ends else None, total)


def checkpoint_problem(path: Path, full: bool = False) -> str | None:
    """Why ``path`` is not a complete torch checkpoint, or None. ``full`` also checks every member's CRC (reads the
    whole file; done before resuming from it, not for a status)."""
    try:
        with zipfile.ZipFile(path) as archive:
            names = archive.namelist()
            damaged = archive.testzip() if full else None
    except (zipfile.BadZipFile, OSError, EOFError) as error:
        return f"{path} is not a complete checkpoint (a torch checkpoint is a zip file; this one is cut short or " \
               f"damaged: {error})"
    if not any(name.endswith("/data.pkl") for name in names):
        return f"{path} is a zip file but not a torch checkpoint (no data.pkl)"
    if damaged is not None:
        return f"{path} is damaged: member {damaged} fails its CRC check"
    return None


def resume_checkpoint(fold_dir: Path) -> Path | None:
    """The checkpoint nnU-Net's ``--c`` would load (final, else latest, else best), if any."""
    for name in ("checkpoint_final.pth", "checkpoint_latest.pth", "checkpoint_best.pth"):
        if (fold_dir / name).is_file():
            return fold_dir / name
    return None


def training_progress(fold_dir: Path) -> str:
    """``epoch N of M`` from nnU-Net's newest training log and debug.json, or ""."""
    logs = sorted(fold_dir.glob("training_log_*.txt"), key=lambda p: p.stat().st_mtime)
    if not logs:
        return ""
    epochs = EPOCH_LINE.findall(logs[-1].read_text(encoding="utf-8", errors="replace"))
    if not epochs:
        return ""
    try:
        total = f" of {json.loads((fold_dir / 'debug.json').read_text())['num_epochs']}"
    except (OSError, ValueError, KeyError):
        total = ""
    return f"epoch {epochs[-1]}{total}"


def _unfinished(run: Run, attempt: LastAttempt | None, partial: str, resume: str) -> RunState:
    """Neither done nor running: failed (the last attempt said so), interrupted (it never said) or waiting."""
    if attempt is not None and attempt.exit_code not in (None, 0):
        return RunState(Status.FAILED, f"exit code {attempt.exit_code}" + (f"; {partial}" if partial else ""),
                        run.log_path, attempt.seconds, resume)
    if attempt is not None and attempt.exit_code == 0:
        return RunState(Status.FAILED, f"exited 0 but its output is incomplete{'; ' + partial if partial else ''}",
                        run.log_path, attempt.seconds, resume)
    if attempt is not None or partial:
        return RunState(Status.INTERRUPTED, partial or "stopped before finishing", run.log_path, None, resume)
    return RunState(Status.WAITING)


def starting_weights_mismatch(run: Run) -> str | None:
    """Why a fold's training does not belong to the study: its first training log (the fresh start) says it started
    from scratch where the study names published weights, or the other way round. None when it fits, or when the
    log says nothing about it (nnU-Net's own trainers)."""
    logs = sorted(run.folder.glob("training_log_*.txt"), key=lambda p: p.stat().st_mtime)
    if not logs:
        return None
    said = START_WEIGHTS_LINE.search(logs[0].read_text(encoding="utf-8", errors="replace"))
    if said is None:
        return None
    from_scratch = said.group(1) == "from scratch"
    if run.weights is not None and from_scratch:
        return (f"trained from scratch ({logs[0].name}), but the study starts it from {run.weights.name}: move "
                f"{run.folder} away to train it again")
    if run.weights is None and not from_scratch:
        return (f"started from -pretrained_weights ({logs[0].name}), but the study names no weights for it: move "
                f"{run.folder} away to train it again, or add its weights to the study")
    return None


def train_state(run: Run, attempt: LastAttempt | None) -> RunState:
    mismatch = starting_weights_mismatch(run)
    if mismatch:
        return RunState(Status.MISMATCH, mismatch, run.log_path)
    final = run.folder / "checkpoint_final.pth"
    checkpoint = resume_checkpoint(run.folder)
    if checkpoint is not None:
        problem = checkpoint_problem(checkpoint)
        if problem:
            return RunState(Status.CORRUPT, f"{problem}; move it away to let the study resume from an older "
                                            f"checkpoint or start over", run.log_path)
    if final.is_file():
        if (run.folder / "validation" / "summary.json").is_file():
            return RunState(Status.DONE, "", run.log_path, attempt.seconds if attempt else None)
        return _unfinished(run, attempt, "trained; validation missing (resumes with --val)", "--val")
    if checkpoint is not None:
        progress = training_progress(run.folder)
        partial = f"resumes from {checkpoint.name}" + (f" ({progress} reached)" if progress else "")
        return _unfinished(run, attempt, partial, "--c")
    return _unfinished(run, attempt, "", "")


def case_ids(images: Path, file_ending: str) -> list[str]:
    return sorted(p.name[:-len(f"_0000{file_ending}")] for p in images.glob(f"*_0000{file_ending}"))


def predict_state(run: Run, attempt: LastAttempt | None, file_ending: str) -> RunState:
    expected = case_ids(run.test_images, file_ending)
    done = [c for c in expected if (run.folder / f"{c}{file_ending}").is_file()]
    if expected and len(done) == len(expected):
        return RunState(Status.DONE, f"{len(done)} cases", run.log_path, attempt.seconds if attempt else None)
    partial = f"{len(done)} of {len(expected)} cases predicted" if done else ""
    return _unfinished(run, attempt, partial, "--continue_prediction" if done else "")


def inherited(configurations: dict, name: str, key: str):
    """A configuration's ``key`` in nnU-Net's plans, following ``inherits_from``; None when no ancestor has it."""
    seen = set()
    while name in configurations and name not in seen:
        seen.add(name)
        config = configurations[name]
        if key in config:
            return config[key]
        name = config.get("inherits_from", "")
    return None


def unprepared_configurations(run: Run, num_training: int) -> list[str] | None:
    """The configurations of a preprocess run whose data are not all there; None when it is not planned yet.

    Raises:
        ValueError: If the plans lack a configuration the study trains (nnU-Net drops some, e.g. 3d_lowres).
    """
    plans_file = run.folder / f"{run.plans}.json"
    if not plans_file.is_file():
        return None
    configurations = json.loads(plans_file.read_text())["configurations"]
    absent = [c for c in run.configurations if c not in configurations]
    if absent:
        raise ValueError(f"{plans_file} has no configuration {', '.join(absent)} (nnU-Net planned "
                         f"{', '.join(configurations)})")
    missing = [c for c in run.configurations if len(list(
        (run.folder / (inherited(configurations, c, "data_identifier") or "?")).glob("*.pkl"))) < num_training]
    if not missing and len(list((run.folder / "gt_segmentations").glob("*"))) < num_training:
        missing = list(run.configurations)
    return missing


def preprocess_state(run: Run, attempt: LastAttempt | None, num_training: int) -> RunState:
    try:
        missing = unprepared_configurations(run, num_training)
    except ValueError as error:
        return RunState(Status.FAILED, str(error), run.log_path)
    if missing is None:
        return _unfinished(run, attempt, "", "")
    if not missing:
        return RunState(Status.DONE, "", run.log_path, attempt.seconds if attempt else None)
    if attempt is None:  # planned by hand, or by another study: the missing configurations are simply still to do
        return RunState(Status.WAITING, f"to preprocess: {', '.join(missing)}")
    return _unfinished(run, attempt, f"to preprocess: {', '.join(missing)}", "")


def file_state(run: Run, dataset_json: dict, check_lock: bool = True) -> RunState:
    """The state of a preprocess, train or predict run from its files (the report needs the others': see
    :func:`study_states`)."""
    holder = read_lock(run.lock_path) if check_lock else None
    if holder is not None and holder.alive():
        progress = training_progress(run.folder) if run.stage == "train" else ""
        return RunState(Status.RUNNING, ", ".join(filter(None, [holder.describe(), progress])), run.log_path)
    attempt = last_attempt(run.log_path)
    if run.stage == "preprocess":
        return preprocess_state(run, attempt, int(dataset_json["numTraining"]))
    if run.stage == "train":
        return train_state(run, attempt)
    return predict_state(run, attempt, dataset_json["file_ending"])


@dataclass(frozen=True)
class FinishedModel:
    """A model whose folds are all trained, with its test-set predictions when those are done and can be scored."""

    trainer: str
    plans: str
    configuration: str
    fold_dirs: tuple[Path, ...]
    test_predictions: Path | None

    @property
    def identifier(self) -> str:
        return f"{self.trainer}__{self.plans}__{self.configuration}"


def finished_models(report: Run, runs: list[Run], states: dict[str, RunState]) -> tuple[list[FinishedModel], int]:
    """The models of ``report``'s dataset that the report can show, and how many models the dataset has."""
    by_model: dict[str, list[Run]] = {}
    for run in runs:
        if run.key in report.needs:
            by_model.setdefault(run.model, []).append(run)
    finished = []
    for model_runs in by_model.values():
        trains = [r for r in model_runs if r.stage == "train"]
        if not all(states[r.key].status == Status.DONE for r in trains):
            continue
        predicts = [r for r in model_runs if r.stage == "predict" and states[r.key].status == Status.DONE]
        scored = predicts[0].folder if predicts and report.test_labels and report.test_labels.is_dir() else None
        first = trains[0]
        finished.append(FinishedModel(first.trainer, first.plans, first.configurations[0],
                                      tuple(r.folder for r in trains), scored))
    return finished, len(by_model)


def _newest_input(models: list[FinishedModel]) -> float:
    times = [(d / "validation" / "summary.json").stat().st_mtime for m in models for d in m.fold_dirs]
    times += [p.stat().st_mtime for m in models if m.test_predictions for p in m.test_predictions.iterdir()]
    return max(times, default=0.0)


def report_state(run: Run, runs: list[Run], states: dict[str, RunState]) -> RunState:
    models, total = finished_models(run, runs, states)
    attempt = last_attempt(run.log_path)
    expected = {(m.trainer, m.plans, m.configuration, "cv") for m in models}
    expected |= {(m.trainer, m.plans, m.configuration, "test") for m in models if m.test_predictions}
    summary_file = run.folder / "summary.json"
    if expected and summary_file.is_file():
        summary = json.loads(summary_file.read_text())
        covered = {(r["trainer"], r["plans"], r["configuration"], r["split"]) for r in summary["runs"]}
        if covered == expected and summary_file.stat().st_mtime >= _newest_input(models):
            detail = f"{len(models)} of {total} models" if len(models) < total else f"{total} models"
            return RunState(Status.DONE, detail, run.log_path, attempt.seconds if attempt else None)
    if not expected:
        return RunState(Status.WAITING)
    return _unfinished(run, attempt, "", "")


def ready(run: Run, states: dict[str, RunState]) -> bool:
    """Whether what ``run`` needs is there: every need done; for a report, every need settled and one model with
    all its folds done."""
    if run.stage == "report":
        folds_done: dict[str, list[bool]] = {}
        for key in run.needs:
            if key.startswith("train "):  # "train DATASET MODEL fold_N"
                folds_done.setdefault(key.split()[2], []).append(states[key].status == Status.DONE)
        return all(states[k].status in SETTLED for k in run.needs) and any(all(f) for f in folds_done.values())
    return all(states[k].status == Status.DONE for k in run.needs)


def study_states(runs: list[Run], raw: Path, own: str = "") -> dict[str, RunState]:
    """Every run's state, from the disk. ``own``: the key of a run whose lock the caller holds (not "running")."""
    states: dict[str, RunState] = {}
    dataset_jsons: dict[str, dict] = {}
    for run in runs:
        if run.stage != "report":
            if run.dataset not in dataset_jsons:
                path = raw / run.dataset / "dataset.json"
                dataset_jsons[run.dataset] = json.loads(path.read_text()) if path.is_file() else None
            if dataset_jsons[run.dataset] is None:  # not converted yet: nothing of it can have started
                states[run.key] = RunState(Status.WAITING, NOT_CONVERTED if run.stage == "preprocess" else "")
            else:
                states[run.key] = file_state(run, dataset_jsons[run.dataset], check_lock=run.key != own)
    for run in runs:
        if run.stage == "report":
            holder = read_lock(run.lock_path) if run.key != own else None
            states[run.key] = (RunState(Status.RUNNING, holder.describe(), run.log_path)
                               if holder is not None and holder.alive() else report_state(run, runs, states))
    for run in runs:
        state = states[run.key]
        if state.status == Status.WAITING and not state.detail and ready(run, states):
            states[run.key] = RunState(Status.WAITING, "ready")
        elif state.status == Status.WAITING and not ready(run, states):
            settled = SETTLED if run.stage == "report" else (Status.DONE,)
            pending = Counter(k.split()[0] for k in run.needs if states[k].status not in settled)
            detail = ", ".join(f"{n} {stage}" if n > 1 else stage for stage, n in pending.items())
            states[run.key] = RunState(Status.WAITING, f"after {detail}" if pending else "after a finished model")
    return states
