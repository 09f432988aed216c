"""Submit a study to SLURM through submitit: one array job per stage (preprocess, train, predict, report) holding
the runs that are not done, each stage after the one before it.

Dependencies: training waits for preprocessing with ``afterok`` (and ``--kill-on-invalid-dep=yes``: without the
data, training cannot start); prediction waits for training, and the report for both, with ``afterany``, because
SLURM's dependencies are per array job, not per task: one failed fold must not keep every other model from being
predicted and reported. Each task checks what it needs on the disk when it starts, and fails with that reason when
something is missing. Every task runs :func:`.execute.execute_run`, the same code as a local ``run``, so locks,
logs and resumption behave the same. A task that reaches its time limit is requeued by submitit (SLURM signals it
first) and resumes from nnU-Net's last checkpoint with ``--c``.

Each submitted run gets a record beside its log (``study_<stage>.slurm``: its job id); a later ``submit`` asks
squeue about those jobs and submits nothing for a run whose job is still queued or running (a job not started yet
holds no lock), making its own jobs wait for those instead; a queued run that needs a run submitted now (the report
of a study given another trainer) is submitted again, after it.

Resources come from the study file's ``[slurm]`` table, overridden by ``submit``'s flags, then per stage by
``[slurm.<stage>]``; preprocessing and the report ask for no GPU unless their table says otherwise.
"""

from __future__ import annotations

import json
import re
from dataclasses import asdict
from datetime import datetime
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
# squeue's states of a job that is still to run or running (a finished one may be listed for a few minutes more).
ACTIVE_STATES = {"PENDING", "RUNNING", "CONFIGURING", "COMPLETING", "SUSPENDED", "REQUEUED", "REQUEUE_HOLD",
                 "REQUEUE_FED", "RESIZING", "SIGNALING", "STAGE_OUT", "STOPPED"}
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


def runs_to_submit(runs: list[Run], states: dict[str, RunState], stage: str,
                   queued: dict[str, str] | None = None) -> list[Run]:
    """The stage's runs that are not done, not running, not queued (``queued``: run key -> its SLURM job, from
    :func:`queued_jobs`), not waiting for a person (a corrupt checkpoint, a mismatch), and not behind one."""
    blocked = (Status.DONE, Status.RUNNING, *NEEDS_A_PERSON)
    return [r for r in runs if r.stage == stage and states[r.key].status not in blocked and r.key not in (queued or {})
            and (stage == "report" or not any(states[n].status in NEEDS_A_PERSON for n in r.needs))]


def squeue_jobs() -> dict[str, str]:
    """This user's jobs that SLURM has not finished, ``{job id: state}``; array tasks as ``ARRAYID_TASK``.

    Raises:
        StudyFileError: If squeue cannot be asked (the runs' SLURM records cannot be checked then).
    """
    import getpass
    import subprocess

    command = ["squeue", "--noheader", "--array", "--format=%A|%a|%T", f"--user={getpass.getuser()}"]
    try:
        listing = subprocess.run(command, capture_output=True, text=True, timeout=120, check=True).stdout
    except (OSError, subprocess.SubprocessError) as error:
        raise StudyFileError(f"runs of this study were submitted to SLURM, but `{' '.join(command)}` failed ({error})"
                             f": cannot tell whether they are still queued") from None
    jobs = {}
    for line in listing.splitlines():
        parts = line.strip().split("|")
        if len(parts) == 3 and parts[2] in ACTIVE_STATES:
            jobs[parts[0] if parts[1] in ("N/A", "") else f"{parts[0]}_{parts[1]}"] = parts[2]
    return jobs


def queued_jobs(runs: list[Run], states: dict[str, RunState], strict: bool = True) -> dict[str, str]:
    """The runs (not done, not running) whose last submitted SLURM job is still queued or running: run key -> job
    id and state, e.g. ``"7001_3 (PENDING)"``. Asks squeue only when such a run has a SLURM record; ``strict=False``
    answers {} where squeue cannot be asked (a status away from the cluster)."""
    records = {}
    for run in runs:
        if states[run.key].status not in (Status.DONE, Status.RUNNING):
            try:
                records[run.key] = json.loads(run.slurm_path.read_text(encoding="utf-8"))["job"]
            except (OSError, ValueError, KeyError, TypeError):
                continue
    if not records:
        return {}
    try:
        active = squeue_jobs()
    except StudyFileError:
        if strict:
            raise
        return {}
    return {key: f"{job} ({active[job]})" for key, job in records.items() if job in active}


def _record_submission(run: Run, job_id: str, study: Study) -> None:
    run.slurm_path.parent.mkdir(parents=True, exist_ok=True)
    run.slurm_path.write_text(json.dumps({"job": job_id, "study": str(study.path.absolute()),
                                          "submitted": datetime.now().isoformat(timespec="seconds")}),
                              encoding="utf-8")


def submit_study(study: Study, runs: list[Run], folders: NnUNetFolders, options: Options,
                 overrides: dict[str, Any], slurm_folder: Path) -> list[tuple[str, str, list[Run]]]:
    """Submit what is left of the study; returns ``(stage, job id, runs)`` per submitted stage."""
    states = study_states(runs, folders.raw)
    queued = queued_jobs(runs, states)
    by_key = {run.key: run for run in runs}
    earlier_jobs: dict[str, list[str]] = {}  # stage -> its arrays that later stages wait for: queued, submitted now
    for key, job in queued.items():
        earlier_jobs.setdefault(by_key[key].stage, []).append(_array(job))
    submitted: dict[str, list[str]] = {}  # stage -> its arrays submitted now
    result = []
    fresh: set[str] = set()  # runs submitted now: a queued job of a run that needs one would start too early
    for stage in STAGES:
        still_queued = {k: job for k, job in queued.items() if not fresh.intersection(by_key[k].needs)}
        todo = runs_to_submit(runs, states, stage, still_queued)
        for wave in _waves(todo):
            waits: dict[str, list[str]] = {}
            for kind, earlier in DEPENDENCIES.get(stage, ()):
                waits.setdefault(kind, []).extend(earlier_jobs.get(earlier, []))
            # a later wave of the same stage (a dataset's second plans after its first): after the one before it,
            # or after the queued job of the run it needs
            same = [_array(still_queued[n]) for run in wave for n in run.needs
                    if n in still_queued and by_key[n].stage == stage]
            if stage in submitted:
                same.append(submitted[stage][-1])
            if same:
                waits.setdefault("afterok", []).extend(same)
            dependency = ",".join(f"{kind}:{':'.join(dict.fromkeys(ids))}" for kind, ids in waits.items() if ids)
            executor = submitit.SlurmExecutor(folder=slurm_folder / "%j")
            executor.update_parameters(**executor_parameters(stage_settings(study, overrides, stage),
                                                             f"{study.name}:{stage}", dependency))
            with executor.batch():
                jobs = [executor.submit(StudyJob(), str(study.path.absolute()), run.key, asdict(options),
                                        str(folders.reports.parent)) for run in wave]
            for run, job in zip(wave, jobs, strict=True):
                _record_submission(run, job.job_id, study)
                fresh.add(run.key)
            job_id = _array(jobs[0].job_id)  # the array's id: dependencies name the whole array
            submitted.setdefault(stage, []).append(job_id)
            earlier_jobs.setdefault(stage, []).append(job_id)
            result.append((stage, job_id, wave))
    return result


def _array(job: str) -> str:
    """The array job of a job id (``7001_3`` or ``7001_3 (PENDING)`` -> ``7001``; ``7002`` stays)."""
    return job.split()[0].split("_")[0]


def _waves(todo: list[Run]) -> list[list[Run]]:
    """The runs of one stage in waves: a run that needs another run of the same stage (a dataset's second plans
    after its first) goes into a later array, which waits for the one before."""
    keys = {run.key for run in todo}
    level: dict[str, int] = {}
    for run in todo:  # runs come after what they need
        level[run.key] = 1 + max((level[n] for n in run.needs if n in keys), default=-1)
    return [[r for r in todo if level[r.key] == w] for w in range(max(level.values(), default=-1) + 1)]
