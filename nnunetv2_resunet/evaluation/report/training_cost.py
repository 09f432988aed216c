"""What a model's training cost, read from the files nnU-Net writes into each fold folder, so that "matched compute"
can be read off the report rather than asserted.

* ``debug.json`` (nnU-Net's dump of the trainer): ``num_epochs``, ``num_iterations_per_epoch``, ``device`` and, on
  CUDA, ``gpu_name``;
* ``plans.json`` beside the folds (nnU-Net copies the plans there): the configuration's batch size, the global one
  (under DDP nnU-Net splits it over the GPUs);
* ``training_log_*.txt``: nnU-Net's ``Epoch time: T s`` per epoch. A resumed run logs the epochs after its
  checkpoint again; each epoch counts once (its last log), so the wall time is the training that produced the
  model, without start-up, final validation, or epochs lost to an interruption.
"""

from __future__ import annotations

import json
import os
import re
from collections.abc import Sequence

EPOCH = re.compile(r": Epoch (\d+)\s*$")
EPOCH_TIME = re.compile(r": Epoch time: ([\d.]+) s")


def _load(path: str) -> dict | None:
    try:
        with open(path, encoding="utf-8") as handle:
            return json.load(handle)
    except (OSError, ValueError):
        return None


def _batch_size(plans: dict | None, configuration: str) -> int | None:
    """The configuration's batch size, following nnU-Net's ``inherits_from``."""
    configurations = (plans or {}).get("configurations", {})
    seen = set()
    while configuration in configurations and configuration not in seen:
        seen.add(configuration)
        if "batch_size" in configurations[configuration]:
            return int(configurations[configuration]["batch_size"])
        configuration = configurations[configuration].get("inherits_from", "")
    return None


def epoch_seconds(fold_dir: str) -> dict[int, float]:
    """Seconds per epoch from every training log of a fold (oldest first, so a repeated epoch keeps its last time)."""
    logs = sorted((os.path.join(fold_dir, f) for f in os.listdir(fold_dir)
                   if f.startswith("training_log_") and f.endswith(".txt")), key=os.path.getmtime)
    seconds: dict[int, float] = {}
    for log in logs:
        epoch = None
        with open(log, encoding="utf-8", errors="replace") as handle:
            for line in handle:
                started, took = EPOCH.search(line), EPOCH_TIME.search(line)
                if started:
                    epoch = int(started.group(1))
                elif took and epoch is not None:
                    seconds[epoch] = float(took.group(1))
    return seconds


def training_cost(model_dir: str, configuration: str, folds: Sequence[int | str]) -> dict | None:
    """The training cost of the folds of one model (``TRAINER__PLANS__CONFIGURATION`` folder), or None when no fold
    has nnU-Net's ``debug.json`` (not trained by nnU-Net, or not here).

    Returns:
        ``{"folds", "epochs", "iterations_per_epoch", "batch_size", "samples_per_fold", "epochs_timed",
        "wall_seconds", "device"}``; a figure that differs between folds is listed per fold.
    """
    debug = {}
    for fold in folds:
        found = _load(os.path.join(model_dir, f"fold_{fold}", "debug.json"))
        if found is not None:
            debug[fold] = found
    if not debug:
        return None
    batch = _batch_size(_load(os.path.join(model_dir, "plans.json")), configuration)

    def same(key: str):
        values = list(dict.fromkeys(str(d.get(key, "?")) for d in debug.values()))
        return values[0] if len(values) == 1 else " / ".join(values)

    epochs, iterations = same("num_epochs"), same("num_iterations_per_epoch")
    devices = list(dict.fromkeys(d.get("gpu_name") or d.get("device", "?") for d in debug.values()))
    timed = {fold: epoch_seconds(os.path.join(model_dir, f"fold_{fold}")) for fold in debug}
    samples = None
    if epochs.isdigit() and iterations.isdigit() and batch is not None:
        samples = int(epochs) * int(iterations) * batch
    return {"folds": [str(f) for f in debug], "epochs": epochs, "iterations_per_epoch": iterations,
            "batch_size": batch, "samples_per_fold": samples,
            "epochs_timed": sum(len(t) for t in timed.values()),
            "wall_seconds": sum(sum(t.values()) for t in timed.values()), "device": " / ".join(devices)}


def format_seconds(seconds: float) -> str:
    minutes, second = divmod(round(seconds), 60)
    hours, minute = divmod(minutes, 60)
    return f"{hours} h {minute:02d} min" if hours else f"{minute} min {second:02d} s"
