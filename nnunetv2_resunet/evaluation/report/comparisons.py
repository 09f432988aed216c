"""The report's paired comparison: one reference model against every other model that has the same cases.

Rows of the report are grouped into models: a model is one trainer, plans and configuration on one split, either
one run or the seeded repeats of a trainer (``<Trainer>_seed<N>``, made by ``nnunetv2_resunet.training.repeats``;
the name is the contract, so this module reads it rather than importing training code). For each split, the
reference model is compared with every other model whose runs have exactly the reference's cases (cross-validation
rows pool their folds' validation cases; a case is identified by fold and name):

* one run against one run: one comparison;
* with repeats on either side: one comparison per repeat (repeat i against repeat i, or the single run against
  each repeat) and one pooled comparison, on each case's mean over the repeats. A pooled difference is set against
  the run-to-run spread: the larger range (max - min over repeats) of the two models' mean, for that class and
  metric.

Values are the ``physical`` convention's (nnU-Net's Dice, HD95 in mm; a case where a metric is undefined is left
out of that pair). Per class and for the mean (per case, the average over the classes defined for both), Dice and
HD95: :func:`nnunetv2_resunet.evaluation.paired.paired_difference`, then Holm's adjustment over every comparison of
the same split, class and metric. Dice is a fraction (0-1), as in per_case.csv and summary.json.
"""

from __future__ import annotations

import math
import re
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from nnunetv2_resunet.command_line import UserError
from nnunetv2_resunet.evaluation.conventions import PHYSICAL
from nnunetv2_resunet.evaluation.paired import holm, paired_difference
from nnunetv2_resunet.evaluation.report.cases import Run
from nnunetv2_resunet.evaluation.report.evaluate import Record

# The seeded repeats' names (nnunetv2_resunet.training.repeats.seeded_name).
SEEDED = re.compile(r"^(?P<base>.+)_seed(?P<seed>\d+)$")
METRICS = (("dice", True), ("hd95", False))  # (metric, higher is better)
MEAN = "mean"
SIGNIFICANCE = 0.05
CSV_COLUMNS = ("reference", "model", "split", "class", "metric", "n", "mean_diff", "ci_low", "ci_high", "p_wilcoxon",
               "p_holm", "wins", "ties", "losses")

CaseValues = dict[tuple[str, str], dict[str, tuple[float, float]]]  # (fold, case) -> class -> (dice, hd95)


@dataclass(frozen=True)
class Model:
    """The runs of one trainer (or its seeded repeats), plans and configuration on one split."""

    base: str
    plans: str
    configuration: str
    split: str
    runs: tuple[Run, ...]

    @property
    def identifier(self) -> str:
        """nnU-Net's identifier ``TRAINER__PLANS__CONFIGURATION``; repeats are written ``TRAINER_seed*__...``."""
        return self.run_identifier(f"{self.base}_seed*" if self.repeated else self.base)

    def run_identifier(self, trainer: str) -> str:
        return "__".join([trainer, self.plans, self.configuration]) if self.plans else trainer

    @property
    def repeated(self) -> bool:
        return any(SEEDED.match(r.trainer) for r in self.runs)

    @property
    def label(self) -> str:
        """Display name: trainer (repeats: ``_seed*`` and their number), plans and configuration."""
        trainer = f"{self.base}_seed* ({len(self.runs)} repeats)" if self.repeated else self.base
        return " ".join(p for p in (trainer, self.plans, self.configuration) if p)


def group_models(runs: Sequence[Run]) -> list[Model]:
    """Runs grouped into models, in the order of their first run; repeats sorted by seed."""
    groups: dict[tuple[str, str, str, str], list[Run]] = {}
    for run in runs:
        seeded = SEEDED.match(run.trainer)
        base = seeded.group("base") if seeded else run.trainer
        groups.setdefault((base, run.plans, run.configuration, run.split), []).append(run)
    models = []
    for (base, plans, configuration, split), members in groups.items():
        members.sort(key=lambda r: int(SEEDED.match(r.trainer).group("seed")) if SEEDED.match(r.trainer) else -1)
        models.append(Model(base, plans, configuration, split, tuple(members)))
    return models


def choose_reference(models: Sequence[Model], name: str | None) -> tuple[Model | None, str]:
    """The reference model and how it was chosen: ``name`` (a trainer, a repeat's trainer or nnU-Net's identifier
    TRAINER__PLANS__CONFIGURATION), else the first ResUnet model, else the first model.

    Raises:
        UserError: ``name`` matches no model.
    """
    if not models:
        return None, "no rows"
    if name:
        for model in models:
            names = {model.base, model.identifier, *(r.trainer for r in model.runs),
                     *(model.run_identifier(r.trainer) for r in model.runs)}
            if name in names:
                return model, f"chosen with -reference {name}"
        known = sorted({m.identifier for m in models})
        raise UserError(f"-reference {name} matches no row of the report; rows: {', '.join(known)}")
    for model in models:
        if model.base.startswith("ResUnetTrainer"):
            return model, "the first ResUnet row; -reference chooses another"
    return models[0], "the first row, as there is no ResUnet row; -reference chooses another"


def case_values(records: Sequence[Record]) -> dict[Run, CaseValues]:
    """Each run's physical-convention (Dice, HD95) per case and label (regions have no HD95 and are left out)."""
    values: dict[Run, CaseValues] = {}
    for record in records:
        if record.target.is_region:
            continue
        case = values.setdefault(record.job.run, {}).setdefault((record.job.fold, record.job.case), {})
        case[record.target.name] = record.scores(PHYSICAL)
    return values


def pooled_values(sides: Sequence[CaseValues]) -> CaseValues:
    """Per case and class, the mean over repeats of each metric (over the repeats where it is defined)."""
    pooled: CaseValues = {}
    for key in sides[0]:
        pooled[key] = {}
        for name in sides[0][key]:
            pairs = np.array([side[key][name] for side in sides], dtype=float)
            with np.errstate(all="ignore"):
                means = [float(np.nanmean(pairs[:, i])) if np.isfinite(pairs[:, i]).any() else math.nan
                         for i in range(2)]
            pooled[key][name] = (means[0], means[1])
    return pooled


def _series(reference: CaseValues, model: CaseValues, classes: Sequence[str], metric: int
            ) -> dict[str, tuple[list[float], list[float]]]:
    """Per class and for the mean, the reference's and the model's value of each case (in the same order)."""
    keys = sorted(reference)
    series = {name: ([reference[k][name][metric] for k in keys], [model[k][name][metric] for k in keys])
              for name in classes}
    ref_mean, model_mean = [], []
    for index in range(len(keys)):
        both = [(series[c][0][index], series[c][1][index]) for c in classes
                if math.isfinite(series[c][0][index]) and math.isfinite(series[c][1][index])]
        ref_mean.append(float(np.mean([b[0] for b in both])) if both else math.nan)
        model_mean.append(float(np.mean([b[1] for b in both])) if both else math.nan)
    return {MEAN: (ref_mean, model_mean), **series}


def _run_means(values: CaseValues, classes: Sequence[str]) -> dict[tuple[str, str], float]:
    """(class or mean, metric) -> the mean over cases (mean: the mean of the class means), as the summary has it."""
    means = {}
    for index, (metric, _) in enumerate(METRICS):
        class_means = []
        for name in classes:
            column = np.array([case[name][index] for case in values.values()], dtype=float)
            class_means.append(float(np.nanmean(column)) if np.isfinite(column).any() else math.nan)
            means[(name, metric)] = class_means[-1]
        means[(MEAN, metric)] = float(np.mean(class_means)) if class_means else math.nan
    return means


def _spread(model: Model, values: dict[Run, CaseValues], classes: Sequence[str]) -> dict[tuple[str, str], float]:
    """Range over repeats of the model's mean per (class, metric); empty for a model with fewer than 2 runs."""
    if len(model.runs) < 2:
        return {}
    per_run = [_run_means(values[r], classes) for r in model.runs]
    return {key: float(max(m[key] for m in per_run) - min(m[key] for m in per_run)) for key in per_run[0]}


def _pairings(reference: Model, model: Model, values: dict[Run, CaseValues]) -> list[tuple[str, str, str, CaseValues,
                                                                                              CaseValues]]:
    """(level, reference id, model id, reference values, model values) of every comparison of the two models."""
    if not reference.repeated and not model.repeated:
        return []
    if reference.repeated and model.repeated:
        pairs = list(zip(reference.runs, model.runs))
    elif reference.repeated:
        pairs = [(r, model.runs[0]) for r in reference.runs]
    else:
        pairs = [(reference.runs[0], m) for m in model.runs]
    levels = [("repeat", reference.run_identifier(r.trainer), model.run_identifier(m.trainer), values[r], values[m])
              for r, m in pairs]
    pooled = [("pooled", reference.identifier, model.identifier,
               pooled_values([values[r] for r in reference.runs]), pooled_values([values[m] for m in model.runs]))]
    return levels + pooled


def repeat_spread(models: Sequence[Model], values: dict[Run, CaseValues], classes: Sequence[str]) -> list[dict]:
    """For every model with two or more repeats: per class and for the mean, each repeat's mean over cases, their
    mean, standard deviation and range across repeats, and the standard deviation across cases (averaged over the
    repeats)."""
    spreads = []
    for model in models:
        if len(model.runs) < 2:
            continue
        per_run = [_run_means(values[r], classes) for r in model.runs]
        entry = {"model": model.label, "split": model.split, "repeats": [r.trainer for r in model.runs], "values": {}}
        for name in (MEAN, *classes):
            for index, (metric, _) in enumerate(METRICS):
                means = [m[(name, metric)] for m in per_run]
                case_sds = []
                for run in model.runs:
                    if name == MEAN:
                        column = [_nanmean([case[c][index] for c in classes]) for case in values[run].values()]
                    else:
                        column = [case[name][index] for case in values[run].values()]
                    finite = np.asarray(column, dtype=float)[np.isfinite(column)]
                    case_sds.append(float(np.std(finite, ddof=1)) if finite.size > 1 else math.nan)
                entry["values"][f"{name}/{metric}"] = {
                    "per_repeat": means, "mean": _nanmean(means),
                    "sd_repeats": float(np.std(means, ddof=1)), "range_repeats": float(max(means) - min(means)),
                    "sd_cases": _nanmean(case_sds)}
        spreads.append(entry)
    return spreads


def _nanmean(values: Sequence[float]) -> float:
    finite = [v for v in values if math.isfinite(v)]
    return float(np.mean(finite)) if finite else math.nan


def compare(records: Sequence[Record], runs: Sequence[Run], classes: Sequence[str],
            reference_name: str | None = None) -> dict:
    """The paired comparison of the report, as data with NaN floats (:func:`json_ready` for JSON).

    Args:
        records: every evaluated case and target.
        runs: the report's rows.
        classes: the labels to compare (regions have no HD95 and are left out).
        reference_name: ``-reference`` (see :func:`choose_reference`).

    Returns:
        ``{"reference", "reference_label", "chosen", "rows", "not_compared", "repeats", ...}``; each row has the
        CSV columns plus ``level`` (single, repeat, pooled), ``model_label``, ``note``, ``distinguishable`` and,
        for pooled rows against a model with repeats, ``spread`` and ``exceeds_spread``.
    """
    values = case_values(records)
    models = group_models([r for r in runs if r in values])
    reference_model, chosen = choose_reference(models, reference_name)
    result = {"reference": None, "reference_label": None, "chosen": chosen, "rows": [], "not_compared": [],
              "repeats": repeat_spread(models, values, classes), "convention": PHYSICAL,
              "dice_unit": "fraction (0-1)", "hd95_unit": "mm"}
    if reference_model is None:
        return result
    result["reference"], result["reference_label"] = reference_model.identifier, reference_model.label
    key = (reference_model.base, reference_model.plans, reference_model.configuration)
    for reference in (m for m in models if (m.base, m.plans, m.configuration) == key):
        cases = set(values[reference.runs[0]])
        for model in models:
            if model.split != reference.split or model is reference:
                continue
            different = [r for r in (*reference.runs, *model.runs) if set(values[r]) != cases]
            if different:
                result["not_compared"].append({"model": model.label, "split": model.split,
                                               "reason": f"{different[0].label} has other cases than the reference"})
                continue
            spreads = [s for s in (_spread(reference, values, classes), _spread(model, values, classes)) if s]
            for level, ref_id, model_id, ref_values, model_values in _pairings(reference, model, values):
                for index, (metric, higher) in enumerate(METRICS):
                    for name, (ref_series, model_series) in _series(ref_values, model_values, classes, index).items():
                        stats = paired_difference(ref_series, model_series, higher)
                        row = {"reference": ref_id, "model": model_id, "split": model.split, "class": name,
                               "metric": metric, "n": stats.n, "mean_diff": stats.mean_diff,
                               "ci_low": stats.ci_low, "ci_high": stats.ci_high, "p_wilcoxon": stats.p_wilcoxon,
                               "p_holm": math.nan, "wins": stats.wins, "ties": stats.ties, "losses": stats.losses,
                               "level": level, "model_label": model.label, "note": stats.note}
                        if level == "pooled" and spreads:
                            row["spread"] = max(s[(name, metric)] for s in spreads)
                            row["exceeds_spread"] = bool(abs(stats.mean_diff) > row["spread"])
                        result["rows"].append(row)
    families: dict[tuple[str, str, str], list[dict]] = {}
    for row in result["rows"]:
        families.setdefault((row["split"], row["class"], row["metric"]), []).append(row)
    for family in families.values():
        for row, adjusted in zip(family, holm([r["p_wilcoxon"] for r in family])):
            row["p_holm"] = adjusted
            row["distinguishable"] = bool(adjusted < SIGNIFICANCE)  # NaN compares False
    return result

