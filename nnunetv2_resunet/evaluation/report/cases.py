"""What the report evaluates: runs (a model's predictions on a set of cases), the prediction/reference pairs of
each run, what is missing, and the labels and regions of the dataset."""

from __future__ import annotations

import os
from collections.abc import Sequence
from dataclasses import dataclass

from nnunetv2_resunet.command_line import UserError
from nnunetv2_resunet.evaluation.case_metrics import Target


@dataclass(frozen=True)
class Run:
    """One row of the report's tables: a model's predictions on one set of cases.

    Attributes:
        trainer: trainer class name (or a free name for ``-pred``).
        configuration: nnU-Net configuration, e.g. ``2d``; empty if unknown.
        plans: plans identifier; empty if unknown.
        split: ``cv`` (cross-validation), ``test`` or ``pred`` (a ``-pred`` folder).
    """

    trainer: str
    configuration: str = ""
    plans: str = ""
    split: str = "pred"

    @property
    def label(self) -> str:
        """Display name: trainer, plans, configuration and split (e.g. ``nnUNetTrainer nnUNetResEncUNetMPlans 2d
        (cv)``): the same trainer on two plans is two rows."""
        parts = [p for p in (self.trainer, self.plans, self.configuration) if p]
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
    """A case that could not be evaluated (reported with ``--allow_missing`` instead of raising)."""

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


def raise_or_collect(missing: list[MissingCase], allow_missing: bool) -> list[MissingCase]:
    if missing and not allow_missing:
        lines = "\n".join(f"  {m.run.label} fold {m.fold or '-'} case {m.case}: {m.reason}" for m in missing)
        raise MissingCaseError(
            f"{len(missing)} case(s) cannot be evaluated (use --allow_missing to list them instead):\n{lines}"
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
    folds: Sequence[int | str],
    splits: list[dict] | None,
) -> tuple[list[CaseJob], list[MissingCase]]:
    """Jobs for the validation predictions of nnU-Net's cross-validation folds.

    A fold's cases are those in its ``validation`` folder, cross-checked with ``splits_final.json``: a case in the
    fold's ``val`` list without a prediction is missing, a prediction for a case outside it is an error. Fold
    ``"all"`` (nnU-Net trains on every case and validates on the same cases) expects every case of the split.

    Raises:
        ValueError: if a fold has predictions for cases that are not in its validation split.
    """
    jobs, missing = [], []
    for fold in folds:
        validation_dir = os.path.join(trainer_dir, f"fold_{fold}", "validation")
        predicted = case_ids(validation_dir, file_ending)
        expected = None
        if splits is not None and fold == "all":  # nnU-Net's fold_all validates on every case it trained on
            expected = sorted({c for s in splits[:1] for c in (*s["train"], *s["val"])})
            unexpected = sorted(set(predicted) - set(expected))
            if unexpected:
                raise ValueError(f"{validation_dir} has predictions for cases not in the dataset's split "
                                 f"(splits_final.json): {unexpected}")
        elif splits is not None:
            if fold >= len(splits):
                raise UserError(f"-f {fold}: splits_final.json has only {len(splits)} folds (0 to {len(splits) - 1})")
            expected = list(splits[fold]["val"])
            unexpected = sorted(set(predicted) - set(expected))
            if unexpected:
                raise UserError(
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


def targets_from_dataset_json(dataset_json: dict) -> tuple[list[Target], int | None]:
    """Labels (Dice and HD95) and regions (Dice) to evaluate, as nnU-Net's LabelManager sees the dataset.

    Returns:
        ``(targets, ignore_label)``: every foreground label, then every multi-label region.
    """
    from nnunetv2.utilities.label_handling.label_handling import LabelManager  # imports torch: keep it lazy

    if "labels" not in dataset_json:
        raise UserError(f"dataset.json has no 'labels' entry; keys: {sorted(dataset_json)}")
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
