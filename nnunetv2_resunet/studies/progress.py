"""The status view: a bar per stage with counts, then one line per run (state, wall time, what is going on), then
the runs that need a person, each with the log to read. Paths are shown from nnU-Net's variables
(``$nnUNet_results/...``), so the view reads the same on every machine and in a committed ``status.md``."""

from __future__ import annotations

from collections import Counter
from pathlib import Path

from nnunetv2_resunet.studies.runs import NnUNetFolders, Run
from nnunetv2_resunet.studies.state import RunState, Status
from nnunetv2_resunet.studies.study_file import STAGES, Study

BAR_WIDTH = 20
ORDER = (Status.DONE, Status.RUNNING, Status.FAILED, Status.CORRUPT, Status.MISMATCH, Status.INTERRUPTED,
         Status.WAITING)


def display_path(path: Path | None, folders: NnUNetFolders) -> str:
    if path is None:
        return ""
    for variable, base in (("$nnUNet_results", folders.results), ("$nnUNet_preprocessed", folders.preprocessed),
                           ("$nnUNet_raw", folders.raw)):
        try:
            return f"{variable}/{path.relative_to(base)}"
        except ValueError:
            continue
    return str(path)


def wall_time(seconds: float | None) -> str:
    if seconds is None:
        return ""
    minutes, secs = divmod(int(round(seconds)), 60)
    hours, minutes = divmod(minutes, 60)
    return f"{hours}h{minutes:02d}m" if hours else f"{minutes}m{secs:02d}s"


def run_label(run: Run) -> tuple[str, str]:
    """(model, part) columns of a run's line."""
    if run.stage == "preprocess":
        return f"{run.plans} {' '.join(run.configurations)}", ""
    if run.stage == "train":
        return run.model, f"fold_{run.fold}"
    if run.stage == "predict":
        return run.model, run.test_images.name if run.test_images else ""
    return "", f"folds {' '.join(map(str, run.folds))}"


def stage_bars(runs: list[Run], states: dict[str, RunState]) -> list[str]:
    lines = []
    for stage in STAGES:
        counts = Counter(states[r.key].status for r in runs if r.stage == stage)
        total = sum(counts.values())
        if not total:
            continue
        filled = round(BAR_WIDTH * counts[Status.DONE] / total)
        others = ", ".join(f"{counts[s]} {s.value}" for s in ORDER[1:] if counts[s])
        lines.append(f"  {stage:<10} [{'#' * filled}{'.' * (BAR_WIDTH - filled)}] {counts[Status.DONE]}/{total} done"
                     + (f", {others}" if others else ""))
    return lines


def format_status(study: Study, runs: list[Run], states: dict[str, RunState], folders: NnUNetFolders) -> str:
    counts = Counter(states[r.key].status for r in runs)
    summary = ", ".join(f"{counts[s]} {s.value}" for s in ORDER if counts[s])
    lines = [f"Study {study.name} ({study.path.name}): {len(runs)} runs: {summary}", *stage_bars(runs, states), ""]
    rows = [("stage", "dataset", "model", "part", "state", "wall", "detail")]
    for run in runs:
        state = states[run.key]
        model, part = run_label(run)
        rows.append((run.stage, run.dataset, model, part, state.status.value, wall_time(state.seconds), state.detail))
    widths = [max(len(row[i]) for row in rows) for i in range(6)]
    for row in rows:
        lines.append("  ".join(cell.ljust(width) for cell, width in zip(row, widths)) + "  " + row[6])
    attention = [r for r in runs if states[r.key].status in (Status.FAILED, Status.CORRUPT, Status.MISMATCH,
                                                              Status.INTERRUPTED)]
    if attention:
        lines += ["", "Needs attention (read the log):"]
        for run in attention:
            state = states[run.key]
            lines.append(f"  {state.status.value}: {run.key}")
            lines.append(f"    log: {display_path(state.log, folders)}")
    return "\n".join(line.rstrip() for line in lines)


def format_plan(runs: list[Run], states: dict[str, RunState], commands: dict[str, str],
                folders: NnUNetFolders) -> str:
    """Every run in order, what it waits for, and the command that would do what is left of it."""
    lines = []
    for number, run in enumerate(runs, 1):
        state = states[run.key]
        lines.append(f"{number:>3}. {run.key}  [{state.status.value}{': ' + state.detail if state.detail else ''}]")
        if run.key in commands:
            lines.append(f"       $ {commands[run.key]}")
        lines.append(f"       log: {display_path(run.log_path, folders)}")
    return "\n".join(lines)
