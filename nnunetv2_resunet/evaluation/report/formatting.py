"""The summary as Markdown: one table per convention (best values in bold), empty predictions, the paired comparison
and repeats (:mod:`.paired_formatting`), training cost, regions, folds, published figures."""

from __future__ import annotations

from collections.abc import Sequence

from nnunetv2_resunet.evaluation.conventions import CONVENTIONS, HD95_UNITS, PHYSICAL
from nnunetv2_resunet.evaluation.report.summary import CONVENTION_DESCRIPTIONS

EMPTY_MARK = "†"


def _format_stat(stat: dict, scale: float, bold: bool, mark: bool = False) -> str:
    if stat["mean"] is None:
        return "–"
    text = f"{stat['mean'] * scale:.2f}"
    if stat["std"] is not None:
        text += f" ± {stat['std'] * scale:.2f}"
    return (f"**{text}**" if bold else text) + (EMPTY_MARK if bold and mark else "")


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


def markdown_table(header: Sequence[str], rows: Sequence[Sequence[str]]) -> list[str]:
    lines = ["| " + " | ".join(header) + " |", "|" + "|".join("---" for _ in header) + "|"]
    lines += ["| " + " | ".join(row) + " |" for row in rows]
    return lines


def convention_table(summary: dict, convention: str) -> list[str]:
    """Markdown table of one convention: a row per run; mean and per-class Dice (%) and HD95, best in bold."""
    runs = summary["runs"]
    unit = HD95_UNITS[convention]
    label_classes = [c["name"] for c in summary["classes"] if c["kind"] == "label"]
    # (title, scale, lower_is_better, stats per run, classes whose empty predictions a best value may rest on)
    columns: list[tuple[str, float, bool, list[dict], list[str]]] = []
    for name, getter, classes in [("Mean", lambda r: r["conventions"][convention]["mean"], label_classes)] + [
        (c, lambda r, c=c: r["conventions"][convention]["classes"][c], [c]) for c in label_classes
    ]:
        columns.append((f"{name} Dice (%)", 100.0, False, [getter(r)["dice"] for r in runs], []))
        columns.append((f"{name} HD95 ({unit})", 1.0, True, [getter(r)["hd95"] for r in runs], classes))
    header = ["Model", "Cases"] + [title for title, *_ in columns]
    cells = [[r["label"], str(r["n_cases"])] for r in runs]
    splits = [r["split"] for r in runs]
    for _, scale, lower, stats, classes in columns:
        best = _best([s["mean"] for s in stats], splits, lower, scale)
        for i, stat in enumerate(stats):
            empty = any(runs[i].get("empty_predictions", {}).get(c, 0) for c in classes)
            cells[i].append(_format_stat(stat, scale, i in best, mark=empty))
    return markdown_table(header, cells)


def empty_predictions_block(summary: dict) -> list[str]:
    """Per row and class, the cases whose prediction was empty where the reference was not (only when any)."""
    label_classes = [c["name"] for c in summary["classes"] if c["kind"] == "label"]
    runs = [r for r in summary["runs"] if any(r.get("empty_predictions", {}).values())]
    if not runs:
        return []
    rows = [[r["label"], str(r["n_cases"])] + [str(r["empty_predictions"][c]) for c in label_classes] for r in runs]
    return [
        "## Empty predictions where the reference has the class",
        "",
        f"Cases in which a row predicted no voxel of a class that the reference contains. Such a case scores Dice 0 "
        f"under both conventions, but HD95 0 under `transunet` and no HD95 at all under `physical`: a model that "
        f"never learned a class can then show the best HD95. A best (bold) HD95 of a row with such cases is marked "
        f"{EMPTY_MARK}; read it together with its Dice.",
        "",
        *markdown_table(["Model", "Cases"] + label_classes, rows),
        "",
    ]


def training_cost_block(summary: dict) -> list[str]:
    """What each row's model cost to train (from nnU-Net's files), where it is known."""
    from nnunetv2_resunet.evaluation.report.training_cost import format_seconds

    runs = [r for r in summary["runs"] if r.get("training")]
    if not runs:
        return []
    rows = []
    for r in runs:
        cost = r["training"]
        samples = "–" if cost["samples_per_fold"] is None else f"{cost['samples_per_fold']:,}"
        rows.append([r["label"], " ".join(cost["folds"]),
                     f"{cost['epochs']} x {cost['iterations_per_epoch']} x {cost['batch_size'] or '?'}", samples,
                     f"{format_seconds(cost['wall_seconds'])} ({cost['epochs_timed']} epochs)", cost["device"]])
    return [
        "## Training cost",
        "",
        "Per row, from the files nnU-Net wrote while training it: epochs x iterations per epoch x batch size (the "
        "plans' batch, over all GPUs) and the patches that makes per fold; wall time is the sum of nnU-Net's logged "
        "epoch times over the folds (without start-up and final validation); the device from nnU-Net's debug.json. "
        "Compare models at matched compute by these columns, and by the benchmark's time per step.",
        "",
        *markdown_table(["Model", "Folds", "Epochs x iterations x batch", "Patches per fold", "Wall time (all folds)",
                         "Device"], rows),
        "",
    ]


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
    return markdown_table(["Model", "Cases"] + [f"{r} Dice (%)" for r in regions], cells)


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
        *markdown_table(["Method", "Mean Dice (%)", "Mean HD95", "Source"], rows),
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
    if any("all" in r.get("folds", ()) for r in summary["runs"]):
        lines += ["Fold `all`: nnU-Net trained it on every case and validated it on the same cases, so its (cv) "
                  "row measures the training cases, not held-out ones; the (test) rows are the held-out estimate.", ""]
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
    lines += empty_predictions_block(summary)
    from nnunetv2_resunet.evaluation.report.paired_formatting import paired_block, repeats_block  # imports this module

    if summary.get("paired"):
        lines += paired_block(summary["paired"]) + repeats_block(summary["paired"]["repeats"])
    lines += training_cost_block(summary)
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
        lines += markdown_table(header, rows) + [""]
    if summary["missing"]:
        lines += ["## Missing (not evaluated, --allow_missing)", ""]
        lines += [
            f"- {m['trainer']} {m['configuration']} ({m['split']}) fold {m['fold'] or '-'} case {m['case']}: "
            f"{m['reason']}"
            for m in summary["missing"]
        ] + [""]
    lines += published_block(summary["published"])
    return "\n".join(lines).rstrip() + "\n"


def _format_number(value: float | None, scale: float) -> str:
    return "–" if value is None else f"{value * scale:.2f}"
