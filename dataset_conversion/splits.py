"""Splits and completeness: five folds, the published case lists, what a training set lacks."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

from .common import CROSSVAL_SEED, NUM_FOLDS, ConversionError


def five_fold_splits(case_ids: Sequence[str]) -> list[dict[str, list[str]]]:
    """nnU-Net's own default 5-fold split (``generate_crossval_split``, seed 12345) over the sorted case IDs."""
    # imported here: sklearn takes seconds to import, and worker processes never need it
    from nnunetv2.utilities.crossval_split import generate_crossval_split

    if len(case_ids) < NUM_FOLDS:
        raise ConversionError(f"need at least {NUM_FOLDS} training cases for {NUM_FOLDS} folds, got {len(case_ids)}")
    splits = generate_crossval_split(sorted(case_ids), seed=CROSSVAL_SEED, n_splits=NUM_FOLDS)
    return [{"train": [str(c) for c in s["train"]], "val": [str(c) for c in s["val"]]} for s in splits]


def abbreviated(names: list[str], shown: int = 6) -> str:
    """A list for a one-line message: all of a short one, the first and last few of a long one."""
    if len(names) <= shown:
        return ", ".join(names)
    half = shown // 2
    return f"{', '.join(names[:half])}, ... ({len(names) - shown} more), {', '.join(names[-half:])}"


def check_published_cases(expected: Iterable[str], found: Iterable[str], what: str, source: Path) -> None:
    """Raise if cases of a published split list are missing from the source."""
    missing = sorted(set(expected) - set(found))
    if missing:
        raise ConversionError(f"{source}: {what} missing from the source: {missing}")


def compare_training_set(
    published: Sequence[str], found: Iterable[str], what: str, reference: str, source: Path
) -> tuple[dict[str, Any], list[str]]:
    """Compare a training set with the published one; training sets may be partial, test sets may not.

    Args:
        published: The published training cases (or patients), e.g. TransUNet's 18 Synapse cases.
        found: The same kind of names found in the source.
        what: Plural noun for the message, e.g. "TransUNet training cases".
        reference: Where the published list comes from, recorded in dataset.json.

    Returns:
        The dataset.json entry ``training_set`` (``reference``, ``published`` count, ``missing``, ``unlisted``,
        ``complete``) and warning lines for what is missing or not listed.
    """
    found = set(found)
    missing = sorted(set(published) - found)
    unlisted = sorted(found - set(published))
    warnings = []
    if missing:
        warnings.append(f"{source}: {len(missing)} of the {len(published)} {what} are missing: {abbreviated(missing)};"
                        f" the dataset is a partial training set (dataset.json's training_set lists them)")
    if unlisted:
        warnings.append(f"{source}: {unlisted} are not among the {len(published)} published {what}; they are used for "
                        "training too")
    entry = {
        "reference": reference,
        "published": len(published),
        "missing": missing,
        "unlisted": unlisted,
        "complete": not missing and not unlisted,
    }
    return entry, warnings
