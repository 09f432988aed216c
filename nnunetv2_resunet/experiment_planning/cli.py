"""``nnUNetv2_resunet_plan``: fingerprint, plan with :class:`~.resunet_planner.nnUNetResUnetPlanner`, preprocess 2d."""

from __future__ import annotations

import argparse
import os
from collections.abc import Sequence

from nnunetv2_resunet.command_line import (
    command_parser,
    dataset_name,
    existing_file,
    existing_folder,
    nnunet_folder,
    run_command,
)
from nnunetv2_resunet.experiment_planning.resunet_planner import PLANS_IDENTIFIER, nnUNetResUnetPlanner


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    from nnunetv2.configuration import default_num_processes

    parser = command_parser(
        "nnUNetv2_resunet_plan",
        f"Extract the fingerprint if missing, plan with nnU-Net's rules and ResUnet v1.0's memory estimate "
                    f"for the 2d configuration (plans identifier {PLANS_IDENTIFIER}), and preprocess 2d. Then train "
                    f"with: nnUNetv2_train DATASET 2d FOLD -p {PLANS_IDENTIFIER} -tr ResUnetTrainer")
    parser.add_argument("-d", nargs="+", type=int, required=True, help="Dataset id(s).")
    parser.add_argument("-gpu_memory_target", type=float, default=8,
                        help="GPU memory the 2d plan should fit, in GB (default 8, nnU-Net's). The RTX 3090 of the "
                             "thesis: 24.")
    parser.add_argument("-np", type=int, default=default_num_processes,
                        help=f"Processes for 2d preprocessing (default {default_num_processes}).")
    parser.add_argument("-npfp", type=int, default=default_num_processes,
                        help=f"Processes for fingerprint extraction (default {default_num_processes}).")
    parser.add_argument("-overwrite_plans_name", default=PLANS_IDENTIFIER,
                        help=f"Plans identifier to write (default {PLANS_IDENTIFIER}); use another when planning "
                             f"for several memory targets.")
    parser.add_argument("--no_pp", action="store_true", help="Plan only; print the preprocessing command.")
    parser.add_argument("--verify_dataset_integrity", action="store_true", help="As in nnUNetv2_plan_and_preprocess.")
    parser.add_argument("--clean", action="store_true", help="Re-extract the fingerprint even if it exists.")
    parser.add_argument("--verbose", action="store_true")
    args = parser.parse_args(argv)
    if args.gpu_memory_target <= 0:
        parser.error(f"-gpu_memory_target must be positive, got {args.gpu_memory_target}")
    return args


def check_datasets(dataset_ids: Sequence[int]) -> None:
    """Before nnU-Net starts: its folders are set, and each dataset is in nnUNet_raw with a dataset.json."""
    raw = nnunet_folder("nnUNet_raw")
    nnunet_folder("nnUNet_preprocessed", must_exist=False)
    for dataset_id in dataset_ids:
        folder = os.path.join(raw, dataset_name(dataset_id))
        existing_folder(folder, f"-d {dataset_id}:")
        existing_file(os.path.join(folder, "dataset.json"), f"-d {dataset_id}:",
                      "every nnU-Net dataset needs one; our converters write it")


def describe_2d(plans: dict) -> str:
    config = plans["configurations"]["2d"]
    return f"patch {list(config['patch_size'])}, batch {config['batch_size']}"


def main(argv: Sequence[str] | None = None) -> int:
    """Console entry point ``nnUNetv2_resunet_plan``; returns the exit status."""
    return run_command(_plan, argv, "nnUNetv2_resunet_plan")


def _plan(argv: list[str]) -> None:
    from batchgenerators.utilities.file_and_folder_operations import isfile, join, load_json
    from nnunetv2.experiment_planning.plan_and_preprocess_api import (
        extract_fingerprints,
        plan_experiment_dataset,
        preprocess_dataset,
    )

    args = parse_args(argv)
    check_datasets(args.d)
    extract_fingerprints(args.d, num_processes=args.npfp, check_dataset_integrity=args.verify_dataset_integrity,
                         clean=args.clean, verbose=args.verbose)
    for dataset_id in args.d:
        plans, plans_identifier = plan_experiment_dataset(dataset_id, nnUNetResUnetPlanner, args.gpu_memory_target,
                                                          overwrite_plans_name=args.overwrite_plans_name)
        name = dataset_name(dataset_id)
        default_plans_file = join(nnunet_folder("nnUNet_preprocessed"), name, "nnUNetPlans.json")
        print(f"\n{name}: {plans_identifier} 2d for ResUnet v1.0 at {args.gpu_memory_target:g} GB: "
              f"{describe_2d(plans)}")
        if isfile(default_plans_file):
            default = load_json(default_plans_file)
            if "2d" in default["configurations"]:
                print(f"{name}: nnUNetPlans 2d (nnU-Net's PlainConvUNet at its target): {describe_2d(default)}")
        if args.no_pp:
            print(f"Preprocess with: nnUNetv2_preprocess -d {dataset_id} -plans_name {plans_identifier} -c 2d")
        else:
            preprocess_dataset(dataset_id, plans_identifier, configurations=("2d",), num_processes=[args.np],
                               verbose=args.verbose)
        print(f"Train with: nnUNetv2_train {dataset_id} 2d FOLD -p {plans_identifier} -tr ResUnetTrainer")
