"""``nnUNetv2_resunet_check``: the command line of :mod:`.check`, its Markdown report and its files."""

from __future__ import annotations

import argparse
import json
import re
import sys
import time
from collections.abc import Sequence
from pathlib import Path

import torch
from tqdm import tqdm

from nnunetv2_resunet.benchmarking.check import (
    AIM_MFU,
    AIM_STEP_RATIO,
    COMPILED_BY_DEFAULT,
    NNUNET_DEFAULT,
    run_check,
)
from nnunetv2_resunet.command_line import (
    UserError,
    add_option,
    command_parser,
    output_folder,
    run_command,
    torch_device,
)


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    from nnunetv2_resunet.training import ALL_TRAINERS

    parser = command_parser(
        "nnUNetv2_resunet_check",
        "Is the plugin healthy on this GPU, and what does it cost there: nnU-Net's real training step "
                    "(fp16 autocast + GradScaler, torch.compile for some) for nnU-Net's default and every trainer "
                    "of ours on synthetic Synapse-like plans, the planner's memory prediction against the real "
                    "peak, and GPU against CPU prediction. Writes check.json and check.md under "
                    "results/gpu/<device>/; exits 1 when something is unhealthy.")
    parser.add_argument("-device", default="cuda" if torch.cuda.is_available() else "cpu",
                        help="cuda, cuda:N or cpu (default: cuda if available; on CPU only at small sizes).")
    parser.add_argument("-tr", nargs="+", default=[t.__name__ for t in ALL_TRAINERS], metavar="TRAINER",
                        help=f"Trainers to check besides {NNUNET_DEFAULT} (default: every trainer of the plugin).")
    add_option(parser, "-compiled", old=["--compiled"], nargs="*", default=list(COMPILED_BY_DEFAULT),
               metavar="TRAINER", help="Trainers also checked with torch.compile (default: nnU-Net's default, v0.1, "
                                       "v1.0 and the transformers; none with an empty list).")
    add_option(parser, "-compile_backend", old=["--compile_backend"], default=None,
               help="torch.compile backend (default: torch's, inductor, as nnU-Net uses it).")
    add_option(parser, "-patch_size", old=["--patch_size"], nargs=2, type=int, default=[512, 512],
               metavar=("H", "W"), help="Patch of the synthetic plans (default 512 512, Synapse's slices).")
    add_option(parser, "-batch_size", old=["--batch_size"], type=int, default=12,
               help="Batch size (default 12, nnU-Net's 2d plan).")
    add_option(parser, "-num_classes", old=["--num_classes"], type=int, default=14,
               help="Outputs, background included (default 14).")
    add_option(parser, "-warmup", old=["--warmup"], type=int, default=5,
               help="Untimed steps first (compiling, cuDNN autotuning).")
    add_option(parser, "-steps", old=["--steps"], type=int, default=25, help="Timed steps; the median is reported.")
    add_option(parser, "-memory_targets", old=["--memory_targets"], nargs="*", type=float, default=[8.0, 24.0],
               metavar="GB", help="GPU memory targets whose planned batch is trained to compare peaks (default 8 24).")
    parser.add_argument("-o", dest="output_folder", default=None,
                        help="Where check.json and check.md go (default results/gpu/<device>/).")
    args = parser.parse_args(argv)
    if args.warmup < 1 or args.steps < 1 or args.batch_size < 1:
        parser.error(f"need -warmup, -steps and -batch_size of at least 1, got {args.warmup}, {args.steps}, "
                     f"{args.batch_size}")
    try:
        torch_device(args.device)
    except UserError as error:
        parser.error(str(error))
    return args


def _cell(value, fmt: str = "{:.2f}") -> str:
    if value is None:
        return "-"
    if isinstance(value, bool):
        return "yes" if value else "**no**"
    return fmt.format(value)


def format_report(result: dict) -> str:
    """The check as Markdown: environment, training table, planner table, prediction, aims, verdict."""
    env, settings = result["environment"], result["settings"]
    lines = [f"# nnUNetv2_resunet_check: {env['device']}", "",
             f"**{'Healthy' if result['healthy'] else 'UNHEALTHY'}.** {time.strftime('%Y-%m-%d %H:%M')}; "
             f"Python {env['python']}, " + ", ".join(f"{k} {v}" for k, v in env["packages"].items())
             + f"; CUDA {env['cuda']}, cuDNN {env['cudnn']}"
             + (f"; compute capability {env['compute_capability']}, {env['memory_gib']} GiB"
                if "compute_capability" in env else "")
             + f"; transformer parts under fp16 autocast: {env['transformer_parts_under_fp16']}.", "",
             f"## Training: {settings['step']}", "",
             f"Synthetic plans: {'x'.join(map(str, settings['patch_size']))} patch, batch {settings['batch_size']}, "
             f"{settings['num_classes']} classes; median of {settings['steps']} steps after {settings['warmup']} "
             f"(compile backend {settings['compile_backend']}). Step ratio: to {NNUNET_DEFAULT} in the same mode. "
             f"MFU: 3 x forward FLOPs x batch / step time / the device's 16-bit tensor-core peak.", "",
             "| trainer | compiled | params (M) | finite | first -> last loss | grad scale | step (ms) | step x "
             "| peak alloc. (GiB) | peak reserved (GiB) | MFU | note |",
             "|---|---|---:|---|---|---:|---:|---:|---:|---:|---:|---|"]
    for row in result["training"]:
        if row.get("error"):
            lines.append(f"| {row['trainer']} | {_cell(row['compiled'])} | - | **no** | - | - | - | - | - | - | - | "
                         f"{row['error'].replace('|', '/')} |")
            continue
        lines.append(
            f"| {row['trainer']} | {'yes' if row['compiled'] else 'no'} | {row['parameters'] / 1e6:.1f} | "
            f"{_cell(row['finite'])} | {row['first_loss']:.3f} -> {row['last_loss']:.3f} | "
            f"{_cell(row['grad_scale'], '{:.0f}')} | {row['step_ms']:.1f} | {_cell(row['step_ratio'])} | "
            f"{_cell(row['peak_allocated_gib'])} | {_cell(row['peak_reserved_gib'])} | "
            f"{_cell(row['mfu'], '{:.1%}')} | |")
    lines += ["", "## The planner's memory targets", "",
              "The 2d batch nnU-Net's planner gives its network, and `nnUNetv2_resunet_plan` gives ResUnet v1.0, for "
              "each target at this patch, trained at that batch: the real peak against the target.", "",
              "| target (GB) | trainer | planned batch | peak alloc. (GiB) | peak reserved (GiB) | fits |",
              "|---:|---|---:|---:|---:|---|"]
    for row in result["planner"]:
        lines.append(f"| {row['target_gb']:g} | {row['trainer']} | {row['planned_batch']} | "
                     f"{_cell(row['peak_allocated_gib'])} | {_cell(row['peak_reserved_gib'])} | "
                     f"{_cell(row['fits']) if not row['error'] else row['error']} |")
    prediction = result["prediction"]
    lines += ["", "## Prediction", ""]
    if prediction.get("error"):
        lines.append(f"**Failed:** {prediction['error']}")
    else:
        lines.append(f"nnU-Net's predictor with ResUnet v1.0 on one case of {prediction['case_shape']}, "
                     f"{prediction['devices']}: {prediction['label_agreement']:.4%} of voxels get the same label; "
                     f"largest probability difference {prediction['max_probability_difference']:.2e}.")
    aims = result["aims"]
    lines += ["", "## Aims", "",
              f"- ResUnet v1.0's step at most {AIM_STEP_RATIO:g}x nnU-Net's 2d network on the same plan: "
              f"{_cell(aims['resunet_step_ratio'])}x here.",
              f"- At least {AIM_MFU:.0%} MFU on an H100 (16-bit tensor cores): {_cell(aims['resunet_mfu'], '{:.1%}')} "
              f"here."]
    return "\n".join(lines) + "\n"


def device_folder(environment: dict) -> str:
    """A folder name for the device, e.g. ``NVIDIA-H100-80GB-HBM3``."""
    return re.sub(r"[^A-Za-z0-9]+", "-", environment["device"].split(",")[0]).strip("-")


def main(argv: Sequence[str] | None = None) -> int:
    """Console entry point ``nnUNetv2_resunet_check``; returns the exit status (1: something is unhealthy)."""
    return run_command(_check, argv, "nnUNetv2_resunet_check")


def _check(argv: list[str]) -> int:
    args = parse_args(argv)
    if args.output_folder:
        output_folder(args.output_folder, "-o")
    device = torch.device(args.device)
    trainers = list(dict.fromkeys(args.tr))
    compiled = [t for t in args.compiled if t == NNUNET_DEFAULT or t in trainers]
    # One piece of work per trainer and mode, then the planner and the prediction (the bar counts those started).
    total = 1 + len([t for t in trainers if t != NNUNET_DEFAULT]) + len(compiled) + 2
    with tqdm(total=total, desc="check", unit="run", file=sys.stderr) as bar:
        def progress(label: str) -> None:
            bar.set_postfix_str(label)
            bar.update(1)

        result = run_check(device, trainers, compiled, args.patch_size, args.batch_size, args.num_classes,
                           args.warmup, args.steps, args.memory_targets, args.compile_backend, progress)
    report = format_report(result)
    folder = Path(args.output_folder or Path("results") / "gpu" / device_folder(result["environment"]))
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "check.json").write_text(json.dumps(result, indent=2) + "\n", encoding="utf-8")
    (folder / "check.md").write_text(report, encoding="utf-8")
    print(report)
    print(f"wrote {folder / 'check.json'} and {folder / 'check.md'}")
    return 0 if result["healthy"] else 1
