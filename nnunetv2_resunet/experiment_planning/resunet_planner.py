"""Plan nnU-Net's 2d configuration for ResUnet's memory: ``nnUNetv2_resunet_plan`` and its planner class.

nnU-Net sizes a configuration's patch and batch for its own PlainConvUNet: it compares the network's
``compute_conv_feature_map_size(patch)`` with ``UNet_reference_val_2d`` (85e6 elements per sample at batch 12 for
8 GB) scaled by the GPU memory target. ResUnet v1.0 (no stem max-pool, wide decoder stages) has about 1.8x the
feature maps of that PlainConvUNet at 512 x 512, so nnU-Net's default 2d plan overfills the memory it was planned
for. :class:`nnUNetResUnetPlanner` is nnU-Net's ``ExperimentPlanner`` with one change, for 2d only: the estimate is
ResUnet's own ``compute_conv_feature_map_size``, compared with a reference calibrated for ResUnet
(:data:`RESUNET_REFERENCE_VAL_2D`). Everything else (spacing, patch aspect and search, batch size >= 2, at most 5% of
the dataset per batch, normalisation, 3d configurations) is nnU-Net's.

Calibration: 85e6 is nnU-Net's empirical budget for 8 GB in PlainConvUNet feature-map elements. What fills GPU memory
is mostly the activations saved for backward, and per feature-map element the two networks save different amounts
(PlainConvUNet: conv + InstanceNorm + LeakyReLU per conv; ResUnet: conv + BatchNorm + ReLU and residual adds). We
measure those bytes per element for both (:func:`bytes_per_feature_map_element`, device-independent, fp32) and
scale: ``RESUNET_REFERENCE_VAL_2D = 85e6 * b_PlainConvUNet / b_ResUnet`` = 85e6 * 7.56 / 7.10 ~= 90e6. It assumes
that the rest (weights, gradients, momentum, cuDNN workspace, allocator slack) is a similar share for both, and it
has not been checked against a GPU's measured peak yet; ``nnUNetv2_resunet_benchmark`` on a GPU reports that peak.
Under fp16/bf16 autocast ResUnet saves relatively fewer bytes per element than PlainConvUNet (CPU autocast: 5.45 vs
6.87), so the fp32 calibration is the more cautious one.
"""

from __future__ import annotations

import argparse
from collections.abc import Sequence

import torch
from nnunetv2.experiment_planning.experiment_planners.default_experiment_planner import ExperimentPlanner

from nnunetv2_resunet.network import ResUnet, ResUnetConfig
from nnunetv2_resunet.training import ResUnetTrainer

PLANS_IDENTIFIER = "nnUNetResUnetPlans"
NNUNET_REFERENCE_VAL_2D = 85_000_000  # ExperimentPlanner.UNet_reference_val_2d (nnunetv2 2.8)
RESUNET_REFERENCE_VAL_2D = 90_000_000  # NNUNET_REFERENCE_VAL_2D * 7.56 / 7.10, see the module docstring


def resunet_feature_map_size(config: ResUnetConfig, patch_size: Sequence[int], input_channels: int,
                             num_classes: int) -> int:
    """ResUnet's ``compute_conv_feature_map_size`` for one sample, built on the meta device (no memory, instant)."""
    with torch.device("meta"):
        network = ResUnet(input_channels, num_classes, config, deep_supervision=True)
    return network.compute_conv_feature_map_size(list(patch_size))


class nnUNetResUnetPlanner(ExperimentPlanner):
    """nnU-Net's default planner whose 2d patch and batch size fit the GPU memory target for ResUnet v1.0.

    Subclasses may plan for another ladder step by naming its config in ``resunet_config``.
    """

    resunet_config: ResUnetConfig = ResUnetTrainer.resunet_config

    def __init__(self, dataset_name_or_id: str | int, gpu_memory_target_in_gb: float = 8,
                 preprocessor_name: str = "DefaultPreprocessor", plans_name: str = PLANS_IDENTIFIER,
                 overwrite_target_spacing: Sequence[float] | None = None, suppress_transpose: bool = False):
        if gpu_memory_target_in_gb <= 0:
            raise ValueError(f"the GPU memory target must be positive, got {gpu_memory_target_in_gb} GB")
        super().__init__(dataset_name_or_id, gpu_memory_target_in_gb, preprocessor_name, plans_name,
                         overwrite_target_spacing, suppress_transpose)
        # Only 2d changes: its reference is in ResUnet's feature-map units. 3d stays nnU-Net's PlainConvUNet plan.
        self.UNet_reference_val_2d = RESUNET_REFERENCE_VAL_2D

    def static_estimate_VRAM_usage(self, patch_size, input_channels, output_channels, arch_class_name, arch_kwargs,
                                   arch_kwargs_req_import):
        """ResUnet's feature-map size for 2d patches; nnU-Net's PlainConvUNet estimate for 3d. (An instance method
        here: nnU-Net calls it through ``self``, and the 2d estimate needs ``resunet_config``.)"""
        if len(patch_size) != 2:
            return ExperimentPlanner.static_estimate_VRAM_usage(patch_size, input_channels, output_channels,
                                                                arch_class_name, arch_kwargs, arch_kwargs_req_import)
        return resunet_feature_map_size(self.resunet_config, patch_size, input_channels, output_channels)

    def generate_data_identifier(self, configuration_name: str) -> str:
        """2d and 3d_fullres are preprocessed exactly as nnU-Net's default plans (same spacing, normalisation), so
        share their data, as nnU-Net's ResEnc planners do; 3d_lowres depends on the patch search and gets its own."""
        if configuration_name in ("2d", "3d_fullres"):
            return "nnUNetPlans_" + configuration_name
        return self.plans_identifier + "_" + configuration_name


# ----------------------------------------------------------------------------------------------------- calibration


def bytes_per_feature_map_element(network: torch.nn.Module, patch_size: Sequence[int],
                                  input_channels: int = 1) -> float:
    """Bytes saved for backward by one fp32 forward, per element of ``compute_conv_feature_map_size``."""
    from nnunetv2_resunet.benchmark import saved_activation_bytes

    data = torch.randn((1, input_channels, *patch_size))
    return saved_activation_bytes(network, data) / int(network.compute_conv_feature_map_size(list(patch_size)))


def calibrate_reference(patch_size: Sequence[int] = (256, 256), num_classes: int = 14,
                        config: ResUnetConfig = ResUnetTrainer.resunet_config) -> float:
    """The 2d reference for ``config`` that matches nnU-Net's PlainConvUNet reference in saved-activation bytes."""
    from nnunetv2.utilities.get_network_from_plans import get_network_from_plans

    from nnunetv2_resunet.benchmark import synthetic_plans

    plans, _ = synthetic_plans(patch_size, 12, num_classes=num_classes)
    architecture = plans["configurations"]["2d"]["architecture"]
    plain = get_network_from_plans(architecture["network_class_name"], architecture["arch_kwargs"],
                                   architecture["_kw_requires_import"], 1, num_classes, deep_supervision=True)
    resunet = ResUnet(1, num_classes, config, deep_supervision=True)
    return NNUNET_REFERENCE_VAL_2D * (bytes_per_feature_map_element(plain, patch_size)
                                      / bytes_per_feature_map_element(resunet, patch_size))


# ------------------------------------------------------------------------------------------------------------ CLI


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    from nnunetv2.configuration import default_num_processes

    parser = argparse.ArgumentParser(
        prog="nnUNetv2_resunet_plan",
        description=f"Extract the fingerprint if missing, plan with nnU-Net's rules and ResUnet v1.0's memory estimate "
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
    return parser.parse_args(argv)


def describe_2d(plans: dict) -> str:
    config = plans["configurations"]["2d"]
    return f"patch {list(config['patch_size'])}, batch {config['batch_size']}"


def main(argv: Sequence[str] | None = None) -> None:
    from batchgenerators.utilities.file_and_folder_operations import isfile, join, load_json
    from nnunetv2.experiment_planning.plan_and_preprocess_api import (
        extract_fingerprints,
        plan_experiment_dataset,
        preprocess_dataset,
    )
    from nnunetv2.paths import nnUNet_preprocessed
    from nnunetv2.utilities.dataset_name_id_conversion import convert_id_to_dataset_name

    args = parse_args(argv)
    if args.gpu_memory_target <= 0:
        raise SystemExit(f"-gpu_memory_target must be positive, got {args.gpu_memory_target}")
    extract_fingerprints(args.d, num_processes=args.npfp, check_dataset_integrity=args.verify_dataset_integrity,
                         clean=args.clean, verbose=args.verbose)
    for dataset_id in args.d:
        plans, plans_identifier = plan_experiment_dataset(dataset_id, nnUNetResUnetPlanner, args.gpu_memory_target,
                                                          overwrite_plans_name=args.overwrite_plans_name)
        dataset_name = convert_id_to_dataset_name(dataset_id)
        default_plans_file = join(nnUNet_preprocessed.require(), dataset_name, "nnUNetPlans.json")
        print(f"\n{dataset_name}: {plans_identifier} 2d for ResUnet v1.0 at {args.gpu_memory_target:g} GB: "
              f"{describe_2d(plans)}")
        if isfile(default_plans_file):
            default = load_json(default_plans_file)
            if "2d" in default["configurations"]:
                print(f"{dataset_name}: nnUNetPlans 2d (nnU-Net's PlainConvUNet at its target): {describe_2d(default)}")
        if args.no_pp:
            print(f"Preprocess with: nnUNetv2_preprocess -d {dataset_id} -plans_name {plans_identifier} -c 2d")
        else:
            preprocess_dataset(dataset_id, plans_identifier, configurations=("2d",), num_processes=[args.np],
                               verbose=args.verbose)
        print(f"Train with: nnUNetv2_train {dataset_id} 2d FOLD -p {plans_identifier} -tr ResUnetTrainer")
