"""Write the report's files: per_case.csv, paired.csv, summary.json and the PNG plots."""

from __future__ import annotations

import csv
import json
import math
import os
from collections.abc import Sequence

from nnunetv2_resunet.evaluation.conventions import CONVENTIONS, HD95_UNITS
from nnunetv2_resunet.evaluation.report.comparisons import CSV_COLUMNS
from nnunetv2_resunet.evaluation.report.evaluate import Record

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


def csv_row(record: Record) -> dict[str, object]:
    """One row of per_case.csv: raw, convention-independent numbers (floats as repr, so they read back exactly)."""
    m = record.metrics
    return {
        "trainer": record.job.run.trainer,
        "configuration": record.job.run.configuration,
        "plans": record.job.run.plans,
        "split": record.job.run.split,
        "fold": record.job.fold,
        "case": record.job.case,
        "class": record.target.name,
        "label": record.target.value_text,
        "kind": "region" if record.target.is_region else "label",
        "dice": repr(m.dice),
        "hd95": repr(m.hd95),
        "hd95_voxel": repr(m.hd95_voxel),
        "n_pred": m.n_pred,
        "n_ref": m.n_ref,
        "pred_empty": int(m.pred_empty),
        "ref_empty": int(m.ref_empty),
    }


def write_per_case_csv(records: Sequence[Record], path: str) -> None:
    """One row per run, fold, case and class with the raw, convention-independent numbers."""
    with open(path, "w", newline="", encoding="utf-8") as handle:
        writer = csv.DictWriter(handle, fieldnames=CSV_FIELDS)
        writer.writeheader()
        for record in records:
            writer.writerow(csv_row(record))


def json_ready(value):
    """``value`` with NaN floats as None (JSON has no NaN), recursively."""
    if isinstance(value, float):
        return None if math.isnan(value) else value
    if isinstance(value, dict):
        return {k: json_ready(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [json_ready(v) for v in value]
    return value


def write_paired_csv(paired: dict, path: str) -> None:
    """``paired.csv``: one row per comparison, class and metric (reference minus model; Dice as a fraction, HD95 in
    mm; an untested pair has empty p-values)."""
    with open(path, "w", newline="", encoding="utf-8") as handle:
        writer = csv.DictWriter(handle, fieldnames=CSV_COLUMNS, extrasaction="ignore")
        writer.writeheader()
        for row in paired["rows"]:
            writer.writerow({k: "" if isinstance(v, float) and math.isnan(v) else v for k, v in row.items()})


def write_forest_plots(paired: dict, output_dir: str) -> list[str]:
    """One forest plot per split: each comparison's mean difference and 95 % interval, per class and the mean."""
    from nnunetv2_resunet.evaluation import plots  # matplotlib only when plotting

    written = []
    for split in dict.fromkeys(r["split"] for r in paired["rows"]):
        panels = {}
        for metric, name, unit, scale in (("dice", "Dice", "pp", 100.0), ("hd95", "HD95", "mm", 1.0)):
            title = f"{name}, reference minus model ({unit})"
            entries = []
            for row in paired["rows"]:
                if row["split"] == split and row["metric"] == metric:
                    name = row["model"] if row["level"] != "pooled" else row["model"] + " (pooled)"
                    entries.append((f"{name}: {row['class']}", row["mean_diff"] * scale, row["ci_low"] * scale,
                                    row["ci_high"] * scale, bool(row.get("distinguishable"))))
            panels[title] = entries
        path = os.path.join(output_dir, f"paired_forest_{split}.png")
        plots.plot_forest(panels, f"Paired with {paired['reference_label']} ({split}); filled: distinguishable "
                                  f"(Holm p < 0.05)", path)
        written.append(path)
    return written


def write_summary_json(summary: dict, path: str) -> None:
    """``summary.json`` without the per-case lists (those are in per_case.csv)."""
    slim = json_ready(json.loads(json.dumps(summary, default=_json_default)))
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
    from nnunetv2_resunet.evaluation import plots  # matplotlib only when plotting

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
