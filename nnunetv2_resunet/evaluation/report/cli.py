"""``nnUNetv2_resunet_report``: Dice and HD95 per model and class under both conventions, beside published figures.

Two ways to name the predictions:

* ``--pred DIR --gt DIR``: one prediction folder against a reference folder (e.g. a test set's ``labelsTs``).
* ``-d DATASET -tr TRAINER ... -c CONFIGURATION ...``: nnU-Net's cross-validation predictions
  (``$nnUNet_results/DatasetXXX/TRAINER__PLANS__CONFIGURATION/fold_N/validation``) against
  ``$nnUNet_preprocessed/DatasetXXX/gt_segmentations``, plus test-set predictions given with ``--test-pred``.

Writes ``report.md``, ``per_case.csv``, ``summary.json`` and PNG plots. The numbers come from
:mod:`nnunetv2_resunet.evaluation`, the plots from :mod:`nnunetv2_resunet.plots`; this module collects cases,
aggregates and formats.
"""

from __future__ import annotations

import argparse
import csv
import json
import math
import os
import sys
from collections.abc import Sequence
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass
from functools import partial

from tqdm import tqdm

from nnunetv2_resunet.evaluation import (
    CONVENTIONS,
    HD95_UNITS,
    PHYSICAL,
    ClassMetrics,
    Stat,
    Target,
    convention_scores,
    evaluate_case,
    mean_over_classes,
    summarize,
)
from nnunetv2_resunet.published import DATASET_NAMES, detect_published_dataset, published_for

DEFAULT_OUTPUT = "results"

CONVENTION_DESCRIPTIONS: dict[str, str] = {
    PHYSICAL: (
        "HD95 in mm from the image spacing. Dice as nnU-Net computes it: NaN when a class is absent from both "
        "prediction and reference; HD95 is NaN when either mask is empty. NaNs are left out of the means (nanmean)."
    ),
    "transunet": (
        "The protocol of TransUNet and the papers compared with it: HD95 in voxel units (spacing ignored); per case "
        "and class, both masks non-empty -> (Dice, HD95), prediction non-empty and reference empty -> (1, 0), "
        "otherwise (0, 0); averaged per class over cases, then over classes."
    ),
}

CSV_FIELDS: tuple[str, ...] = (
    "trainer",
    "configuration",
    "plans",
    "split",
    "fold",
    "case",
    "class",
    "label",
    "kind",
    "dice",
    "hd95",
    "hd95_voxel",
    "n_pred",
    "n_ref",
    "pred_empty",
    "ref_empty",
)


# ----------------------------------------------------------------------------------------------------------------
# What to evaluate
# ----------------------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Run:
    """One row of the report's tables: a model's predictions on one set of cases.

    Attributes:
        trainer: trainer class name (or a free name for ``--pred``).
        configuration: nnU-Net configuration, e.g. ``2d``; empty if unknown.
        plans: plans identifier; empty if unknown.
        split: ``cv`` (cross-validation), ``test`` or ``pred`` (a ``--pred`` folder).
    """

    trainer: str
    configuration: str = ""
    plans: str = ""
    split: str = "pred"

    @property
    def label(self) -> str:
        """Short display name: trainer, configuration and split."""
        parts = [self.trainer] + ([self.configuration] if self.configuration else [])
        return " ".join(parts) + ("" if self.split == "pred" else f" ({self.split})")


@dataclass(frozen=True)
class CaseJob:
    """One prediction file to compare with its reference.

    Attributes:
        run: the run it belongs to.
        fold: cross-validation fold as text; empty outside cross-validation.
        case: case identifier (file name without the ending).
        pred_file: the prediction.
        ref_file: the reference.
    """

    run: Run
    fold: str
    case: str
    pred_file: str
    ref_file: str

    @property
    def where(self) -> str:
        fold = f" fold {self.fold}" if self.fold else ""
        return f"{self.run.label}{fold}"


@dataclass(frozen=True)
class MissingCase:
    """A case that could not be evaluated (reported with ``--allow-missing`` instead of raising)."""

    run: Run
    fold: str
    case: str
    reason: str


class MissingCaseError(FileNotFoundError):
    """A prediction or reference is missing; the message names the cases."""


def case_ids(folder: str, file_ending: str) -> list[str]:
    """Case identifiers of the files in ``folder`` that end with ``file_ending``, sorted."""
    if not os.path.isdir(folder):
        return []
    return sorted(f[: -len(file_ending)] for f in os.listdir(folder) if f.endswith(file_ending))


def _raise_or_collect(missing: list[MissingCase], allow_missing: bool) -> list[MissingCase]:
    if missing and not allow_missing:
        lines = "\n".join(f"  {m.run.label} fold {m.fold or '-'} case {m.case}: {m.reason}" for m in missing)
        raise MissingCaseError(
            f"{len(missing)} case(s) cannot be evaluated (use --allow-missing to list them instead):\n{lines}"
        )
    return missing


def jobs_from_folders(
    run: Run,
    pred_dir: str,
    gt_dir: str,
    file_ending: str,
    fold: str = "",
    expected_cases: Sequence[str] | None = None,
) -> tuple[list[CaseJob], list[MissingCase]]:
    """Pair predictions with references by file name.

    Args:
        run: the run the predictions belong to.
        pred_dir: folder of predictions.
        gt_dir: folder of references.
        file_ending: e.g. ``.nii.gz``.
        fold: fold to record, if any.
        expected_cases: cases that must have a prediction; default: every reference in ``gt_dir``.

    Returns:
        ``(jobs, missing)``: a job per case that has both files, and what is missing: a prediction for an expected
        case, or a reference for a predicted one.
    """
    predicted = set(case_ids(pred_dir, file_ending))
    references = set(case_ids(gt_dir, file_ending))
    expected = set(references if expected_cases is None else expected_cases)
    jobs, missing = [], []
    for case in sorted(expected | predicted):
        if case not in predicted:
            missing.append(MissingCase(run, fold, case, f"no prediction {case}{file_ending} in {pred_dir}"))
        elif case not in references:
            missing.append(MissingCase(run, fold, case, f"no reference {case}{file_ending} in {gt_dir}"))
        else:
            jobs.append(
                CaseJob(
                    run,
                    fold,
                    case,
                    os.path.join(pred_dir, case + file_ending),
                    os.path.join(gt_dir, case + file_ending),
                )
            )
    return jobs, missing


def jobs_from_cross_validation(
    run: Run,
    trainer_dir: str,
    gt_dir: str,
    file_ending: str,
    folds: Sequence[int],
    splits: list[dict] | None,
) -> tuple[list[CaseJob], list[MissingCase]]:
    """Jobs for the validation predictions of nnU-Net's cross-validation folds.

    A fold's cases are those in its ``validation`` folder, cross-checked with ``splits_final.json``: a case in the
    fold's ``val`` list without a prediction is missing, a prediction for a case outside it is an error.

    Raises:
        ValueError: if a fold has predictions for cases that are not in its validation split.
    """
    jobs, missing = [], []
    for fold in folds:
        validation_dir = os.path.join(trainer_dir, f"fold_{fold}", "validation")
        predicted = case_ids(validation_dir, file_ending)
        expected = None
        if splits is not None:
            if fold >= len(splits):
                raise ValueError(f"fold {fold} requested but splits_final.json has only {len(splits)} folds")
            expected = list(splits[fold]["val"])
            unexpected = sorted(set(predicted) - set(expected))
            if unexpected:
                raise ValueError(
                    f"{validation_dir} has predictions for cases not in fold {fold}'s validation split "
                    f"(splits_final.json): {unexpected}"
                )
        elif not predicted:
            missing.append(MissingCase(run, str(fold), "*", f"no predictions in {validation_dir}"))
            continue
        fold_jobs, fold_missing = jobs_from_folders(
            run, validation_dir, gt_dir, file_ending, str(fold), expected if expected is not None else predicted
        )
        jobs += fold_jobs
        missing += fold_missing
    return jobs, missing


# ----------------------------------------------------------------------------------------------------------------
# Labels and regions from dataset.json
# ----------------------------------------------------------------------------------------------------------------


def targets_from_dataset_json(dataset_json: dict) -> tuple[list[Target], int | None]:
    """Labels (Dice and HD95) and regions (Dice) to evaluate, as nnU-Net's LabelManager sees the dataset.

    Returns:
        ``(targets, ignore_label)``: every foreground label, then every multi-label region.
    """
    from nnunetv2.utilities.label_handling.label_handling import LabelManager  # imports torch: keep it lazy

    if "labels" not in dataset_json:
        raise ValueError(f"dataset.json has no 'labels' entry; keys: {sorted(dataset_json)}")
    manager = LabelManager(dataset_json["labels"], dataset_json.get("regions_class_order"))
    names: dict[int | tuple[int, ...], str] = {}
    for name, value in dataset_json["labels"].items():
        key = tuple(int(v) for v in value) if isinstance(value, (list, tuple)) else int(value)
        if isinstance(key, tuple) and len(key) == 1:
            key = key[0]
        names.setdefault(key, name)
    ignore = manager.ignore_label
    labels = [int(v) for v in manager.all_labels if v != 0 and v != ignore]
    targets = [Target(names.get(v, f"label {v}"), v) for v in labels]
    if manager.has_regions:
        for region in manager.foreground_regions:
            if isinstance(region, tuple) and len(region) > 1:
                targets.append(Target(names[tuple(int(v) for v in region)], tuple(int(v) for v in region), True))
    return targets, ignore


# ----------------------------------------------------------------------------------------------------------------
# Evaluation in parallel
# ----------------------------------------------------------------------------------------------------------------


def _evaluate_job(job: CaseJob, targets: Sequence[Target], ignore_label: int | None, tolerance: float):
    try:
        return evaluate_case(job.case, job.pred_file, job.ref_file, targets, ignore_label, tolerance)
    except Exception as error:  # name the model and fold too; the case is named by evaluate_case or here
        text = str(error)
        prefix = "" if text.startswith(f"case {job.case}") else f"case {job.case}: "
        raise ValueError(f"{job.where}: {prefix}{text}") from error


def evaluate_jobs(
    jobs: Sequence[CaseJob],
    targets: Sequence[Target],
    ignore_label: int | None,
    tolerance: float,
    num_processes: int,
) -> list[list[ClassMetrics]]:
    """Evaluate every job, in parallel with a progress bar; results are in the order of ``jobs``.

    Raises:
        ValueError: from the first failing case, naming the model, fold and case.
    """
    worker = partial(_evaluate_job, targets=targets, ignore_label=ignore_label, tolerance=tolerance)
    progress = partial(tqdm, total=len(jobs), desc="cases", unit="case")
    if num_processes <= 1 or len(jobs) <= 1:
        return [worker(job) for job in progress(jobs)]
    pool = ProcessPoolExecutor(max_workers=num_processes)
    try:
        return list(progress(pool.map(worker, jobs, chunksize=1)))
    finally:
        pool.shutdown(wait=True, cancel_futures=True)  # after an error, do not wait for the remaining cases


# ----------------------------------------------------------------------------------------------------------------
# Records, aggregation
# ----------------------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Record:
    """One case and one label or region: the raw numbers and where they come from."""

    job: CaseJob
    target: Target
    metrics: ClassMetrics

    def csv_row(self) -> dict[str, object]:
        m = self.metrics
        return {
            "trainer": self.job.run.trainer,
            "configuration": self.job.run.configuration,
            "plans": self.job.run.plans,
            "split": self.job.run.split,
            "fold": self.job.fold,
            "case": self.job.case,
            "class": self.target.name,
            "label": self.target.value_text,
            "kind": "region" if self.target.is_region else "label",
            "dice": repr(m.dice),
            "hd95": repr(m.hd95),
            "hd95_voxel": repr(m.hd95_voxel),
            "n_pred": m.n_pred,
            "n_ref": m.n_ref,
            "pred_empty": int(m.pred_empty),
            "ref_empty": int(m.ref_empty),
        }

    def scores(self, convention: str) -> tuple[float, float]:
        m = self.metrics
        return convention_scores(m.dice, m.hd95, m.hd95_voxel, m.pred_empty, m.ref_empty, convention)


def _stat_dict(stat: Stat) -> dict[str, float | int | None]:
    return {"mean": _json_number(stat.mean), "std": _json_number(stat.std), "n": stat.n}


def _json_number(value: float) -> float | None:
    return None if math.isnan(value) else value


def _nanmean_or_nan(values: Sequence[float]) -> float:
    finite = [v for v in values if not math.isnan(v)]
    return sum(finite) / len(finite) if finite else math.nan


def summarize_run(records: Sequence[Record], labels: Sequence[Target], regions: Sequence[Target]) -> dict:
    """Per class and mean statistics of one run under each convention.

    Returns:
        ``{convention: {"classes": {name: {"label", "dice", "hd95", "hd95_undefined"}}, "mean": {"dice", "hd95"},
        "per_case": {name: {"dice": [...], "hd95": [...]}}}}`` plus ``"regions"`` (Dice, physical) when the
        dataset has regions. Dice is a fraction (0-1); HD95 in the convention's unit.
    """
    cases = sorted({(r.job.fold, r.job.case) for r in records})
    by_key = {(r.job.fold, r.job.case, r.target.name): r for r in records}
    result: dict = {}
    for convention in CONVENTIONS:
        classes, per_case, dice_stats, hd_stats = {}, {}, [], []
        case_dice = {c: [] for c in cases}
        case_hd = {c: [] for c in cases}
        for target in labels:
            scores = [by_key[(fold, case, target.name)].scores(convention) for fold, case in cases]
            dice_values = [s[0] for s in scores]
            hd_values = [s[1] for s in scores]
            for (fold, case), d, h in zip(cases, dice_values, hd_values, strict=True):
                case_dice[(fold, case)].append(d)
                case_hd[(fold, case)].append(h)
            dice_stat, hd_stat = summarize(dice_values), summarize(hd_values)
            dice_stats.append(dice_stat)
            hd_stats.append(hd_stat)
            undefined = sum(
                1
                for fold, case in cases
                if by_key[(fold, case, target.name)].metrics.pred_empty
                != by_key[(fold, case, target.name)].metrics.ref_empty
            )
            classes[target.name] = {
                "label": target.value_text,
                "dice": _stat_dict(dice_stat),
                "hd95": _stat_dict(hd_stat),
                "hd95_undefined": undefined if convention == PHYSICAL else 0,
            }
            per_case[target.name] = {"dice": dice_values, "hd95": hd_values}
        mean_dice = mean_over_classes(dice_stats, [_nanmean_or_nan(case_dice[c]) for c in cases])
        mean_hd = mean_over_classes(hd_stats, [_nanmean_or_nan(case_hd[c]) for c in cases])
        result[convention] = {
            "hd95_unit": HD95_UNITS[convention],
            "classes": classes,
            "mean": {"dice": _stat_dict(mean_dice), "hd95": _stat_dict(mean_hd)},
            "per_case": per_case,
        }
    if regions:
        result[PHYSICAL]["regions"] = {
            t.name: {
                "label": t.value_text,
                "dice": _stat_dict(summarize([by_key[(f, c, t.name)].metrics.dice for f, c in cases])),
            }
            for t in regions
        }
    return result


def build_summary(
    dataset_name: str,
    runs: Sequence[Run],
    records: Sequence[Record],
    targets: Sequence[Target],
    missing: Sequence[MissingCase],
    published_key: str | None,
) -> dict:
    """Everything the report shows, as JSON-ready data (per-case lists are kept for the plots and dropped on save)."""
    labels = [t for t in targets if not t.is_region]
    regions = [t for t in targets if t.is_region]
    run_entries = []
    for run in runs:
        run_records = [r for r in records if r.job.run == run]
        if not run_records:
            continue
        folds = sorted({r.job.fold for r in run_records if r.job.fold}, key=int)
        per_fold = {}
        if len(folds) > 1:
            for fold in folds:
                fold_summary = summarize_run([r for r in run_records if r.job.fold == fold], labels, [])
                per_fold[fold] = {
                    c: {
                        "dice": fold_summary[c]["mean"]["dice"]["mean"],
                        "hd95": fold_summary[c]["mean"]["hd95"]["mean"],
                    }
                    for c in CONVENTIONS
                }
        run_entries.append(
            {
                "label": run.label,
                "trainer": run.trainer,
                "configuration": run.configuration,
                "plans": run.plans,
                "split": run.split,
                "folds": folds,
                "n_cases": len({(r.job.fold, r.job.case) for r in run_records}),
                "conventions": summarize_run(run_records, labels, regions),
                "per_fold_mean": per_fold,
            }
        )
    return {
        "dataset": dataset_name,
        "dice_unit": "fraction (0-1); report.md shows percent",
        "conventions": {
            c: {"hd95_unit": HD95_UNITS[c], "description": CONVENTION_DESCRIPTIONS[c]} for c in CONVENTIONS
        },
        "classes": [
            {"name": t.name, "label": t.value_text, "kind": "region" if t.is_region else "label"} for t in targets
        ],
        "runs": run_entries,
        "missing": [
            {
                "trainer": m.run.trainer,
                "configuration": m.run.configuration,
                "split": m.run.split,
                "fold": m.fold,
                "case": m.case,
                "reason": m.reason,
            }
            for m in missing
        ],
        "published": None
        if published_key is None
        else {
            "dataset": DATASET_NAMES[published_key],
            "note": "Published figures, not produced by this run",
            "entries": [
                {"method": p.method, "dice_percent": p.dice, "hd95": p.hd95, "source": p.source}
                for p in published_for(published_key)
            ],
        },
    }


# ----------------------------------------------------------------------------------------------------------------
# Formatting
# ----------------------------------------------------------------------------------------------------------------


def _format_stat(stat: dict, scale: float, bold: bool) -> str:
    if stat["mean"] is None:
        return "–"
    text = f"{stat['mean'] * scale:.2f}"
    if stat["std"] is not None:
        text += f" ± {stat['std'] * scale:.2f}"
    return f"**{text}**" if bold else text


def _best(values: Sequence[float | None], groups: Sequence[str], lower_is_better: bool, scale: float) -> set[int]:
    """Indices of the best values within each group (rows on the same split), compared at the displayed precision.

    Ties all win; a group of one row has no best (nothing to compare it with).
    """
    best_rows: set[int] = set()
    for group in set(groups):
        rows = [i for i, g in enumerate(groups) if g == group and values[i] is not None]
        if len(rows) < 2:
            continue
        rounded = {i: round(values[i] * scale, 2) for i in rows}
        best = min(rounded.values()) if lower_is_better else max(rounded.values())
        best_rows |= {i for i, v in rounded.items() if v == best}
    return best_rows


def _markdown_table(header: Sequence[str], rows: Sequence[Sequence[str]]) -> list[str]:
    lines = ["| " + " | ".join(header) + " |", "|" + "|".join("---" for _ in header) + "|"]
    lines += ["| " + " | ".join(row) + " |" for row in rows]
    return lines


def convention_table(summary: dict, convention: str) -> list[str]:
    """Markdown table of one convention: a row per run; mean and per-class Dice (%) and HD95, best in bold."""
    runs = summary["runs"]
    unit = HD95_UNITS[convention]
    label_classes = [c["name"] for c in summary["classes"] if c["kind"] == "label"]
    columns: list[tuple[str, float, bool, list[dict]]] = []  # (title, scale, lower_is_better, stats per run)
    for name, getter in [("Mean", lambda r: r["conventions"][convention]["mean"])] + [
        (c, lambda r, c=c: r["conventions"][convention]["classes"][c]) for c in label_classes
    ]:
        columns.append((f"{name} Dice (%)", 100.0, False, [getter(r)["dice"] for r in runs]))
        columns.append((f"{name} HD95 ({unit})", 1.0, True, [getter(r)["hd95"] for r in runs]))
    header = ["Model", "Cases"] + [title for title, *_ in columns]
    cells = [[r["label"], str(r["n_cases"])] for r in runs]
    splits = [r["split"] for r in runs]
    for _, scale, lower, stats in columns:
        best = _best([s["mean"] for s in stats], splits, lower, scale)
        for i, stat in enumerate(stats):
            cells[i].append(_format_stat(stat, scale, i in best))
    return _markdown_table(header, cells)


def regions_table(summary: dict) -> list[str]:
    """Markdown table of the regions' Dice (%), physical convention; empty if the dataset has no regions."""
    regions = [c["name"] for c in summary["classes"] if c["kind"] == "region"]
    if not regions:
        return []
    runs = summary["runs"]
    cells = [[r["label"], str(r["n_cases"])] for r in runs]
    for region in regions:
        stats = [r["conventions"][PHYSICAL]["regions"][region]["dice"] for r in runs]
        best = _best([s["mean"] for s in stats], [r["split"] for r in runs], False, 100.0)
        for i, stat in enumerate(stats):
            cells[i].append(_format_stat(stat, 100.0, i in best))
    return _markdown_table(["Model", "Cases"] + [f"{r} Dice (%)" for r in regions], cells)


def published_block(published: dict | None) -> list[str]:
    """The clearly separated block of published figures, with sources."""
    if not published:
        return []
    rows = [
        [e["method"], f"{e['dice_percent']:.2f}", "–" if e["hd95"] is None else f"{e['hd95']:.2f}", e["source"]]
        for e in published["entries"]
    ]
    return [
        f"## Published figures (not produced by this run): {published['dataset']}",
        "",
        "Copied from the papers named in the last column, as the mean over classes; they were computed by their "
        "authors under the protocol of TransUNet (compare with the `transunet` table above, not with `physical`), "
        "on their own data splits. A dash means the source reports no HD95.",
        "",
        *_markdown_table(["Method", "Mean Dice (%)", "Mean HD95", "Source"], rows),
        "",
    ]


def format_report(summary: dict) -> str:
    """The whole ``report.md``."""
    lines = [
        f"# Segmentation report: {summary['dataset']}",
        "",
        "Produced by `nnUNetv2_resunet_report`. Each cell is mean ± sample standard deviation over cases; "
        "Dice in %, HD95 in the convention's unit. The mean columns average the per-class means (the spread is "
        "over per-case class averages). Best value per column among rows of the same split in **bold** (highest "
        "Dice, lowest HD95). "
        "Rows: (cv) = nnU-Net cross-validation, validation cases of all listed folds pooled; (test) = test set.",
        "",
    ]
    for convention in CONVENTIONS:
        lines += [
            f"## Convention `{convention}` (HD95 in {HD95_UNITS[convention]})",
            "",
            CONVENTION_DESCRIPTIONS[convention],
            "",
        ]
        lines += convention_table(summary, convention) + [""]
        if convention == PHYSICAL:
            undefined = [
                f"{r['label']}: {name} {c['hd95_undefined']}"
                for r in summary["runs"]
                for name, c in r["conventions"][PHYSICAL]["classes"].items()
                if c["hd95_undefined"]
            ]
            if undefined:
                lines += [
                    "HD95 undefined (exactly one of prediction and reference empty; left out of the HD95 mean, "
                    "counted as Dice 0) in this many cases: " + "; ".join(undefined) + ".",
                    "",
                ]
    region_lines = regions_table(summary)
    if region_lines:
        lines += ["## Dice for regions (convention `physical`)", "", *region_lines, ""]
    per_fold = [r for r in summary["runs"] if r["per_fold_mean"]]
    if per_fold:
        lines += ["## Mean per fold", ""]
        header = (
            ["Model", "Fold"]
            + [f"{c} Dice (%)" for c in CONVENTIONS]
            + [f"{c} HD95 ({HD95_UNITS[c]})" for c in CONVENTIONS]
        )
        rows = []
        for r in per_fold:
            for fold, values in r["per_fold_mean"].items():
                dice = [_format_number(values[c]["dice"], 100.0) for c in CONVENTIONS]
                hd = [_format_number(values[c]["hd95"], 1.0) for c in CONVENTIONS]
                rows.append([r["label"], fold, *dice, *hd])
        lines += _markdown_table(header, rows) + [""]
    if summary["missing"]:
        lines += ["## Missing (not evaluated, --allow-missing)", ""]
        lines += [
            f"- {m['trainer']} {m['configuration']} ({m['split']}) fold {m['fold'] or '-'} case {m['case']}: "
            f"{m['reason']}"
            for m in summary["missing"]
        ] + [""]
    lines += published_block(summary["published"])
    return "\n".join(lines).rstrip() + "\n"


def _format_number(value: float | None, scale: float) -> str:
    return "–" if value is None else f"{value * scale:.2f}"


# ----------------------------------------------------------------------------------------------------------------
# Writing
# ----------------------------------------------------------------------------------------------------------------


def write_per_case_csv(records: Sequence[Record], path: str) -> None:
    """One row per run, fold, case and class with the raw, convention-independent numbers."""
    with open(path, "w", newline="", encoding="utf-8") as handle:
        writer = csv.DictWriter(handle, fieldnames=CSV_FIELDS)
        writer.writeheader()
        for record in records:
            writer.writerow(record.csv_row())


def write_summary_json(summary: dict, path: str) -> None:
    """``summary.json`` without the per-case lists (those are in per_case.csv)."""
    slim = json.loads(json.dumps(summary, default=_json_default))
    for run in slim["runs"]:
        for convention in run["conventions"].values():
            convention.pop("per_case", None)
    with open(path, "w", encoding="utf-8") as handle:
        json.dump(slim, handle, indent=2, allow_nan=False)
        handle.write("\n")


def _json_default(value: object) -> object:
    raise TypeError(f"cannot write {type(value).__name__} to JSON: {value!r}")


def write_plots(summary: dict, output_dir: str) -> list[str]:
    """Bar charts of per-class means and box plots over cases, for Dice and HD95 under each convention."""
    from nnunetv2_resunet import plots  # matplotlib only when plotting

    label_classes = [c["name"] for c in summary["classes"] if c["kind"] == "label"]
    written = []
    for convention in CONVENTIONS:
        unit = HD95_UNITS[convention]
        for metric, scale, ylabel, upper in (("dice", 100.0, "Dice (%)", 100.0), ("hd95", 1.0, f"HD95 ({unit})", None)):
            means, stds, per_case = {}, {}, {}
            for run in summary["runs"]:
                data = run["conventions"][convention]
                stats = [data["classes"][c][metric] for c in label_classes] + [data["mean"][metric]]
                means[run["label"]] = [math.nan if s["mean"] is None else s["mean"] * scale for s in stats]
                stds[run["label"]] = [math.nan if s["std"] is None else s["std"] * scale for s in stats]
                per_case[run["label"]] = [[v * scale for v in data["per_case"][c][metric]] for c in label_classes]
            title = f"{summary['dataset']}\n{ylabel.split(' ')[0]} per class, convention '{convention}'"
            bar_path = os.path.join(output_dir, f"{metric}_per_class_{convention}.png")
            plots.plot_per_class_bars(
                label_classes + ["mean"], means, stds, ylabel, title + " (mean ± std)", bar_path, upper
            )
            box_path = os.path.join(output_dir, f"{metric}_box_{convention}.png")
            plots.plot_box_over_cases(label_classes, per_case, ylabel, title + " (over cases)", box_path)
            written += [bar_path, box_path]
    return written


# ----------------------------------------------------------------------------------------------------------------
# Command line
# ----------------------------------------------------------------------------------------------------------------


def _load_json(path: str) -> dict:
    with open(path, encoding="utf-8") as handle:
        return json.load(handle)


def _parse_test_pred(
    values: Sequence[str], configurations: Sequence[str], plans: Sequence[str]
) -> list[tuple[Run, str]]:
    """``NAME=DIR`` pairs; NAME may be nnU-Net's ``TRAINER__PLANS__CONFIGURATION`` identifier."""
    parsed = []
    for value in values:
        name, sep, folder = value.partition("=")
        if not sep or not name or not folder:
            raise ValueError(f"--test-pred expects NAME=DIR, got {value!r}")
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


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="nnUNetv2_resunet_report",
        description="Dice and HD95 per model and class under two conventions (physical, transunet), beside the "
        "published figures. Writes report.md, per_case.csv, summary.json and PNG plots.",
    )
    folders = parser.add_argument_group("one prediction folder")
    folders.add_argument("--pred", help="folder of predicted segmentations")
    folders.add_argument("--gt", help="folder of reference segmentations (e.g. labelsTs)")
    folders.add_argument("--name", help="row name for --pred (default: the folder's name)")
    nnunet = parser.add_argument_group("nnU-Net results ($nnUNet_results, $nnUNet_preprocessed)")
    nnunet.add_argument("-d", dest="dataset", help="dataset name or id")
    nnunet.add_argument("-tr", dest="trainers", nargs="+", default=[], help="trainer class names")
    nnunet.add_argument("-c", dest="configurations", nargs="+", default=[], help="configurations, e.g. 2d")
    nnunet.add_argument("-p", dest="plans", nargs="+", default=["nnUNetPlans"], help="plans identifiers")
    nnunet.add_argument("-f", dest="folds", nargs="+", type=int, default=[0, 1, 2, 3, 4], help="folds (default 0-4)")
    nnunet.add_argument(
        "--test-pred",
        nargs="+",
        default=[],
        metavar="NAME=DIR",
        help="test-set predictions; NAME is a trainer name or TRAINER__PLANS__CONFIGURATION",
    )
    nnunet.add_argument("--test-gt", help="test-set references (default: $nnUNet_raw/DATASET/labelsTs)")
    parser.add_argument("--dataset-json", help="dataset.json with the label names (default: found beside the data)")
    parser.add_argument("-o", dest="output", default=DEFAULT_OUTPUT, help="output folder (default: ./results)")
    parser.add_argument(
        "-np",
        dest="num_processes",
        type=int,
        default=min(8, os.cpu_count() or 1),
        help="worker processes (default: number of CPUs, at most 8)",
    )
    parser.add_argument(
        "--allow-missing",
        action="store_true",
        help="list missing predictions/references in the report instead of failing",
    )
    parser.add_argument(
        "--published",
        choices=["auto", *DATASET_NAMES, "none"],
        default="auto",
        help="which published figures to show (default: detected from the dataset name)",
    )
    parser.add_argument(
        "--geometry-tolerance",
        type=float,
        default=1e-3,
        help="allowed difference in spacing, origin and direction (default 1e-3)",
    )
    parser.add_argument("--no-plots", action="store_true", help="skip the PNG plots")
    return parser


@dataclass
class Plan:
    """What a command line asks for: runs, jobs, labels."""

    dataset_name: str
    dataset_json: dict
    runs: list[Run]
    jobs: list[CaseJob]
    missing: list[MissingCase]


def _plan_from_folders(args: argparse.Namespace) -> Plan:
    if not args.gt:
        raise ValueError("--pred needs --gt")
    for folder in (args.pred, args.gt):
        if not os.path.isdir(folder):
            raise ValueError(f"not a folder: {folder}")
    json_path = args.dataset_json or os.path.join(args.pred, "dataset.json")
    if not os.path.isfile(json_path):
        raise ValueError(f"no dataset.json at {json_path}; pass --dataset-json")
    dataset_json = _load_json(json_path)
    run = Run(args.name or os.path.basename(os.path.normpath(args.pred)))
    jobs, missing = jobs_from_folders(run, args.pred, args.gt, dataset_json["file_ending"])
    return Plan(dataset_json.get("name", run.trainer), dataset_json, [run], jobs, missing)


def _plan_from_nnunet(args: argparse.Namespace) -> Plan:
    from nnunetv2.paths import nnUNet_preprocessed, nnUNet_raw, nnUNet_results
    from nnunetv2.utilities.dataset_name_id_conversion import maybe_convert_to_dataset_name

    if args.trainers and not args.configurations:
        raise ValueError("-tr needs -c (one or more configurations)")
    if not args.trainers and not args.test_pred:
        raise ValueError("-d needs -tr and -c, or --test-pred")
    dataset_name = maybe_convert_to_dataset_name(args.dataset)
    runs, jobs, missing = [], [], []
    dataset_json_path = args.dataset_json
    if args.trainers:
        results_dir = os.path.join(nnUNet_results.require(), dataset_name)
        preprocessed_dir = os.path.join(nnUNet_preprocessed.require(), dataset_name)
        gt_dir = os.path.join(preprocessed_dir, "gt_segmentations")
        if not os.path.isdir(gt_dir):
            raise ValueError(f"no ground truth folder {gt_dir}")
        splits_file = os.path.join(preprocessed_dir, "splits_final.json")
        splits = _load_json(splits_file) if os.path.isfile(splits_file) else None
        trainer_dirs = []
        for trainer in args.trainers:
            for plans in args.plans:
                for configuration in args.configurations:
                    trainer_dir = os.path.join(results_dir, f"{trainer}__{plans}__{configuration}")
                    if not os.path.isdir(trainer_dir):
                        raise ValueError(f"no results folder for {trainer} {plans} {configuration}: {trainer_dir}")
                    trainer_dirs.append((Run(trainer, configuration, plans, "cv"), trainer_dir))
        if dataset_json_path is None:
            candidates = [os.path.join(d, "dataset.json") for _, d in trainer_dirs]
            candidates.append(os.path.join(preprocessed_dir, "dataset.json"))
            dataset_json_path = next((c for c in candidates if os.path.isfile(c)), candidates[-1])
        file_ending = _load_json(dataset_json_path)["file_ending"]
        for run, trainer_dir in trainer_dirs:
            run_jobs, run_missing = jobs_from_cross_validation(
                run, trainer_dir, gt_dir, file_ending, args.folds, splits
            )
            runs.append(run)
            jobs += run_jobs
            missing += run_missing
    test_runs = _parse_test_pred(args.test_pred, args.configurations, args.plans)
    if test_runs:
        test_gt = args.test_gt or (os.path.join(nnUNet_raw.require(), dataset_name, "labelsTs"))
        if not os.path.isdir(test_gt):
            raise ValueError(f"no test reference folder {test_gt}; pass --test-gt")
        if dataset_json_path is None:
            beside = os.path.join(test_runs[0][1], "dataset.json")
            dataset_json_path = (
                beside if os.path.isfile(beside) else os.path.join(nnUNet_raw.require(), dataset_name, "dataset.json")
            )
        file_ending = _load_json(dataset_json_path)["file_ending"]
        for run, folder in test_runs:
            if not os.path.isdir(folder):
                raise ValueError(f"--test-pred folder for {run.trainer} does not exist: {folder}")
            run_jobs, run_missing = jobs_from_folders(run, folder, test_gt, file_ending)
            runs.append(run)
            jobs += run_jobs
            missing += run_missing
    if not os.path.isfile(dataset_json_path):
        raise ValueError(f"no dataset.json at {dataset_json_path}; pass --dataset-json")
    return Plan(dataset_name, _load_json(dataset_json_path), runs, jobs, missing)


def run_report(args: argparse.Namespace) -> dict:
    """Evaluate, aggregate and write everything; returns the summary."""
    if bool(args.pred) == bool(args.dataset):
        raise ValueError("give either --pred/--gt or -d (with -tr/-c or --test-pred), not both or neither")
    plan = _plan_from_folders(args) if args.pred else _plan_from_nnunet(args)
    missing = _raise_or_collect(plan.missing, args.allow_missing)
    if not plan.jobs:
        raise ValueError("nothing to evaluate: no case has both a prediction and a reference")
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
    summary = build_summary(plan.dataset_name, plan.runs, records, targets, missing, published_key)
    os.makedirs(args.output, exist_ok=True)
    write_per_case_csv(records, os.path.join(args.output, "per_case.csv"))
    write_summary_json(summary, os.path.join(args.output, "summary.json"))
    with open(os.path.join(args.output, "report.md"), "w", encoding="utf-8") as handle:
        handle.write(format_report(summary))
    if not args.no_plots:
        write_plots(summary, args.output)
    return summary


def main(argv: Sequence[str] | None = None) -> None:
    """Console entry point ``nnUNetv2_resunet_report``."""
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        run_report(args)
    except (ValueError, RuntimeError, MissingCaseError) as error:
        print(f"nnUNetv2_resunet_report: error: {error}", file=sys.stderr)
        sys.exit(1)
    print(f"wrote {os.path.join(args.output, 'report.md')}, per_case.csv, summary.json and plots")
