"""Submit a study to SLURM through submitit: one array job per stage (preprocess, train, predict, report) holding
the runs that are not done, each stage after the one before it.

Dependencies: training waits for preprocessing with ``afterok`` (and ``--kill-on-invalid-dep=yes``: without the
data, training cannot start); prediction waits for training, and the report for both, with ``afterany``, because
SLURM's dependencies are per array job, not per task: one failed fold must not keep every other model from being
predicted and reported. Each task checks what it needs on the disk when it starts, and fails with that reason when
something is missing. Every task runs :func:`.execute.execute_run`, the same code as a local ``run``, so locks,
logs and resumption behave the same. A task that reaches its time limit is requeued by submitit (SLURM signals it
first) and resumes from nnU-Net's last checkpoint with ``--c``.

Resources come from the study file's ``[slurm]`` table, overridden by ``submit``'s flags, then per stage by
``[slurm.<stage>]``; preprocessing and the report ask for no GPU unless their table says otherwise.
"""

from __future__ import annotations

import re
from dataclasses import asdict
from pathlib import Path
from typing import Any

import submitit

from nnunetv2_resunet.studies.execute import Options, execute_run
from nnunetv2_resunet.studies.runs import NnUNetFolders, Run, build_runs
from nnunetv2_resunet.studies.state import NEEDS_A_PERSON, RunState, Status, study_states
from nnunetv2_resunet.studies.study_file import STAGES, Study, StudyFileError, load_study

GENERAL_DEFAULTS: dict[str, Any] = {"time": "24:00:00", "gpus": 1, "cpus": 8}
STAGE_DEFAULTS: dict[str, dict[str, Any]] = {"preprocess": {"gpus": 0}, "report": {"gpus": 0}}
# Which earlier stages each stage waits for, and how.
DEPENDENCIES: dict[str, tuple[tuple[str, str], ...]] = {
    "train": (("afterok", "preprocess"),),
    "predict": (("afterany", "train"),),
    "report": (("afterany", "train"), ("afterany", "predict")),
}
SLURM_TIME = re.compile(r"(?:(\d+)-)?(\d+)(?::(\d+))?(?::(\d+))?")


def minutes(time: str | int) -> int:
    """SLURM's time formats (``MM``, ``HH:MM:SS``, ``D-HH[:MM[:SS]]``) or a number of minutes, in minutes."""
    if isinstance(time, int):
        return time
    match = SLURM_TIME.fullmatch(time.strip())
    if match is None:
        raise StudyFileError(f"time {time!r}: use minutes, HH:MM:SS or D-HH:MM:SS")
    days, first, second, third = (int(g) if g else None for g in match.groups())
    if days is None and second is None:
        return first  # minutes
    if days is None and third is None:
        return first + (1 if second else 0)  # MM:SS, rounded up
    hours, mins, secs = first, second or 0, third or 0
    return (days or 0) * 1440 + hours * 60 + mins + (1 if secs else 0)


def stage_settings(study: Study, overrides: dict[str, Any], stage: str) -> dict[str, Any]:
    """Built-in defaults < the study's [slurm] < the command line < built-in stage defaults < [slurm.<stage>]."""
    general = {k: v for k, v in study.slurm.items() if k not in STAGES}
    given = {k: v for k, v in overrides.items() if v is not None}
    return {**GENERAL_DEFAULTS, **general, **given, **STAGE_DEFAULTS.get(stage, {}), **study.slurm.get(stage, {})}


def executor_parameters(settings: dict[str, Any], job_name: str, dependency: str) -> dict[str, Any]:
    """submitit's SlurmExecutor parameters (sbatch's names) for one stage."""
    parameters: dict[str, Any] = {"job_name": job_name, "time": minutes(settings["time"]),
                                  "cpus_per_task": settings["cpus"]}
    if settings["gpus"]:
        parameters["gpus_per_node"] = settings["gpus"]
    for key in ("partition", "account", "qos", "constraint", "setup", "array_parallelism"):
        if settings.get(key) is not None:
            parameters[key] = settings[key]
    if settings.get("mem_gb") is not None:
        parameters["mem"] = f"{int(settings['mem_gb'] * 1024)}MB"
    additional = dict(settings.get("additional") or {})
    if dependency:
        parameters["dependency"] = dependency
        additional["kill-on-invalid-dep"] = "yes"
    if additional:
        parameters["additional_parameters"] = additional
    return parameters


class StudyJob(submitit.helpers.Checkpointable):
    """What a SLURM task runs: the study's run named ``key``, through the same code as a local run. Checkpointable:
    at its time limit submitit requeues it, and it resumes from nnU-Net's checkpoint."""

    def __call__(self, study_file: str, key: str, options: dict[str, Any], reports_base: str) -> str:
        study = load_study(study_file)
        folders = NnUNetFolders.from_environment(study, reports_base)
        runs = build_runs(study, folders)
        by_key = {run.key: run for run in runs}
        if key not in by_key:
            raise RuntimeError(f"{study_file} no longer has the run {key!r}: was the study file changed after "
                               f"submitting?")
        state = execute_run(by_key[key], study, runs, folders, Options(**options))
        if state.status != Status.DONE:
            log = f"; log: {state.log}" if state.log else ""
            raise RuntimeError(f"{key}: {state.status.value}: {state.detail}{log}")
        return state.status.value


def runs_to_submit(runs: list[Run], states: dict[str, RunState], stage: str) -> list[Run]:
    """The stage's runs that are not done, not running, not waiting for a person (a corrupt checkpoint, a
    mismatch), and not behind one."""
    blocked = (Status.DONE, Status.RUNNING, *NEEDS_A_PERSON)
    return [r for r in runs if r.stage == stage and states[r.key].status not in blocked
            and (stage == "report" or not any(states[n].status in NEEDS_A_PERSON for n in r.needs))]


def submit_study(study: Study, runs: list[Run], folders: NnUNetFolders, options: Options,
                 overrides: dict[str, Any], slurm_folder: Path) -> list[tuple[str, str, list[Run]]]:
    """Submit what is left of the study; returns ``(stage, job id, runs)`` per submitted stage."""
    states = study_states(runs, folders.raw)
    submitted: dict[str, list[str]] = {}
    result = []
    for stage in STAGES:
        todo = runs_to_submit(runs, states, stage)
        for wave in _waves(todo):
            waits: dict[str, list[str]] = {}
            for kind, earlier in DEPENDENCIES.get(stage, ()):
                waits.setdefault(kind, []).extend(submitted.get(earlier, []))
            if stage in submitted:  # a later wave of the same stage: after the one before it
                waits.setdefault("afterok", []).append(submitted[stage][-1])
            dependency = ",".join(f"{kind}:{':'.join(ids)}" for kind, ids in waits.items() if ids)
            executor = submitit.SlurmExecutor(folder=slurm_folder / "%j")
            executor.update_parameters(**executor_parameters(stage_settings(study, overrides, stage),
                                                             f"{study.name}:{stage}", dependency))
            with executor.batch():
                jobs = [executor.submit(StudyJob(), str(study.path.absolute()), run.key, asdict(options),
                                        str(folders.reports.parent)) for run in wave]
            job_id = jobs[0].job_id.split("_")[0]  # the array's id: dependencies name the whole array
            submitted.setdefault(stage, []).append(job_id)
            result.append((stage, job_id, wave))
    return result


def _waves(todo: list[Run]) -> list[list[Run]]:
    """The runs of one stage in waves: a run that needs another run of the same stage (a dataset's second plans
    after its first) goes into a later array, which waits for the one before."""
    keys = {run.key for run in todo}
    level: dict[str, int] = {}
    for run in todo:  # runs come after what they need
        level[run.key] = 1 + max((level[n] for n in run.needs if n in keys), default=-1)
    return [[r for r in todo if level[r.key] == w] for w in range(max(level.values(), default=-1) + 1)]
