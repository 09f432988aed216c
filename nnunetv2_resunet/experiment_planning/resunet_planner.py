"""Plan nnU-Net's 2d configuration for ResUnet's memory: the planner class behind ``nnUNetv2_resunet_plan``.

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
measure those bytes per element for both (``nnunetv2_resunet.benchmarking.calibration``, device-independent, fp32)
and scale: ``RESUNET_REFERENCE_VAL_2D = 85e6 * b_PlainConvUNet / b_ResUnet`` = 85e6 * 7.56 / 7.10 ~= 90e6. It assumes
that the rest (weights, gradients, momentum, cuDNN workspace, allocator slack) is a similar share for both, and it
has not been checked against a GPU's measured peak yet; ``nnUNetv2_resunet_benchmark`` on a GPU reports that peak.
Under fp16/bf16 autocast ResUnet saves relatively fewer bytes per element than PlainConvUNet (CPU autocast: 5.45 vs
6.87), so the fp32 calibration is the more cautious one.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from nnunetv2.experiment_planning.experiment_planners.default_experiment_planner import ExperimentPlanner

from nnunetv2_resunet.architectures.configs.ladder import LADDER
from nnunetv2_resunet.architectures.resunet import ResUnet, ResUnetConfig

PLANS_IDENTIFIER = "nnUNetResUnetPlans"
NNUNET_REFERENCE_VAL_2D = 85_000_000  # ExperimentPlanner.UNet_reference_val_2d (nnunetv2 2.8)
RESUNET_REFERENCE_VAL_2D = 90_000_000  # NNUNET_REFERENCE_VAL_2D * 7.56 / 7.10, see the module docstring


def resunet_feature_map_size(config: ResUnetConfig, patch_size: Sequence[int], input_channels: int,
                             num_classes: int) -> int:
    """ResUnet's ``compute_conv_feature_map_size`` for one sample, built on the meta device (no memory, instant)."""
    with torch.device("meta"):
        network = ResUnet(input_channels, num_classes, config, deep_supervision=True)
    return network.compute_conv_feature_map_size(list(patch_size))


def planned_2d_batch_size(feature_map_size: int, reference_val_2d: float, gpu_memory_target_in_gb: float) -> int:
    """The 2d batch size nnU-Net's planner gives a patch whose network has ``feature_map_size`` feature-map elements
    per sample, before its cap at 5 % of the dataset (``ExperimentPlanner.get_plans_for_configuration``: the
    reference scaled by the target over 8 GB, times the reference batch of 12, at least 2). With nnU-Net's reference
    and PlainConvUNet's estimate it is nnU-Net's plan; with :data:`RESUNET_REFERENCE_VAL_2D` and ResUnet's, ours."""
    reference = reference_val_2d * gpu_memory_target_in_gb / 8
    return max(round(reference / feature_map_size * 12), 2)


class nnUNetResUnetPlanner(ExperimentPlanner):
    """nnU-Net's default planner whose 2d patch and batch size fit the GPU memory target for ResUnet v1.0.

    Subclasses may plan for another ladder step by naming its config in ``resunet_config``.
    """

    resunet_config: ResUnetConfig = LADDER["v1_0"]  # ResUnetTrainer's network

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
