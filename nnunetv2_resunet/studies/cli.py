"""``nnUNetv2_resunet_study``: a whole comparison from one study file.

    nnUNetv2_resunet_study status STUDY.toml            what is done, running, failed (with the log) or waiting
    nnUNetv2_resunet_study plan STUDY.toml              every run in order, with the command that does what is left
    nnUNetv2_resunet_study run STUDY.toml [-device cpu] [-gpus 0 1]   the missing runs, on this machine
    nnUNetv2_resunet_study submit STUDY.toml [-partition gpu -time 24:00:00 ...]   the same, on SLURM

Re-running any of them is safe: finished runs are skipped, interrupted training resumes with nnU-Net's ``--c``,
finished results are never overwritten, and a run that another invocation holds is left alone.
"""

from __future__ import annotations

import argparse
import os
import shutil
import signal
import subprocess
import sys
from collections.abc import Sequence
from pathlib import Path

from nnunetv2_resunet.command_line import add_option, command_parser, run_command, torch_device
from nnunetv2_resunet.studies.runs import NnUNetFolders, build_runs
from nnunetv2_resunet.studies.state import Status, study_states
from nnunetv2_resunet.studies.study_file import Study, StudyFileError, load_study


def build_parser() -> argparse.ArgumentParser:
    parser = command_parser(
        "nnUNetv2_resunet_study",
        "Run a study (datasets x trainers x folds, test-set predictions and one report) with nnU-Net, "
                    "on this machine or on SLURM. The state of every run is read from nnU-Net's own files.")
    commands = parser.add_subparsers(dest="command", required=True, metavar="{status,plan,run,submit}")
    helps = {"status": "what is done, running, failed (with the log) or waiting",
             "plan": "every run in order, with the command that does what is left of it",
             "run": "execute the missing runs on this machine",
             "submit": "submit the missing runs to SLURM (through submitit)"}
    for name, text in helps.items():
        sub = commands.add_parser(name, help=text, description=text)
        sub.add_argument("study", help="the study file (TOML), e.g. studies/thesis_ladder.toml")
        sub.add_argument("-o", dest="reports", default=None,
                         help="folder under which the reports go, as <this>/<study name>/ (default: where the last "
                              "run or submit with -o put them, else $nnUNet_results/studies)")
        if name in ("plan", "run", "submit"):
            sub.add_argument("-device", default="cuda", choices=["cuda", "cpu", "mps"],
                             help="nnU-Net's -device for training and prediction (default cuda)")
            sub.add_argument("-np", dest="num_processes", type=process_count, default=None,
                             help="processes for preprocessing, prediction and the report (default: nnU-Net's, "
                                  "$nnUNet_def_n_proc or 8); 0: prediction in nnU-Net's sequential mode "
                                  "(-npp 0 -nps 0) and the report without worker processes, preprocessing with one")
        if name == "run":
            sub.add_argument("-gpus", nargs="+", default=None, metavar="ID",
                             help="run one run per listed GPU at a time (CUDA_VISIBLE_DEVICES=ID each)")
            sub.add_argument("-j", dest="jobs", type=int, default=1,
                             help="runs at a time without -gpus (default 1; nnU-Net on CPU uses every core)")
        if name == "submit":
            slurm = sub.add_argument_group("SLURM resources (override the study file's [slurm] table; a "
                                           "[slurm.<stage>] table still wins for its stage)")
            slurm.add_argument("-partition")
            slurm.add_argument("-time", help="per job: minutes, HH:MM:SS or D-HH:MM:SS (default 24:00:00)")
            slurm.add_argument("-gpus_per_job", dest="gpus", type=int,
                               help="GPUs per training/prediction job (default 1)")
            slurm.add_argument("-cpus", type=int, help="CPUs per job (default 8)")
            slurm.add_argument("-mem_gb", type=float, help="memory per job in GB")
            slurm.add_argument("-account")
            slurm.add_argument("-qos")
            slurm.add_argument("-constraint")
            add_option(slurm, "-slurm_folder", old=["--slurm_folder"], default=None,
                               help="submitit's folder for job scripts and logs (default: "
                                    "$nnUNet_results/studies/<study name>/slurm)")
    return parser


def process_count(text: str) -> int:
    """``-np``: a whole number, 0 or more."""
    try:
        count = int(text)
    except ValueError:
        count = -1
    if count < 0:
        raise argparse.ArgumentTypeError(f"{text!r} is not a number of processes (0 or more)")
    return count


def options_from(args: argparse.Namespace):
    from nnunetv2.configuration import default_num_processes

    from nnunetv2_resunet.studies.execute import Options

    return Options(device=args.device,
                   num_processes=default_num_processes if args.num_processes is None else args.num_processes)


def plan_text(study: Study, runs: list, states: dict, folders: NnUNetFolders, options) -> str:
    """The plan: every run with the command that does what is left of it (for a dataset not converted yet, its
    preprocessing starts with the converter command its study file names)."""
    from nnunetv2_resunet.studies.execute import command_for, init_weights_command
    from nnunetv2_resunet.studies.progress import format_plan
    from nnunetv2_resunet.studies.runs import converted
    from nnunetv2_resunet.studies.state import ready

    specs = {d.id: d for d in study.datasets}
    commands = {}
    for r in runs:
        if states[r.key].status == Status.DONE or (r.stage == "report" and not ready(r, states)):
            continue
        try:
            command = command_for(r, runs, states, folders, options)
        except (OSError, ValueError, RuntimeError) as error:  # a problem listed below the plan
            commands[r.key] = f"(no command: {error})"
            continue
        if command is None:  # planned and prepared: nothing left
            continue
        steps = [init_weights_command(r), command] if "-pretrained_weights" in command else [command]
        convert = specs[r.dataset_id].convert
        if r.stage == "preprocess" and not converted(folders, r.dataset) and convert is not None:
            steps.insert(0, convert.command(r.dataset_id))
        commands[r.key] = " && ".join(subprocess.list2cmdline(c) for c in steps)
    return format_plan(runs, states, commands, folders)


def main(argv: Sequence[str] | None = None) -> int:
    """Console entry point ``nnUNetv2_resunet_study``; returns the exit status (2 for a mistake in the study or
    the command line)."""
    def body(arguments: list[str]) -> int:
        args = build_parser().parse_args(arguments)
        try:
            return dispatch(args)
        except KeyboardInterrupt:  # the runs it started were stopped and their exits logged; a re-run resumes them
            print("nnUNetv2_resunet_study: interrupted (Ctrl-C); run the same command again to resume",
                  file=sys.stderr)
            return 128 + signal.SIGINT

    return run_command(body, argv, "nnUNetv2_resunet_study", user_errors=(StudyFileError,), error_status=2)


def dispatch(args: argparse.Namespace) -> int:
    from nnunetv2_resunet.studies.checks import StudyProblems, study_problems
    from nnunetv2_resunet.studies.progress import format_status

    study = load_study(args.study)
    folders = NnUNetFolders.from_environment(study, args.reports)
    runs = build_runs(study, folders)
    problems = study_problems(study, folders)  # the same checks for every subcommand
    if args.command in ("status", "plan"):  # the table first, then every problem
        from dataclasses import replace

        from nnunetv2_resunet.studies.slurm import queued_jobs

        states = study_states(runs, folders.raw)
        for key, job in queued_jobs(runs, states, strict=False).items():  # submitted, not started: no lock yet
            states[key] = replace(states[key], detail="; ".join(filter(None, [f"SLURM job {job}", states[key].detail])))
        print(format_status(study, runs, states, folders) if args.command == "status" else
              plan_text(study, runs, states, folders, options_from(args)))
        if problems:
            sys.stdout.flush()
            raise StudyProblems(study.path, problems)
        return 0
    if problems:
        raise StudyProblems(study.path, problems)
    if args.command == "run" and args.device == "cuda":
        torch_device(args.device)  # submit's jobs run on GPU nodes: only `run` needs one here
    options = options_from(args)
    folders.remember_reports(study)
    if args.command == "run":
        from nnunetv2_resunet.studies.local import run_study, slot_environments

        slots = slot_environments(args.gpus, args.jobs)
        if "nnUNet_n_proc_DA" in slots[0]:
            print(f"{len(slots)} runs at a time, each with nnUNet_n_proc_DA={slots[0]['nnUNet_n_proc_DA']} "
                  f"data-augmentation workers (of {len(os.sched_getaffinity(0))} CPUs; set nnUNet_n_proc_DA to "
                  f"choose)", file=sys.stderr)
        states = run_study(study, runs, folders, options, slots)
        print(format_status(study, runs, states, folders))
        return 0 if all(s.status == Status.DONE for s in states.values()) else 1
    missing = [c for c in ("sbatch", "srun") if shutil.which(c) is None]
    if missing:
        raise StudyFileError(f"submit needs SLURM's sbatch and srun on PATH (missing: {', '.join(missing)}): run it "
                             f"on the cluster's login node, or use `run` on this machine")
    from nnunetv2_resunet.studies.slurm import submit_study

    overrides = {k: getattr(args, k) for k in ("partition", "time", "gpus", "cpus", "mem_gb", "account", "qos",
                                               "constraint")}
    slurm_folder = Path(args.slurm_folder) if args.slurm_folder else folders.home(study) / "slurm"
    submitted = submit_study(study, runs, folders, options, overrides, slurm_folder.absolute())
    if not submitted:
        print(f"Study {study.name}: nothing to submit (every run is done, running or needs attention).")
    for stage, job_id, stage_runs in submitted:
        print(f"{stage:<10} job {job_id}: {len(stage_runs)} run(s)")
    if submitted:
        print(f"submitit logs: {slurm_folder.absolute()}\nWatch: nnUNetv2_resunet_study status {args.study}   or   "
              f"sacct -j {','.join(job_id for _, job_id, _ in submitted)}")
    return 0
