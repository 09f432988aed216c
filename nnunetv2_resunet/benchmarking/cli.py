"""``nnUNetv2_resunet_benchmark``: the command line, the loop over trainers, and the output files."""

from __future__ import annotations

import argparse
import os
import sys
import time
from collections.abc import Sequence

import torch

from nnunetv2_resunet.benchmarking import tables
from nnunetv2_resunet.benchmarking.benchmark import TrainerSpec, add_ratios, benchmark_trainer, describe_device
from nnunetv2_resunet.benchmarking.measure import DTYPES, effective_dtype_name
from nnunetv2_resunet.command_line import (
    UserError,
    add_option,
    command_parser,
    output_folder,
    run_command,
    torch_device,
    trainer_class,
)
from nnunetv2_resunet.experiment_planning.synthetic_plans import dataset_plans, preset_batch_size, synthetic_plans


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    parser = command_parser(
        "nnUNetv2_resunet_benchmark",
        "Parameters, FLOPs, training-step and inference time, memory and MFU of nnU-Net trainers' "
        "networks, each as a ratio to the first trainer. Plans come from a dataset (-d -c [-p]) or are "
        "synthetic 2d plans for -patch_size and -batch_size.")
    add_option(parser, "-tr", old=["--trainers"], nargs="+",
               default=["nnUNetTrainer", "nnUNetTrainer:nnUNetResEncUNetMPlans", "nnUNetTrainer:nnUNetResEncUNetLPlans",
                        "ResUnetTrainer_v0_1", "ResUnetTrainer"],
               help="Trainer names, optionally TRAINER:PLANS_IDENTIFIER to use other plans for one of them "
                    "(e.g. nnUNetTrainer:nnUNetResEncUNetMPlans). The first is the reference for ratios.")
    add_option(parser, "-d", old=["--dataset"],
               help="Dataset name or id whose plans to use (needs nnUNet_preprocessed).")
    add_option(parser, "-c", old=["--configuration"], default="2d", help="Configuration in the plans (default 2d).")
    add_option(parser, "-p", old=["--plans"], default="nnUNetPlans", help="Plans identifier (default nnUNetPlans).")
    add_option(parser, "-patch_size", old=["--patch-size"], nargs=2, type=int, metavar=("H", "W"),
               help="Synthetic 2d plans with this patch (without -d; default 512 512).")
    add_option(parser, "-batch_size", old=["--batch-size"], type=int,
               help="Batch size for every trainer (default: the plans'; for synthetic plans 12, nnU-Net's 2d "
                    "reference, and for nnU-Net's ResEnc presets the batch their planner gives the patch).")
    add_option(parser, "-num_classes", old=["--num-classes"], type=int, default=14,
               help="Outputs of synthetic plans, background included (default 14, as Synapse).")
    add_option(parser, "-input_channels", old=["--input-channels"], type=int, default=1,
               help="Input channels of synthetic plans.")
    add_option(parser, "-device", old=["--device"], default="cuda" if torch.cuda.is_available() else "cpu",
               help="cuda, cuda:N or cpu (default: cuda if available).")
    add_option(parser, "-dtype", old=["--dtype"], choices=sorted(DTYPES), default="auto",
               help="auto: nnU-Net's train_step (autocast fp16 + GradScaler on CUDA, fp32 on CPU); "
                    "bf16/fp16/fp32: the same step under autocast with that dtype.")
    parser.add_argument("--compile", action="store_true", help="torch.compile the network (and the Dice loss, as "
                        "nnU-Net does with nnUNet_compile).")
    add_option(parser, "-channels_last", old=["--channels-last"], choices=("auto", "on", "off"), default="auto",
               help="Network and inputs in channels_last: auto does what each trainer does on the device "
                    "(ResUnet trainers: on with CUDA; nnU-Net's: off), on/off force it for all.")
    add_option(parser, "-warmup", old=["--warmup"], type=int, default=3,
               help="Untimed steps before timing (default 3).")
    add_option(parser, "-steps", old=["--steps"], type=int, default=10,
               help="Timed steps; the median is reported (default 10).")
    add_option(parser, "-peak_tflops", old=["--peak-tflops"], type=float,
               help="Device peak in TFLOP/s for MFU (default: a table of known GPUs; none on CPU).")
    add_option(parser, "-threads", old=["--threads"], type=int, help="CPU threads for torch (default: torch's).")
    add_option(parser, "--cpu_time", old=["--cpu-time"], action="store_true",
               help="On CPU, time with the process's CPU time instead of wall time (robust on a shared "
                    "machine; with N threads it counts N cores' time).")
    add_option(parser, "-o", old=["--output-dir"], default=os.path.join("results", "benchmarks"),
               help="Where the .json and .md go (default results/benchmarks).")
    add_option(parser, "-name", old=["--name"], help="Base name of the output files (default: date, device and plans).")
    args = parser.parse_args(argv)
    if args.dataset is not None and args.patch_size is not None:
        parser.error("give either -d (the dataset's plans) or -patch_size (synthetic plans), not both")
    if args.warmup < 0 or args.steps < 1:
        parser.error(f"need -warmup >= 0 and -steps >= 1, got {args.warmup} and {args.steps}")
    try:
        torch_device(args.device)
    except UserError as error:
        parser.error(str(error))
    return args


def run(args: argparse.Namespace) -> tuple[dict, list[dict]]:
    """Benchmark every trainer of ``args``; returns the run's metadata and the results with ratios."""
    if args.threads:
        torch.set_num_threads(args.threads)
    device = torch.device(args.device)
    if device.type == "cuda":
        # As nnU-Net's run_training does.
        torch.backends.cudnn.deterministic = False
        torch.backends.cudnn.benchmark = True
    specs = [TrainerSpec.parse(t) for t in args.trainers]
    for spec in specs:  # before any work: a misspelled last trainer should not cost the first ones' time
        trainer_class(spec.trainer_name)
    synthetic = args.dataset is None
    patch_size = args.patch_size or [512, 512]
    results = []
    for spec in specs:
        plans_identifier = spec.plans_identifier or args.plans
        if synthetic:
            batch_size = args.batch_size or preset_batch_size(plans_identifier, patch_size, args.input_channels,
                                                              args.num_classes) or 12
            plans, dataset_json = synthetic_plans(patch_size, batch_size, plans_identifier, args.input_channels,
                                                  args.num_classes)
            configuration = "2d"
        else:
            plans, dataset_json = dataset_plans(args.dataset, plans_identifier)
            configuration = args.configuration
            if configuration not in plans["configurations"]:
                raise UserError(f"-c {configuration}: the plans {plans_identifier} of {args.dataset} have no such "
                                f"configuration; they have {', '.join(plans['configurations'])}")
        print(f"benchmarking {spec.label} ...", file=sys.stderr, flush=True)
        channels_last = {"auto": None, "on": True, "off": False}[args.channels_last]
        results.append(benchmark_trainer(spec, plans, dataset_json, configuration, device, args.batch_size,
                                         args.dtype, args.compile, channels_last, args.warmup, args.steps,
                                         args.peak_tflops, args.cpu_time))
    meta = {
        "device": describe_device(device),
        "device_type": device.type,
        "torch": torch.__version__,
        "dtype": effective_dtype_name(device, args.dtype),
        "nnunet_default_step": args.dtype == "auto",
        "compile": args.compile,
        "clock": "CUDA events" if device.type == "cuda" else ("process CPU time" if args.cpu_time else "wall"),
        "channels_last": args.channels_last,
        "plans": "synthetic 2d" if synthetic else f"{args.dataset} {args.plans} {args.configuration}",
        "warmup": args.warmup,
        "steps": args.steps,
        "date": time.strftime("%Y-%m-%d %H:%M:%S"),
        "peak_memory_measures": tables.PEAK_MEMORY_NOTE[device.type],
    }
    return meta, add_ratios(results)


def main(argv: Sequence[str] | None = None) -> int:
    """Console entry point ``nnUNetv2_resunet_benchmark``; returns the exit status."""
    def body(arguments: list[str]) -> None:
        args = parse_args(arguments)
        output_folder(args.output_dir, "-o")
        meta, results = run(args)
        print(tables.format_table(meta, results))
        paths = tables.write_results(meta, results, args.output_dir, args.name)
        print("\n".join(f"wrote {p}" for p in paths))

    return run_command(body, argv, "nnUNetv2_resunet_benchmark")
