"""Evaluate every prediction/reference pair in parallel, with a progress bar, into :class:`Record` objects."""

from __future__ import annotations

from collections.abc import Sequence
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass
from functools import partial

from tqdm import tqdm

from nnunetv2_resunet.command_line import UserError
from nnunetv2_resunet.evaluation.case_metrics import Target, evaluate_case
from nnunetv2_resunet.evaluation.conventions import convention_scores
from nnunetv2_resunet.evaluation.metrics import ClassMetrics
from nnunetv2_resunet.evaluation.report.cases import CaseJob


def _evaluate_job(job: CaseJob, targets: Sequence[Target], ignore_label: int | None, tolerance: float):
    try:
        return evaluate_case(job.case, job.pred_file, job.ref_file, targets, ignore_label, tolerance)
    except Exception as error:  # name the model and fold too; the case is named by evaluate_case or here
        text = str(error)
        prefix = "" if text.startswith(f"case {job.case}") else f"case {job.case}: "
        # A file that cannot be read (SimpleITK raises RuntimeError) or does not fit its reference is the user's
        # to fix; anything else is a bug, whose traceback the report keeps.
        user_facing = isinstance(error, (ValueError, OSError, RuntimeError))
        raise (UserError if user_facing else ValueError)(f"{job.where}: {prefix}{text}") from error


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


@dataclass(frozen=True)
class Record:
    """One case and one label or region: the raw numbers and where they come from."""

    job: CaseJob
    target: Target
    metrics: ClassMetrics

    def scores(self, convention: str) -> tuple[float, float]:
        m = self.metrics
        return convention_scores(m.dice, m.hd95, m.hd95_voxel, m.pred_empty, m.ref_empty, convention)
