"""Running a plan: the target folders and what an overwrite replaces, the parallel map, and the conversion
itself, landing dataset and split together through :mod:`.transaction`."""

from __future__ import annotations

import json
import multiprocessing
import os
import re
import sys
import uuid
from collections.abc import Callable, Sequence
from concurrent.futures import ProcessPoolExecutor, as_completed
from concurrent.futures.process import BrokenProcessPool
from dataclasses import dataclass, replace
from functools import partial
from pathlib import Path
from typing import Any

from nnunetv2.dataset_conversion.generate_dataset_json import generate_dataset_json
from nnunetv2.paths import nnUNet_preprocessed, nnUNet_raw, nnUNet_results
from tqdm import tqdm

from .common import (
    FILE_ENDING,
    CaseJob,
    ConversionError,
    ConversionPlan,
    check_unique,
    dataset_folder_name,
    env_folder,
)
from .transaction import (
    Interrupted,
    Transaction,
    TransactionError,
    init_worker,
    interrupts_deferred,
    interrupts_raise,
    owner_description,
    recover_leftovers,
    report_leftovers,
    write_json_atomically,
)


def _overlaps(a: Path, b: Path) -> bool:
    a, b = a.resolve(), b.resolve()
    return a == b or a in b.parents or b in a.parents


def parallel_map(
    function: Callable[[Any], Any], items: Sequence[Any], num_processes: int, desc: str, lock_path: Path | None = None
) -> list[Any]:
    """Apply ``function`` to every item with a progress bar; in ``num_processes`` worker processes when > 1.

    The first exception in any worker stops the map and is re-raised here; so does an interrupt of this process.
    Either way the workers are killed (what they wrote is in the run's work folder, which the caller removes) and are
    gone when this returns. A worker that dies by itself (the out-of-memory killer) is a :class:`ConversionError`.
    Workers share the run's lock (``lock_path``), leave Ctrl-C to this process, and exit when this process dies.

    (Not ``multiprocessing.Pool``: its ``terminate()`` kills workers that may hold its task queue's lock and can then
    wait for that lock forever, and it waits forever for the result of a worker that died. ``ProcessPoolExecutor``
    expects workers to die.)

    Returns:
        The results, in completion order.
    """
    if num_processes <= 1 or len(items) <= 1:
        # the bar is closed on an error too, instead of printing its last state when the interpreter exits
        with tqdm(items, desc=desc, unit="case", file=sys.stdout) as progress:
            return [function(item) for item in progress]
    executor = ProcessPoolExecutor(
        min(num_processes, len(items)),
        # spawn: the parent may hold threads (torch, tqdm's monitor) that fork would copy in a locked state
        mp_context=multiprocessing.get_context("spawn"),
        initializer=init_worker,
        initargs=(None if lock_path is None else str(lock_path), os.getpid()),
    )
    try:
        futures = [executor.submit(function, item) for item in items]
        with tqdm(as_completed(futures), total=len(items), desc=desc, unit="case", file=sys.stdout) as progress:
            return [future.result() for future in progress]
    except BaseException as error:
        _kill_workers(executor)
        if isinstance(error, BrokenProcessPool):
            raise ConversionError(
                f"{desc}: a worker process ended abruptly (killed, or out of memory?) and nothing was kept; run "
                f"again, with fewer worker processes (-np) if memory is short"
            ) from error
        raise
    finally:
        executor.shutdown(wait=True, cancel_futures=True)


def _kill_workers(executor: ProcessPoolExecutor) -> None:
    """SIGKILL the executor's worker processes (``ProcessPoolExecutor.kill_workers()`` from Python 3.14 on); the
    executor then finds them dead, fails what is pending and cleans up."""
    if hasattr(executor, "kill_workers"):
        executor.kill_workers()
        return
    for process in list((executor._processes or {}).values()):
        process.kill()


def _run_job(job: CaseJob, output_folder: Path) -> tuple[str, dict[str, Any] | None]:
    return job.case_id, job.convert(output_folder)


@dataclass(frozen=True)
class Target:
    """Where a dataset goes, and what an overwrite replaces.

    Attributes:
        raw: ``$nnUNet_raw/DatasetXXX_Name``.
        preprocessed: ``$nnUNet_preprocessed/DatasetXXX_Name``.
        stale: Entries of the preprocessed folder that nnU-Net derived from the dataset being replaced (removed by
            an overwrite, together with the old split).
    """

    raw: Path
    preprocessed: Path
    stale: tuple[str, ...] = ()

    @property
    def splits_file(self) -> Path:
        return self.preprocessed / SPLITS_FILE


SPLITS_FILE = "splits_final.json"
#: What nnU-Net writes into nnUNet_preprocessed/DatasetXXX_Name besides plans and their data folders.
NNUNET_PREPROCESSED_FILES = ("dataset_fingerprint.json", "dataset.json", SPLITS_FILE)
NNUNET_PREPROCESSED_FOLDERS = ("gt_segmentations",)
#: Files of nnU-Net's preprocessed case folders (blosc2, npz, npy arrays and their pickled properties).
PREPROCESSED_ARRAY_SUFFIXES = (".b2nd", ".npz", ".npy", ".pkl")
#: What ``nnUNetv2_resunet_study`` keeps beside a dataset's preprocessed data (``studies/runs.py``): the log and the
#: SLURM record of its preprocessing describe the dataset they were made from (replaced with it), and its lock, while
#: there, says that a study is preprocessing the dataset now.
STUDY_RECORD = re.compile(r"study_preprocess_.+\.(log|slurm)")
STUDY_LOCK = re.compile(r"study_preprocess_.+\.lock(\..+)?")


def _plans_data_folders(path: Path) -> set[str] | None:
    """Data folder names (``data_identifier``) of an nnU-Net plans file, or None if ``path`` is not one."""
    try:
        plans = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    if not isinstance(plans, dict) or not isinstance(plans.get("configurations"), dict) or "plans_name" not in plans:
        return None
    return {
        str(c.get("data_identifier", f"{plans['plans_name']}_{name}"))
        for name, c in plans["configurations"].items()
        if isinstance(c, dict)
    }


def classify_preprocessed(folder: Path) -> tuple[list[str], list[str]]:
    """Split the entries of ``nnUNet_preprocessed/DatasetXXX_Name`` into nnU-Net's own outputs (and a study's records
    of making them, :data:`STUDY_RECORD`) and anything else.

    nnU-Net's outputs (fingerprint, plans, their preprocessed data folders, ``gt_segmentations``, its copy of
    dataset.json, the split) all describe the dataset they were made from, so a re-converted dataset makes them stale:
    nnU-Net reuses an existing fingerprint unless told ``--clean``, and a trainer reads whatever arrays are there.

    Returns:
        (nnU-Net's entries, unrecognised entries), names sorted, folders with a trailing '/'.
    """
    entries = sorted(folder.iterdir())
    data_folders: set[str] = set()
    plans_files = set()
    for entry in entries:
        if entry.is_file() and entry.suffix == ".json" and entry.name not in NNUNET_PREPROCESSED_FILES:
            folders = _plans_data_folders(entry)
            if folders is not None:
                plans_files.add(entry.name)
                data_folders |= folders
    known, unknown = [], []
    for entry in entries:
        name = entry.name
        if entry.is_dir():
            arrays_only = all(
                f.is_file() and f.name.endswith(PREPROCESSED_ARRAY_SUFFIXES) for f in entry.iterdir()
            )
            recognised = name in NNUNET_PREPROCESSED_FOLDERS or name in data_folders or arrays_only
            (known if recognised else unknown).append(f"{name}/")
        else:
            ours = name in NNUNET_PREPROCESSED_FILES or name in plans_files or STUDY_RECORD.fullmatch(name)
            (known if ours else unknown).append(name)
    return known, unknown


def _require_root(env_path: Any) -> Path:
    root = env_folder(env_path)
    if root.exists() and not root.is_dir():
        raise ConversionError(f"{root}: {env_path.env_var_name} names a file, not a folder; point it at your nnU-Net "
                              f"folder")
    if not root.is_dir():
        raise ConversionError(
            f"{root}: {env_path.env_var_name} points to a folder that does not exist; create it (mkdir -p '{root}') "
            f"or point {env_path.env_var_name} at your nnU-Net folder (a missing network mount looks like this too)"
        )
    return root


def check_target(dataset_id: int, name: str, overwrite: bool, source: Path, report: bool = True) -> Target:
    """Check where the dataset and its split will go, before any work is done.

    Also finishes or undoes conversions that were killed earlier (see :mod:`.transaction`), printing what it did
    when ``report``.

    Returns:
        The target, with what an overwrite will remove from the preprocessed folder.

    Raises:
        ConversionError: If an env var is unset or names a missing folder, the dataset (or preprocessed data of the
            same name) exists and ``overwrite`` is False, the preprocessed folder holds files we cannot tell are
            stale, another conversion into the same dataset is running, another dataset already uses the ID, or
            the output overlaps the source.
    """
    folder_name = dataset_folder_name(dataset_id, name)
    raw, preprocessed = _require_root(nnUNet_raw), _require_root(nnUNet_preprocessed)
    leftovers = recover_leftovers(raw, preprocessed)
    if report:
        report_leftovers(leftovers)
    if folder_name in leftovers.running:
        work = leftovers.running[folder_name]
        raise ConversionError(
            f"{work}: another conversion into {folder_name} is running ({owner_description(work)}); wait for it "
            "to finish or stop it, then re-run"
        )
    target = Target(raw / folder_name, preprocessed / folder_name)
    prefix = f"Dataset{dataset_id:03d}_"
    for root in (raw, preprocessed):
        others = sorted(p.name for p in root.iterdir() if p.name.startswith(prefix) and p.name != folder_name)
        if others:
            raise ConversionError(
                f"{root}: dataset ID {dataset_id} is already used by {others}; nnU-Net would not know which one "
                f"-d {dataset_id} means. Pick another ID (-d) or remove those folders"
            )
    for out in (target.raw, target.preprocessed):
        if _overlaps(out, source):
            raise ConversionError(f"{source}: the source overlaps the output folder {out}; convert into another place")
    if target.raw.exists() and not overwrite:
        raise ConversionError(f"{target.raw} already exists; pass --overwrite to replace it")
    if target.raw.exists():
        _probe_writable(target.raw)
    if not target.preprocessed.exists():
        return target
    if not target.preprocessed.is_dir():
        raise ConversionError(f"{target.preprocessed}: expected a folder (nnU-Net's preprocessed data), found a file")
    locks = sorted(p for p in target.preprocessed.iterdir() if STUDY_LOCK.fullmatch(p.name))
    if locks:
        raise ConversionError(
            f"{locks[0]}: nnUNetv2_resunet_study is preprocessing this dataset (the lock says: "
            f"{locks[0].read_text(errors='replace').strip() or 'nothing yet'}); wait until it has finished, or, if no "
            "study runs any more (it was killed), delete the lock and re-run"
        )
    known, unknown = classify_preprocessed(target.preprocessed)
    if not (known or unknown):
        return target
    if not overwrite:
        raise ConversionError(
            f"{target.preprocessed} already exists and holds {known + unknown}, made from an earlier conversion; "
            "pass --overwrite to replace the dataset and clear them"
        )
    if unknown:
        raise ConversionError(
            f"{target.preprocessed}: holds {unknown}, which are not nnU-Net's files and may describe the dataset "
            f"being replaced; move them out of that folder (or delete them) and re-run"
        )
    _probe_writable(target.preprocessed)
    return replace(target, stale=tuple(known))


def _probe_writable(folder: Path) -> None:
    """Raise unless ``folder`` can be written (moving a folder aside needs that too), before any work is done."""
    probe = folder / f".write-probe-{uuid.uuid4().hex[:8]}"
    try:
        probe.mkdir()
        probe.rmdir()
    except OSError as e:
        raise ConversionError(f"{folder}: cannot write here ({_describe_os_error(e)}), so it cannot be replaced") from e


def execute_plan(plan: ConversionPlan, dataset_id: int, name: str, num_processes: int, overwrite: bool) -> Path:
    """Convert all cases of ``plan`` into ``$nnUNet_raw/DatasetXXX_Name`` and put dataset and split in place together.

    The dataset and its ``splits_final.json`` (in the dataset folder, where nnU-Net's planner picks it up, and in
    ``$nnUNet_preprocessed/DatasetXXX_Name``) are built in work folders and swapped in with the previous ones in one
    step (:class:`.transaction.Transaction`); on ``overwrite`` the previous preprocessed folder, with everything
    nnU-Net derived from the old dataset, goes with it. SIGTERM is handled like Ctrl-C: the work folders are removed.

    Returns:
        The dataset folder.

    Raises:
        ConversionError: On bad input or unwritable output; nothing has changed then.
        Interrupted: On SIGINT/SIGTERM; nothing has changed unless ``completed`` says the dataset was put in place.
    """
    target = check_target(dataset_id, name, overwrite, plan.source, report=False)  # the converter checked first
    check_unique([j.case_id for j in plan.jobs])
    for line in plan.warnings:
        print(f"warning: {line}", file=sys.stderr)
    transaction = Transaction(target.raw, target.preprocessed)
    pending: list[int] = []
    with interrupts_raise():
        try:
            transaction.begin()
            _build_dataset(plan, transaction.new_raw, target.raw.name, num_processes, transaction.lock_path)
            for folder in (transaction.new_raw, transaction.new_preprocessed):
                write_json_atomically(plan.splits, folder / SPLITS_FILE)
            pending = transaction.commit()
        except TransactionError as e:
            transaction.abort()
            raise ConversionError(str(e)) from e
        except OSError as e:
            transaction.abort()
            where = e.filename or transaction.raw_work
            raise ConversionError(f"{where}: cannot write ({_describe_os_error(e)})") from e
        except BaseException:
            transaction.abort()
            raise
        # the dataset is in place: removing the old one must not be reported as an interrupted conversion
        with interrupts_deferred(pending):
            transaction.finish()
    if target.stale:
        print(f"note: removed from {target.preprocessed} what nnU-Net had derived from the replaced dataset: "
              f"{list(target.stale)}; run nnUNetv2_plan_and_preprocess again")
    results = nnUNet_results.get()
    if overwrite and results and (Path(results) / target.raw.name).is_dir():
        print(f"note: {Path(results) / target.raw.name} holds models trained on the replaced dataset; retrain (not "
              "--c) before comparing them with this one")
    if pending:
        raise Interrupted(pending[0], completed=True)
    return target.raw


def _describe_os_error(error: OSError) -> str:
    return error.strerror or str(error)


def _build_dataset(plan: ConversionPlan, folder: Path, dataset_name: str, num_processes: int, lock: Path) -> None:
    """Convert every case into ``folder`` and write dataset.json there, with the cases' notes."""
    for sub in ("imagesTr", "labelsTr", "imagesTs", "labelsTs"):
        (folder / sub).mkdir(parents=True)
    results = parallel_map(
        partial(_run_job, output_folder=folder), plan.jobs, num_processes, desc=f"Converting to {dataset_name}",
        lock_path=lock,
    )
    notes: dict[str, dict[str, Any]] = {}
    for case_id, case_notes in sorted(results, key=lambda r: r[0]):
        for key, value in (case_notes or {}).items():
            notes.setdefault(key, {})[case_id] = value
    for line in plan.check_notes(notes) if plan.check_notes else []:
        print(f"warning: {line}", file=sys.stderr)
    for sub in ("imagesTs", "labelsTs"):
        if not any((folder / sub).iterdir()):
            (folder / sub).rmdir()
    generate_dataset_json(
        str(folder),
        channel_names=dict(plan.channel_names),
        labels=dict(plan.labels),
        num_training_cases=len(plan.training_case_ids),
        file_ending=FILE_ENDING,
        dataset_name=dataset_name,
        description=plan.description,
        reference=plan.reference or None,
        license="See the release's own terms (dataset_conversion/README.md says where each release comes from).",
        converted_by="nnunetv2-resunet dataset converters",
        training_cases=plan.training_case_ids,
        test_cases=plan.test_case_ids,
        **plan.extra_json,
        **notes,
    )
