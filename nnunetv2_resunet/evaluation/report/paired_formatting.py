"""The paired comparison and the repeats' spread as Markdown: tables with the numbers, and sentences saying which
differences are distinguishable at the report's number of cases and which exceed the run-to-run spread."""

from __future__ import annotations

import math
from collections.abc import Sequence

from nnunetv2_resunet.evaluation.paired import MIN_CASES, N_RESAMPLES
from nnunetv2_resunet.evaluation.report.comparisons import MEAN, SIGNIFICANCE
from nnunetv2_resunet.evaluation.report.formatting import markdown_table

SCALES = {"dice": (100.0, "pp"), "hd95": (1.0, "mm")}
SPLIT_NAMES = {"cv": "cross-validation (folds pooled)", "test": "test set", "pred": "predictions"}


def _number(value: float | None, scale: float, signed: bool = True) -> str:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "–"
    return f"{value * scale:+.2f}" if signed else f"{value * scale:.2f}"


def _p(value: float | None) -> str:
    if value is None or math.isnan(value):
        return "–"
    return "< 0.001" if value < 0.001 else f"{value:.3f}"


def _cell(row: dict) -> str:
    """``+1.23 [-0.40, 2.90]``, bold when distinguishable."""
    scale, _ = SCALES[row["metric"]]
    text = _number(row["mean_diff"], scale)
    if not math.isnan(row["ci_low"]):
        text += f" [{_number(row['ci_low'], scale)}, {_number(row['ci_high'], scale)}]"
    return f"**{text}**" if row.get("distinguishable") else text


def _difference(row: dict) -> str:
    """``mean Dice +1.23 pp``."""
    scale, unit = SCALES[row["metric"]]
    name = "Dice" if row["metric"] == "dice" else "HD95"
    subject = f"mean {name}" if row["class"] == MEAN else f"{row['class']} {name}"
    return f"{subject} {_number(row['mean_diff'], scale)} {unit}"


def _spread(row: dict) -> str:
    """Whether a pooled difference exceeds the run-to-run spread ("" when there is no spread to compare with)."""
    if "exceeds_spread" not in row:
        return ""
    scale, unit = SCALES[row["metric"]]
    name = "Dice" if row["metric"] == "dice" else "HD95"
    relation = "exceeds" if row["exceeds_spread"] else "does not exceed"
    spread = _number(row["spread"], scale, signed=False)
    return f"; the {name} difference {relation} the run-to-run spread ({spread} {unit})"


def _verdict(row: dict) -> str:
    """What one tested comparison says, in words."""
    said = "distinguishable" if row["distinguishable"] else f"not distinguishable at n = {row['n']}"
    return f"{_difference(row)} (Holm p {_p(row['p_holm'])}): {said}{_spread(row)}"


def _sentence(rows: Sequence[dict]) -> str:
    """The mean Dice and HD95 of one comparison, and the classes whose difference is distinguishable."""
    means = [r for r in rows if r["class"] == MEAN]
    notes = {r["note"] for r in means}
    if len(notes) == 1 and "" not in notes:  # nothing tested, for one reason: say it once
        text = (", ".join(_difference(r) for r in means) + f": not tested, {notes.pop()}"
                + "".join(_spread(r) for r in means))
    else:
        text = "; ".join(_verdict(r) if not r["note"] else f"{_difference(r)}: not tested, {r['note']}{_spread(r)}"
                         for r in means)
    classes = [_verdict(r) for r in rows if r["class"] != MEAN and r.get("distinguishable")]
    return text + "." + (" Distinguishable per class: " + "; ".join(classes) + "." if classes else "")


def _comparison_label(row: dict) -> str:
    if row["level"] == "repeat":
        return f"{row['model']} vs {row['reference']}"
    if row["level"] == "pooled":
        return f"{row['model_label']}, repeats pooled"
    return row["model_label"]


def paired_block(paired: dict) -> list[str]:
    """The report's section on the paired comparison (empty when there is nothing to compare)."""
    if not paired["rows"] and not paired["not_compared"]:
        return []
    lines = [
        "## Paired comparison with the reference (convention `physical`)",
        "",
        f"Reference: **{paired['reference_label']}** ({paired['chosen']}). Every other row with the same cases is "
        f"compared with it case by case (cross-validation rows: the folds' validation cases pooled). A cell is the "
        f"mean over cases of *reference minus model* with its 95 % bootstrap interval ({N_RESAMPLES:,} resamples "
        f"of the cases, fixed seed): Dice in percentage points (positive: the reference is better), HD95 in mm "
        f"(negative: the reference is better); cases where a value is undefined (a class absent from both, HD95 "
        f"with an empty mask) are left out of that pair. p: two-sided Wilcoxon signed-rank test, Holm-adjusted "
        f"over all comparisons of the same split, class and metric. W/T/L: cases where the reference is better, "
        f"equal, worse. **Bold**: distinguishable at this number of cases (Holm-adjusted p < {SIGNIFICANCE}); a "
        f"difference that is not bold may be real but is not shown by these cases. Fewer than {MIN_CASES} cases, "
        f"or differences that are all zero, are not tested. All numbers, per class too: `paired.csv`; plot: "
        f"`paired_forest_<split>.png`.",
        "",
    ]
    for split in dict.fromkeys(r["split"] for r in paired["rows"]):
        rows = [r for r in paired["rows"] if r["split"] == split]
        lines += [f"### {SPLIT_NAMES.get(split, split)}", ""]
        header = ["Model", "Cases", "Mean Dice diff (pp)", "p (Holm)", "W/T/L", "Mean HD95 diff (mm)", "p (Holm)",
                  "W/T/L"]
        table = []
        for comparison in dict.fromkeys((r["model"], r["reference"]) for r in rows):
            mine = [r for r in rows if (r["model"], r["reference"]) == comparison]
            dice = next(r for r in mine if r["class"] == MEAN and r["metric"] == "dice")
            hd95 = next(r for r in mine if r["class"] == MEAN and r["metric"] == "hd95")
            table.append([_comparison_label(dice), str(dice["n"]), _cell(dice), _p(dice["p_holm"]),
                          f"{dice['wins']}/{dice['ties']}/{dice['losses']}", _cell(hd95), _p(hd95["p_holm"]),
                          f"{hd95['wins']}/{hd95['ties']}/{hd95['losses']}"])
        lines += markdown_table(header, table) + ["", "In words:", ""]
        for comparison in dict.fromkeys((r["model"], r["reference"]) for r in rows):
            mine = [r for r in rows if (r["model"], r["reference"]) == comparison]
            lines.append(f"- {_comparison_label(mine[0])}: {_sentence(mine)}")
        lines.append("")
    for skipped in paired["not_compared"]:
        lines.append(f"- Not compared: {skipped['model']} ({skipped['split']}): {skipped['reason']}.")
    if paired["not_compared"]:
        lines.append("")
    return lines


def repeats_block(repeats: Sequence[dict]) -> list[str]:
    """Each repeated model's spread across trainings beside its spread across cases (physical convention)."""
    if not repeats:
        return []
    lines = [
        "## Repeats: spread across trainings and across cases (convention `physical`)",
        "",
        "The same model trained again with another seed. Per repeat its mean over cases; then their mean ± standard "
        "deviation across the repeats (range in brackets), and the standard deviation across cases (averaged over "
        "the repeats). A difference between models smaller than the spread across repeats says as much about the "
        "run as about the network.",
        "",
    ]
    header = ["Model", "Split", "Metric", "Per repeat", "Across repeats: mean ± SD [range]", "Across cases: SD"]
    rows = []
    for entry in repeats:
        for metric in ("dice", "hd95"):
            scale, unit = SCALES[metric]
            name = "Dice (%)" if metric == "dice" else f"HD95 ({unit})"
            value = entry["values"][f"{MEAN}/{metric}"]
            per_repeat = ", ".join(_number(v, scale, signed=False) for v in value["per_repeat"])
            rows.append([entry["model"], entry["split"], f"mean {name}", per_repeat,
                         f"{_number(value['mean'], scale, False)} ± {_number(value['sd_repeats'], scale, False)} "
                         f"[{_number(value['range_repeats'], scale, False)}]",
                         _number(value["sd_cases"], scale, False)])
    return lines + markdown_table(header, rows) + [""]
