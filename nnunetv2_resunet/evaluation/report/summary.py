"""Aggregate records into the report's summary: per run, class and convention, as JSON-ready data."""

from __future__ import annotations

import math
from collections.abc import Sequence

from nnunetv2_resunet.evaluation.case_metrics import Target
from nnunetv2_resunet.evaluation.conventions import (
    CONVENTIONS,
    HD95_UNITS,
    PHYSICAL,
    Stat,
    mean_over_classes,
    summarize,
)
from nnunetv2_resunet.evaluation.published import DATASET_NAMES, published_for
from nnunetv2_resunet.evaluation.report.cases import MissingCase, Run
from nnunetv2_resunet.evaluation.report.evaluate import Record

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
    costs: dict[Run, dict | None] | None = None,
) -> dict:
    """Everything the report shows, as JSON-ready data (per-case lists are kept for the plots and dropped on save).

    ``costs``: each run's training cost (:func:`.training_cost.training_cost`), where known. Each run also says,
    per class, in how many cases its prediction was empty where the reference was not (``empty_predictions``): under
    the TransUNet protocol such a case scores HD95 0, so a model that never learned a class could look best.
    """
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
                "empty_predictions": {
                    t.name: sum(1 for r in run_records
                                if r.target == t and r.metrics.pred_empty and not r.metrics.ref_empty)
                    for t in labels
                },
                "training": (costs or {}).get(run),
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
