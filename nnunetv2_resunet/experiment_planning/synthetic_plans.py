"""Plans without a dataset on disk (a patch and batch size given; for nnU-Net's ResEnc presets, the batch their
planners would give), and a planned dataset's plans read from disk.

The benchmark times trainers on these, and the planner's calibration measures nnU-Net's PlainConvUNet from them.
"""

from __future__ import annotations

from collections.abc import Sequence


def synthetic_plans(patch_size: Sequence[int], batch_size: int, plans_identifier: str = "nnUNetPlans",
                    num_input_channels: int = 1, num_classes: int = 14) -> tuple[dict, dict]:
    """Minimal 2d plans and dataset.json that nnU-Net's PlansManager and trainers accept, with no dataset on disk.

    The network topology is what nnU-Net's planner derives for this patch at isotropic spacing
    (``get_pool_and_conv_props``): a PlainConvUNet for ``nnUNetPlans``, a ResidualEncoderUNet with the ResEnc
    presets' blocks for any ``nnUNetResEncUNet*Plans`` (M, L and XL share the architecture; they differ in patch and
    batch size only, which are given here).

    Returns:
        ``(plans, dataset_json)``.
    """
    from nnunetv2.experiment_planning.experiment_planners.network_topology import get_pool_and_conv_props

    if len(patch_size) != 2 or min(patch_size) < 8:
        raise ValueError(f"synthetic plans are 2d: give two patch edges of at least 8, got {list(patch_size)}")
    if batch_size < 1:
        raise ValueError(f"batch size must be positive, got {batch_size}")
    _, pool_op_kernel_sizes, conv_kernel_sizes, padded_patch, _ = get_pool_and_conv_props(
        [1.0, 1.0], list(patch_size), 4, 999999)
    if [int(p) for p in padded_patch] != list(patch_size):
        raise ValueError(f"patch {list(patch_size)} is not a multiple of nnU-Net's stride for it; nnU-Net would plan "
                         f"{[int(p) for p in padded_patch]}")
    n_stages = len(pool_op_kernel_sizes)
    arch_kwargs = {
        "n_stages": n_stages,
        "features_per_stage": [min(512, 32 * 2 ** i) for i in range(n_stages)],
        "conv_op": "torch.nn.modules.conv.Conv2d",
        "kernel_sizes": conv_kernel_sizes,
        "strides": pool_op_kernel_sizes,
        "conv_bias": True,
        "norm_op": "torch.nn.modules.instancenorm.InstanceNorm2d",
        "norm_op_kwargs": {"eps": 1e-5, "affine": True},
        "dropout_op": None,
        "dropout_op_kwargs": None,
        "nonlin": "torch.nn.LeakyReLU",
        "nonlin_kwargs": {"inplace": True},
    }
    if plans_identifier.startswith("nnUNetResEncUNet"):
        network_class = "dynamic_network_architectures.architectures.unet.ResidualEncoderUNet"
        arch_kwargs["n_blocks_per_stage"] = [1, 3, 4, 6, 6, 6, 6, 6, 6, 6, 6, 6, 6][:n_stages]
        arch_kwargs["n_conv_per_stage_decoder"] = [1] * (n_stages - 1)
    else:
        network_class = "dynamic_network_architectures.architectures.unet.PlainConvUNet"
        arch_kwargs["n_conv_per_stage"] = [2] * n_stages
        arch_kwargs["n_conv_per_stage_decoder"] = [2] * (n_stages - 1)
    configuration = {
        "data_identifier": f"{plans_identifier}_2d",
        "preprocessor_name": "DefaultPreprocessor",
        "batch_size": batch_size,
        "patch_size": list(patch_size),
        "median_image_size_in_voxels": list(patch_size),
        "spacing": [1.0, 1.0],
        "normalization_schemes": ["ZScoreNormalization"] * num_input_channels,
        "use_mask_for_norm": [False] * num_input_channels,
        "resampling_fn_data": "resample_data_or_seg_to_shape",
        "resampling_fn_seg": "resample_data_or_seg_to_shape",
        "resampling_fn_data_kwargs": {"is_seg": False, "order": 3, "order_z": 0, "force_separate_z": None},
        "resampling_fn_seg_kwargs": {"is_seg": True, "order": 1, "order_z": 0, "force_separate_z": None},
        "resampling_fn_probabilities": "resample_data_or_seg_to_shape",
        "resampling_fn_probabilities_kwargs": {"is_seg": False, "order": 1, "order_z": 0, "force_separate_z": None},
        "architecture": {"network_class_name": network_class, "arch_kwargs": arch_kwargs,
                         "_kw_requires_import": ["conv_op", "norm_op", "dropout_op", "nonlin"]},
        "batch_dice": True,
    }
    plans = {
        "dataset_name": "Dataset999_Synthetic",
        "plans_name": plans_identifier,
        "original_median_spacing_after_transp": [1.0, 1.0, 1.0],
        "original_median_shape_after_transp": [1, *patch_size],
        "image_reader_writer": "SimpleITKIO",
        "transpose_forward": [0, 1, 2],
        "transpose_backward": [0, 1, 2],
        "configurations": {"2d": configuration},
        "experiment_planner_used": "synthetic (nnunetv2_resunet.experiment_planning.synthetic_plans)",
        "label_manager": "LabelManager",
        "foreground_intensity_properties_per_channel": {
            str(c): {"max": 1.0, "mean": 0.0, "median": 0.0, "min": -1.0, "percentile_00_5": -1.0,
                     "percentile_99_5": 1.0, "std": 1.0} for c in range(num_input_channels)},
    }
    dataset_json = {
        "channel_names": {str(c): "CT" for c in range(num_input_channels)},
        "labels": {"background": 0, **{f"class_{i}": i for i in range(1, num_classes)}},
        "numTraining": 1000,
        "file_ending": ".nii.gz",
    }
    return plans, dataset_json


# nnU-Net 2.8's Residual Encoder presets (nnUNetPlannerResEncM/L/XL): the 2d memory reference (feature-map elements
# per sample at batch REFERENCE_BATCH_2D) at each preset's GPU memory target (8, 24, 40 GB). A test reads them from
# nnU-Net's planners.
RESENC_REFERENCE_VAL_2D: dict[str, float] = {"nnUNetResEncUNetMPlans": 135e6, "nnUNetResEncUNetLPlans": 380e6,
                                             "nnUNetResEncUNetXLPlans": 560e6}
REFERENCE_BATCH_2D = 12  # nnU-Net's UNet_reference_val_corresp_bs_2d
MIN_BATCH = 2  # nnU-Net's UNet_min_batch_size


def preset_batch_size(plans_identifier: str, patch_size: Sequence[int], num_input_channels: int = 1,
                      num_classes: int = 14) -> int | None:
    """The 2d batch size nnU-Net's ResEnc preset plans for ``patch_size``, by its planner's rule (reference over the
    network's ``compute_conv_feature_map_size``, times 12, at least 2; the presets have no dataset-size cap), or None
    for plans that are not a preset. (Where the estimate exceeds the reference, nnU-Net would shrink the patch
    instead; the patch is given here, so the batch is then 2.)"""
    from nnunetv2.utilities.get_network_from_plans import get_network_from_plans

    if plans_identifier not in RESENC_REFERENCE_VAL_2D:
        return None
    plans, _ = synthetic_plans(patch_size, MIN_BATCH, plans_identifier, num_input_channels, num_classes)
    architecture = plans["configurations"]["2d"]["architecture"]
    network = get_network_from_plans(architecture["network_class_name"], architecture["arch_kwargs"],
                                     architecture["_kw_requires_import"], num_input_channels, num_classes,
                                     allow_init=False)
    estimate = network.compute_conv_feature_map_size(list(patch_size))
    return max(round(RESENC_REFERENCE_VAL_2D[plans_identifier] / estimate * REFERENCE_BATCH_2D), MIN_BATCH)


def dataset_plans(dataset: str, plans_identifier: str) -> tuple[dict, dict]:
    """Plans and dataset.json of a planned dataset in ``nnUNet_preprocessed``.

    Raises:
        UserError: nnUNet_preprocessed is unset, the dataset unknown, or its plans file missing.
    """
    from batchgenerators.utilities.file_and_folder_operations import isfile, join, load_json

    from nnunetv2_resunet.command_line import UserError, dataset_name, existing_file, nnunet_folder

    folder = join(nnunet_folder("nnUNet_preprocessed"), dataset_name(dataset))
    plans_file = join(folder, plans_identifier + ".json")
    if not isfile(plans_file):
        raise UserError(f"-p {plans_identifier}: no plans {plans_file}; plan the dataset first "
                        f"(nnUNetv2_plan_and_preprocess or nnUNetv2_resunet_plan), or give its plans identifier")
    existing_file(plans_file, "plans file", "plan the dataset again")
    return load_json(plans_file), load_json(existing_file(join(folder, "dataset.json"), "dataset.json",
                                                          "plan and preprocess the dataset again"))
