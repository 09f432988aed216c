"""Run a study on this machine: every run that is not done, as soon as what it needs is done, one per slot (one
slot by default; one per GPU with ``-gpus 0 1 ...``, each run seeing only its GPU through
``CUDA_VISIBLE_DEVICES``). A run that fails does not stop the others; only what depends on it waits. Each run is
tried at most once per invocation; the states come from the disk every time a run ends."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
from concurrent.futures import FIRST_COMPLETED, Future, ThreadPoolExecutor, wait

from tqdm import tqdm

from nnunetv2_resunet.studies.execute import Options, execute_run, stop_process_tree
from nnunetv2_resunet.studies.progress import display_path, wall_time
from nnunetv2_resunet.studies.runs import NnUNetFolders, Run
from nnunetv2_resunet.studies.state import RunState, Status, ready, study_states
from nnunetv2_resunet.studies.study_file import Study

RUNNABLE = (Status.WAITING, Status.INTERRUPTED, Status.FAILED)


def slot_environments(gpus: list[str] | None, jobs: int, cpus: int | None = None) -> list[dict[str, str]]:
    """One environment per concurrent run: its GPU (``CUDA_VISIBLE_DEVICES``), and with several runs at a time their
    share of the machine's CPUs for nnU-Net's data augmentation (:func:`augmentation_workers`), unless
    ``nnUNet_n_proc_DA`` is set, which then holds for every run as it does for nnU-Net."""
    slots = [{"CUDA_VISIBLE_DEVICES": gpu} for gpu in gpus] if gpus else [{} for _ in range(max(1, jobs))]
    if len(slots) > 1 and "nnUNet_n_proc_DA" not in os.environ:
        workers = augmentation_workers(len(slots), cpus)
        for slot in slots:
            slot["nnUNet_n_proc_DA"] = str(workers)
    return slots


def augmentation_workers(runs: int, cpus: int | None = None) -> int:
    """Data-augmentation workers per run (``nnUNet_n_proc_DA``) when ``runs`` trainings share ``cpus`` CPUs.

    nnU-Net gives every training ``n`` training and ``max(1, n // 2)`` validation augmentation processes beside
    its main process, with ``n`` from its host table (12 on an unknown host, capped at the CPU count), as if it had
    the node to itself: four runs on a 32-core node would start 76 processes. Each run here gets the largest ``n``
    whose processes fit its share of the CPUs (at least 1, at most nnU-Net's own choice).

    Args:
        runs: Trainings at a time.
        cpus: CPUs to share; default the CPUs this process may run on (a SLURM or cgroup allocation included).
    """
    from nnunetv2.utilities.default_n_proc_DA import get_allowed_n_proc_DA

    cpus = cpus or len(os.sched_getaffinity(0))
    share = cpus // runs
    workers = 1
    while workers + 1 + max(1, (workers + 1) // 2) + 1 <= share:
        workers += 1
    return min(workers, get_allowed_n_proc_DA())


def run_study(study: Study, runs: list[Run], folders: NnUNetFolders, options: Options,
              slots: list[dict[str, str]]) -> dict[str, RunState]:
    """Execute what is left of the study; return every run's state at the end."""
    states = study_states(runs, folders.raw)
    attempted: set[str] = set()
    children: dict[str, subprocess.Popen] = {}
    lock = threading.Lock()

    def started(key: str):
        def register(process: subprocess.Popen) -> None:
            with lock:
                children[key] = process
        return register

    todo = sum(states[r.key].status != Status.DONE for r in runs)
    in_flight: dict[Future, tuple[Run, dict[str, str]]] = {}
    free = list(slots)
    previous = signal.signal(signal.SIGTERM, _exit_on_sigterm) if _main_thread() else None
    bar = tqdm(total=todo, desc=f"study {study.name}", unit="run", file=sys.stderr)
    try:
        with ThreadPoolExecutor(max_workers=len(slots)) as pool:
            try:
                while True:
                    for run in runs:
                        if not free:
                            break
                        state = states[run.key]
                        if run.key in attempted or state.status not in RUNNABLE or not ready(run, states):
                            continue
                        attempted.add(run.key)
                        slot = free.pop(0)
                        where = f" on GPU {slot['CUDA_VISIBLE_DEVICES']}" if "CUDA_VISIBLE_DEVICES" in slot else ""
                        bar.write(f"start {run.key}{where}  (log: {display_path(run.log_path, folders)})")
                        future = pool.submit(execute_run, run, study, runs, folders, options, slot, started(run.key))
                        in_flight[future] = (run, slot)
                    if not in_flight:
                        break
                    finished, _ = wait(in_flight, return_when=FIRST_COMPLETED)
                    for future in finished:
                        run, slot = in_flight.pop(future)
                        free.append(slot)
                        children.pop(run.key, None)
                        try:
                            result = future.result()
                        except Exception as error:  # a bug or a broken folder: this run fails, the others go on
                            result = RunState(Status.FAILED, f"{type(error).__name__}: {error}", run.log_path)
                        bar.write(_outcome(run, result, folders))
                        bar.update(1)
                    states = study_states(runs, folders.raw)
            except BaseException:
                with lock:  # before the pool waits for its threads: they wait for these processes
                    for process in children.values():
                        stop_process_tree(process)  # execute_run then logs the exit and releases the lock
                raise
    finally:
        bar.close()
        if previous is not None:
            signal.signal(signal.SIGTERM, previous)
    return study_states(runs, folders.raw)


def _outcome(run: Run, state: RunState, folders: NnUNetFolders) -> str:
    took = f" in {wall_time(state.seconds)}" if state.seconds is not None else ""
    if state.status == Status.DONE:
        return f"done  {run.key}{took}"
    log = f" (log: {display_path(state.log, folders)})" if state.log else ""
    return f"{state.status.value.upper()}  {run.key}{took}: {state.detail}{log}"


def _main_thread() -> bool:
    return threading.current_thread() is threading.main_thread()


def _exit_on_sigterm(signum, frame):
    raise SystemExit(128 + signum)  # so that running nnU-Net processes are stopped and their logs closed
