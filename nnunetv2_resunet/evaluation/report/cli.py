"""``nnUNetv2_resunet_report``: Dice and HD95 per model and class under both conventions, beside published figures.

Two ways to name the predictions:

* ``-pred DIR -gt DIR``: one prediction folder against a reference folder (e.g. a test set's ``labelsTs``).
* ``-d DATASET -tr TRAINER ... -c CONFIGURATION ...``: nnU-Net's cross-validation predictions
  (``$nnUNet_results/DatasetXXX/TRAINER__PLANS__CONFIGURATION/fold_N/validation``) against
  ``$nnUNet_preprocessed/DatasetXXX/gt_segmentations``, plus test-set predictions given with ``-test_pred``.

Writes ``report.md``, ``per_case.csv``, ``paired.csv`` (a reference row against every other row with the same
cases, :mod:`.comparisons`), ``summary.json`` and PNG plots. This module turns the command line into
runs and cases (:mod:`.cases`), evaluates them (:mod:`.evaluate`), summarises (:mod:`.summary`), formats
(:mod:`.formatting`) and writes (:mod:`.writing`).
"""

from __future__ import annotations

import argparse
import json
import os
from collections.abc import Sequence
from dataclasses import dataclass, field

from nnunetv2_resunet.command_line import (
    UserError,
    add_option,
    command_parser,
    dataset_name,
    existing_file,
    existing_folder,
    nnunet_folder,
    output_folder,
    run_command,
)
from nnunetv2_resunet.evaluation.published import DATASET_NAMES, detect_published_dataset
from nnunetv2_resunet.evaluation.report.cases import (
    CaseJob,
    MissingCase,
    MissingCaseError,
    Run,
    jobs_from_cross_validation,
    jobs_from_folders,
    raise_or_collect,
    targets_from_dataset_json,
)
from nnunetv2_resunet.evaluation.report.comparisons import compare
from nnunetv2_resunet.evaluation.report.evaluate import Record, evaluate_jobs
from nnunetv2_resunet.evaluation.report.formatting import format_report
from nnunetv2_resunet.evaluation.report.summary import build_summary
from nnunetv2_resunet.evaluation.report.training_cost import training_cost
from nnunetv2_resunet.evaluation.report.writing import (
    write_forest_plots,
    write_paired_csv,
    write_per_case_csv,
    write_plots,
    write_summary_json,
)

# Without -o the report goes beside what it evaluates, where nnU-Net users look: into the dataset's results folder
# (-d) or into the prediction folder (--pred), never into the current folder, where reports of different datasets
# would overwrite each other.
REPORT_FOLDER = "resunet_report"


def _load_json(path: str) -> dict:
    with open(path, encoding="utf-8") as handle:
        return json.load(handle)


def _load_dataset_json(path: str) -> dict:
    """The dataset.json at ``path``; a UserError when it is missing, empty, not JSON or lacks ``file_ending``."""
    existing_file(path, "dataset.json", "pass -dataset_json")
    try:
        dataset_json = _load_json(path)
    except (json.JSONDecodeError, UnicodeDecodeError) as error:
        raise UserError(f"{path} is not valid JSON ({error}); pass another with -dataset_json") from error
    if not isinstance(dataset_json, dict) or "file_ending" not in dataset_json:
        raise UserError(f"{path} has no 'file_ending': not an nnU-Net dataset.json; pass one with -dataset_json")
    return dataset_json


def _identifier(name: str) -> tuple[str, str, str] | None:
    """``(trainer, plans, configuration)`` of nnU-Net's identifier ``TRAINER__PLANS__CONFIGURATION``, else None."""
    parts = name.split("__")
    return (parts[0], parts[1], parts[2]) if len(parts) == 3 and all(parts) else None


def _models(trainers: Sequence[str], plans: Sequence[str], configurations: Sequence[str]) -> list[tuple[str, str, str]]:
    """``(trainer, plans, configuration)`` for each ``-tr``: an identifier names one; a bare trainer name is taken
    with every ``-p`` and ``-c`` (so nnU-Net's 3d_fullres default can sit beside 2d-only trainers)."""
    models = []
    for trainer in trainers:
        identifier = _identifier(trainer)
        models += [identifier] if identifier else [(trainer, p, c) for p in plans for c in configurations]
    return models


def _parse_test_pred(
    values: Sequence[str], configurations: Sequence[str], plans: Sequence[str]
) -> list[tuple[Run, str]]:
    """``NAME=DIR`` pairs; NAME may be nnU-Net's ``TRAINER__PLANS__CONFIGURATION`` identifier."""
    parsed = []
    for value in values:
        name, sep, folder = value.partition("=")
        if not sep or not name or not folder:
            raise UserError(f"-test_pred expects NAME=DIR, got {value!r}")
        parts = name.split("__")
        if len(parts) == 3:
            run = Run(parts[0], parts[2], parts[1], "test")
        else:
            run = Run(
                name,
                configurations[0] if len(configurations) == 1 else "",
                plans[0] if len(plans) == 1 else "",
                "test",
            )
        parsed.append((run, folder))
    return parsed


def fold_argument(value: str) -> int | str:
    """A fold as nnUNetv2_train takes it: a number, or ``all`` (trained and validated on every case)."""
    if value == "all":
        return value
    try:
        return int(value)
    except ValueError:
        raise argparse.ArgumentTypeError(f"a fold is a number or 'all', got {value!r}") from None


def build_parser() -> argparse.ArgumentParser:
    parser = command_parser(
        "nnUNetv2_resunet_report",
        "Dice and HD95 per model and class under two conventions (physical, transunet), beside the "
        "published figures. Writes report.md, per_case.csv, summary.json and PNG plots.",
    )
    folders = parser.add_argument_group("one prediction folder")
    add_option(folders, "-pred", old=["--pred"], help="folder of predicted segmentations")
    add_option(folders, "-gt", old=["--gt"], help="folder of reference segmentations (e.g. labelsTs)")
    add_option(folders, "-name", old=["--name"], help="row name for -pred (default: the folder's name)")
    nnunet = parser.add_argument_group("nnU-Net results ($nnUNet_results, $nnUNet_preprocessed)")
    nnunet.add_argument("-d", dest="dataset", help="dataset name or id")
    nnunet.add_argument("-tr", dest="trainers", nargs="+", default=[],
                        help="trainer class names (taken with every -p and -c), or nnU-Net's identifiers "
                             "TRAINER__PLANS__CONFIGURATION (one model each)")
    nnunet.add_argument("-c", dest="configurations", nargs="+", default=[], help="configurations, e.g. 2d")
    nnunet.add_argument("-p", dest="plans", nargs="+", default=["nnUNetPlans"], help="plans identifiers")
    nnunet.add_argument("-f", dest="folds", nargs="+", type=fold_argument, default=[0, 1, 2, 3, 4],
                        help="folds (default 0-4), or all (nnU-Net's fold_all)")
    add_option(
        nnunet,
        "-test_pred",
        old=["--test-pred"],
        nargs="+",
        default=[],
        metavar="NAME=DIR",
        help="test-set predictions; NAME is a trainer name or TRAINER__PLANS__CONFIGURATION",
    )
    add_option(nnunet, "-test_gt", old=["--test-gt"],
               help="test-set references (default: $nnUNet_raw/DATASET/labelsTs)")
    add_option(parser, "-dataset_json", old=["--dataset-json"],
               help="dataset.json with the label names (default: found beside the data)")
    parser.add_argument("-o", dest="output", default=None,
                        help=f"output folder (default: $nnUNet_results/DATASET/{REPORT_FOLDER} with -d, "
                             f"PRED/{REPORT_FOLDER} with -pred)")
    parser.add_argument(
        "-np",
        dest="num_processes",
        type=int,
        default=min(8, os.cpu_count() or 1),
        help="worker processes (default: number of CPUs, at most 8)",
    )
    add_option(
        parser,
        "--allow_missing",
        old=["--allow-missing"],
        action="store_true",
        help="list missing predictions/references in the report instead of failing",
    )
    add_option(
        parser,
        "-published",
        old=["--published"],
        choices=["auto", *DATASET_NAMES, "none"],
        default="auto",
        help="which published figures to show (default: detected from the dataset name)",
    )
    add_option(
        parser,
        "-geometry_tolerance",
        old=["--geometry-tolerance"],
        type=float,
        default=1e-3,
        help="allowed difference in spacing, origin and direction (default 1e-3)",
    )
    add_option(parser, "--no_plots", old=["--no-plots"], action="store_true", help="skip the PNG plots")
    add_option(parser, "-reference", old=["--reference"],
               help="the row every other row is compared with, case by case (paired.csv): a trainer name or "
                    "TRAINER__PLANS__CONFIGURATION (default: the first ResUnet row)")
    return parser


@dataclass
class Plan:
    """What a command line asks for: runs, jobs, labels."""

    dataset_name: str
    dataset_json: dict
    runs: list[Run]
    jobs: list[CaseJob]
    missing: list[MissingCase]
    costs: dict[Run, dict | None] = field(default_factory=dict)


def _plan_from_folders(args: argparse.Namespace) -> Plan:
    if not args.gt:
        raise UserError("-pred needs -gt (the folder of reference segmentations)")
    existing_folder(args.pred, "-pred")
    existing_folder(args.gt, "-gt")
    json_path = args.dataset_json or os.path.join(args.pred, "dataset.json")
    dataset_json = _load_dataset_json(json_path)
    run = Run(args.name or os.path.basename(os.path.normpath(args.pred)))
    jobs, missing = jobs_from_folders(run, args.pred, args.gt, dataset_json["file_ending"])
    return Plan(dataset_json.get("name", run.trainer), dataset_json, [run], jobs, missing)


def _plan_from_nnunet(args: argparse.Namespace) -> Plan:
    bare_trainers = [t for t in args.trainers if _identifier(t) is None]
    if bare_trainers and not args.configurations:
        raise UserError("-tr needs -c (one or more configurations), or nnU-Net's identifiers TRAINER__PLANS__CONFIG")
    if not args.trainers and not args.test_pred:
        raise UserError("-d needs -tr and -c, or -test_pred")
    name = dataset_name(args.dataset)
    runs, jobs, missing = [], [], []
    dataset_json_path = args.dataset_json
    if args.trainers:
        results_dir = os.path.join(nnunet_folder("nnUNet_results"), name)
        preprocessed_dir = os.path.join(nnunet_folder("nnUNet_preprocessed"), name)
        gt_dir = os.path.join(preprocessed_dir, "gt_segmentations")
        if not os.path.isdir(gt_dir):
            raise UserError(f"-d {args.dataset}: no ground truth folder {gt_dir}: plan and preprocess {name} "
                            f"first (nnUNetv2_plan_and_preprocess)")
        splits_file = os.path.join(preprocessed_dir, "splits_final.json")
        splits = _load_json(splits_file) if os.path.isfile(splits_file) else None
        trainer_dirs = []
        for trainer, plans, configuration in _models(args.trainers, args.plans, args.configurations):
            trainer_dir = os.path.join(results_dir, f"{trainer}__{plans}__{configuration}")
            if not os.path.isdir(trainer_dir):
                raise UserError(f"no results folder for {trainer} {plans} {configuration}: {trainer_dir} (train it "
                                f"first, or check -tr, -p and -c)")
            trainer_dirs.append((Run(trainer, configuration, plans, "cv"), trainer_dir))
        if dataset_json_path is None:
            candidates = [os.path.join(d, "dataset.json") for _, d in trainer_dirs]
            candidates.append(os.path.join(preprocessed_dir, "dataset.json"))
            dataset_json_path = next((c for c in candidates if os.path.isfile(c)), candidates[-1])
        file_ending = _load_dataset_json(dataset_json_path)["file_ending"]
        for run, trainer_dir in trainer_dirs:
            run_jobs, run_missing = jobs_from_cross_validation(
                run, trainer_dir, gt_dir, file_ending, args.folds, splits
            )
            runs.append(run)
            jobs += run_jobs
            missing += run_missing
    test_runs = _parse_test_pred(args.test_pred, args.configurations, args.plans)
    if test_runs:
        test_gt = args.test_gt or (os.path.join(nnunet_folder("nnUNet_raw"), name, "labelsTs"))
        existing_folder(test_gt, "-test_gt" if args.test_gt else "the test references (pass -test_gt)")
        if dataset_json_path is None:
            beside = os.path.join(test_runs[0][1], "dataset.json")
            dataset_json_path = (
                beside if os.path.isfile(beside) else os.path.join(nnunet_folder("nnUNet_raw"), name, "dataset.json")
            )
        file_ending = _load_dataset_json(dataset_json_path)["file_ending"]
        for run, folder in test_runs:
            existing_folder(folder, f"-test_pred {run.trainer}=")
            run_jobs, run_missing = jobs_from_folders(run, folder, test_gt, file_ending)
            runs.append(run)
            jobs += run_jobs
            missing += run_missing
    costs = {}
    results = os.environ.get("nnUNet_results")
    if results:
        for run in runs:
            model_dir = os.path.join(results, name, f"{run.trainer}__{run.plans}__{run.configuration}")
            if run.plans and run.configuration and os.path.isdir(model_dir):
                costs[run] = training_cost(model_dir, run.configuration, args.folds)
    return Plan(name, _load_dataset_json(dataset_json_path), runs, jobs, missing, costs)


def run_report(args: argparse.Namespace) -> dict:
    """Evaluate, aggregate and write everything into ``args.output`` (set to the default folder when None);
    returns the summary."""
    if bool(args.pred) == bool(args.dataset):
        raise UserError("give either -pred/-gt or -d (with -tr/-c or -test_pred), not both or neither")
    if args.output is not None:
        output_folder(args.output, "-o")
    plan = _plan_from_folders(args) if args.pred else _plan_from_nnunet(args)
    missing = raise_or_collect(plan.missing, args.allow_missing)
    if not plan.jobs:
        raise UserError("nothing to evaluate: no case has both a prediction and a reference")
    targets, ignore_label = targets_from_dataset_json(plan.dataset_json)
    results = evaluate_jobs(plan.jobs, targets, ignore_label, args.geometry_tolerance, args.num_processes)
    records = [
        Record(job, target, metrics)
        for job, per_target in zip(plan.jobs, results, strict=True)
        for target, metrics in zip(targets, per_target, strict=True)
    ]
    if args.published == "auto":
        published_key = detect_published_dataset(plan.dataset_name)
    else:
        published_key = None if args.published == "none" else args.published
    summary = build_summary(plan.dataset_name, plan.runs, records, targets, missing, published_key, plan.costs)
    labels = [t.name for t in targets if not t.is_region]
    summary["paired"] = compare(records, plan.runs, labels, args.reference)
    if args.output is None:
        from nnunetv2.paths import nnUNet_results

        beside = args.pred if args.pred else os.path.join(nnUNet_results.require(), plan.dataset_name)
        args.output = os.path.join(beside, REPORT_FOLDER)
    os.makedirs(args.output, exist_ok=True)
    write_per_case_csv(records, os.path.join(args.output, "per_case.csv"))
    write_paired_csv(summary["paired"], os.path.join(args.output, "paired.csv"))
    write_summary_json(summary, os.path.join(args.output, "summary.json"))
    with open(os.path.join(args.output, "report.md"), "w", encoding="utf-8") as handle:
        handle.write(format_report(summary))
    if not args.no_plots:
        write_plots(summary, args.output)
        write_forest_plots(summary["paired"], args.output)
    return summary


def main(argv: Sequence[str] | None = None) -> int:
    """Console entry point ``nnUNetv2_resunet_report``; returns the exit status."""
    def body(arguments: list[str]) -> None:
        args = build_parser().parse_args(arguments)
        run_report(args)
        print(f"wrote {os.path.join(args.output, 'report.md')}, per_case.csv, paired.csv, summary.json and plots")

    return run_command(body, argv, "nnUNetv2_resunet_report", user_errors=(MissingCaseError,))
