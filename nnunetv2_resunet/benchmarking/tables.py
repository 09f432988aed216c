"""Format the figures of :mod:`.benchmark` as a Markdown table and write them to .json and .md."""

from __future__ import annotations

import json
import os
import re

PEAK_MEMORY_NOTE = {
    "cuda": "torch.cuda.max_memory_allocated growth over the trainer's construction and timed steps (tensors only)",
    "cpu": "growth of the process's resident-set high-water mark (VmHWM, reset per trainer) over the trainer's "
           "construction and timed steps; whole-process, approximate",
}

# (field, column header, format); ratio columns follow for the fields in benchmark.RATIO_FIELDS shown here.
COLUMNS = (
    ("parameters", "params (M)", lambda v: f"{v / 1e6:.1f}"),
    ("forward_gflops_per_patch", "fwd GFLOP/patch", lambda v: f"{v:.1f}"),
    ("train_step_ms", "step (ms)", lambda v: f"{v:.1f}"),
    ("train_ms_per_patch", "train ms/patch", lambda v: f"{v:.2f}"),
    ("inference_ms_per_patch", "infer ms/patch", lambda v: f"{v:.2f}"),
    ("peak_memory_mib", "peak MiB", lambda v: f"{v:.0f}"),
    ("activation_mib_per_patch", "act. MiB/patch", lambda v: f"{v:.0f}"),
    ("mfu", "MFU", lambda v: f"{100 * v:.1f}%"),
)
RATIO_COLUMNS = ("forward_gflops_per_patch", "train_ms_per_patch", "inference_ms_per_patch", "peak_memory_mib",
                 "activation_mib_per_patch")


def _cell(value, fmt) -> str:
    return "-" if value is None else fmt(value)


def format_table(meta: dict, results: list[dict]) -> str:
    """A Markdown table: one row per trainer, absolute figures then ratios to the first trainer (x)."""
    header = ["trainer", "patch x batch"] + [c[1] for c in COLUMNS] + [_ratio_header(f) for f in RATIO_COLUMNS]
    rows = []
    for result in results:
        patch = "x".join(str(p) for p in result["patch_size"])
        row = [result["trainer"], f"{patch} x {result['batch_size']}"]
        row += [_cell(result.get(field), fmt) for field, _, fmt in COLUMNS]
        row += [_cell(result["ratio_to_first"].get(field), lambda v: f"{v:.2f}") for field in RATIO_COLUMNS]
        rows.append(row)
    lines = [
        f"Device: {meta['device']}; torch {meta['torch']}; {meta['dtype']}"
        f"{' (nnU-Net train_step)' if meta['nnunet_default_step'] else ''}; compile {meta['compile']}; "
        f"channels_last {meta['channels_last']}; plans: {meta['plans']}; median of {meta['steps']} steps after "
        f"{meta['warmup']} warm-up; clock: {meta['clock']}.",
        "",
        "| " + " | ".join(header) + " |",
        "|" + "|".join("---" for _ in header) + "|",
    ]
    lines += ["| " + " | ".join(row) + " |" for row in rows]
    lines += ["", f"Peak memory: {meta['peak_memory_measures']}. Activations: bytes one more patch saves for "
                  "backward in the forward (device-independent for a dtype). MFU: 3 x forward FLOPs per step / "
                  "step time / device peak. Ratios (x) are to the first row."]
    return "\n".join(lines)


def _ratio_header(field: str) -> str:
    names = {"forward_gflops_per_patch": "FLOPs x", "train_ms_per_patch": "train x",
             "inference_ms_per_patch": "infer x", "peak_memory_mib": "peak x", "activation_mib_per_patch": "act. x"}
    return names[field]


def default_name(meta: dict) -> str:
    """e.g. ``2025-01-31_NVIDIA-H100-80GB-HBM3_bf16_synthetic-2d``: sortable, names the device."""
    device = re.sub(r"[^A-Za-z0-9]+", "-", meta["device"].split(",")[0]).strip("-")
    plans = re.sub(r"[^A-Za-z0-9]+", "-", meta["plans"]).strip("-")
    return f"{meta['date'][:10]}_{device}_{meta['dtype']}{'_compile' if meta['compile'] else ''}_{plans}"


def write_results(meta: dict, results: list[dict], output_dir: str, name: str | None = None) -> list[str]:
    """Write ``NAME.json`` (all figures) and ``NAME.md`` (the table) into ``output_dir``; return their paths."""
    os.makedirs(output_dir, exist_ok=True)
    base = os.path.join(output_dir, name or default_name(meta))
    with open(base + ".json", "w", encoding="utf-8") as f:
        json.dump({"meta": meta, "results": results}, f, indent=2)
    with open(base + ".md", "w", encoding="utf-8") as f:
        f.write(format_table(meta, results) + "\n")
    return [base + ".json", base + ".md"]
