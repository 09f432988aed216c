"""``nnUNetv2_resunet_init_weights``: a trainer's network for a plan, its encoder from published weights, as a file
for ``nnUNetv2_train ... -pretrained_weights``.

The published file is read in the format its authors released (torchvision's ``resnet34-b627a593.pth``, Google's
``R50+ViT-B_16.npz``, Microsoft's ``swin_tiny_patch4_window7_224.pth``, ``pvt_v2_b2.pth``; see
``nnunetv2_resunet.architectures.pretrained``). The network is the one the trainer builds for the plan
(``build_network_architecture`` with the plan's patch size, the dataset's input channels and classes), initialised
as the trainer initialises it; then every tensor of the published file lands in the encoder (or, for Swin-Unet, in
the decoder's blocks too) or is reported as unused with the reason. The output is what nnU-Net's
``load_pretrained_weights`` reads (``{"network_weights": ...}``, every key but the segmentation heads), plus
``init_info`` recording the source::

    nnUNetv2_resunet_init_weights -d 801 -c 2d -tr TransUNetTrainer -i R50+ViT-B_16.npz -o transunet_init.pth
    nnUNetv2_train 801 2d 0 -tr TransUNetTrainer -pretrained_weights transunet_init.pth

The file belongs to the plan: position embeddings and attention windows are sized from its patch, so write one per
dataset, plans identifier and configuration (all folds can share it).
"""

from __future__ import annotations

import argparse
import os
from collections.abc import Sequence

import torch

from nnunetv2_resunet.architectures.pretrained import PretrainedWeightsError, load_published_weights
from nnunetv2_resunet.command_line import (
    UserError,
    add_option,
    command_parser,
    dataset_name,
    nnunet_folder,
    output_folder,
    run_command,
    trainer_class,
)


def initial_weights(dataset: str, configuration: str, trainer_name: str, plans_identifier: str, source: str
                    ) -> tuple[dict[str, torch.Tensor], dict]:
    """The trainer's network for the plan with its encoder from ``source``: its state dict and ``init_info``.

    Raises:
        UserError: The plans, the trainer or the configuration do not exist or do not fit (the message says which).
        PretrainedWeightsError: The published file does not fit the network's encoder.
    """
    from batchgenerators.utilities.file_and_folder_operations import load_json
    from nnunetv2.utilities.label_handling.label_handling import determine_num_input_channels
    from nnunetv2.utilities.plans_handling.plans_handler import PlansManager

    from nnunetv2_resunet.training.resunet_trainer import ResUnetTrainer, check_2d

    preprocessed = nnunet_folder("nnUNet_preprocessed")
    name = dataset_name(dataset)
    folder = os.path.join(preprocessed, name)
    plans_file = os.path.join(folder, f"{plans_identifier}.json")
    if not os.path.isfile(plans_file):
        raise UserError(f"{plans_file} does not exist: plan and preprocess {name} first "
                        f"(nnUNetv2_plan_and_preprocess), or give the plans identifier with -p")
    trainer = trainer_class(trainer_name)
    if not issubclass(trainer, ResUnetTrainer):
        raise UserError(f"{trainer_name} is not a trainer of nnunetv2_resunet (nnU-Net found "
                        f"{trainer.__module__}); give e.g. TransUNetTrainer")
    plans_manager = PlansManager(plans_file)
    if configuration not in plans_manager.available_configurations:
        raise UserError(f"{plans_file} has no configuration {configuration!r}; it has "
                        f"{plans_manager.available_configurations}")
    configuration_manager = plans_manager.get_configuration(configuration)
    check_2d(configuration_manager, trainer_name, configuration)
    dataset_json = load_json(os.path.join(folder, "dataset.json"))
    num_input_channels = determine_num_input_channels(plans_manager, configuration_manager, dataset_json)
    num_classes = plans_manager.get_label_manager(dataset_json).num_segmentation_heads
    network = trainer.build_network_architecture(plans_manager, configuration_manager, num_input_channels,
                                                       num_classes, enable_deep_supervision=True)
    report = load_published_weights(network, source)
    info = {"trainer": trainer_name, "dataset": name, "plans": plans_identifier,
            "configuration": configuration, "patch_size": list(configuration_manager.patch_size),
            "source": os.path.abspath(source), "format": report.file_format, "summary": report.summary(),
            "unused": report.unused, "adapted": report.adapted}
    return network.state_dict(), info


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    parser = command_parser(
        "nnUNetv2_resunet_init_weights",
        "Write a trainer's initial network for a plan, its encoder from published weights in their "
                    "original file, for nnUNetv2_train ... -pretrained_weights FILE.")
    add_option(parser, "-d", old=["--dataset"], required=True,
               help="Dataset name or id (its plans are read from nnUNet_preprocessed).")
    add_option(parser, "-c", old=["--configuration"], default="2d", help="Configuration (default 2d).")
    add_option(parser, "-tr", old=["--trainer"], required=True,
               help="The trainer that will train, e.g. TransUNetTrainer.")
    add_option(parser, "-p", old=["--plans"], default="nnUNetPlans", help="Plans identifier (default nnUNetPlans).")
    add_option(parser, "-i", old=["--input"], required=True,
               help="The published weights file, as released (e.g. resnet34-b627a593.pth, R50+ViT-B_16.npz).")
    add_option(parser, "-o", old=["--output"], required=True,
               help="Where to write the checkpoint for -pretrained_weights.")
    return parser.parse_args(argv)


def main(argv: Sequence[str] | None = None) -> int:
    """Console entry point ``nnUNetv2_resunet_init_weights``; returns the exit status."""
    return run_command(_init_weights, argv, "nnUNetv2_resunet_init_weights", user_errors=(PretrainedWeightsError,))


def _init_weights(argv: list[str]) -> None:
    args = parse_args(argv)
    folder = output_folder(os.path.dirname(os.path.abspath(args.output)), "-o")
    weights, info = initial_weights(args.dataset, args.configuration, args.trainer, args.plans, args.input)
    os.makedirs(folder, exist_ok=True)
    torch.save({"network_weights": weights, "init_info": info}, args.output)
    print(info["summary"])
    print(f"wrote {args.output}; train with:\n  nnUNetv2_train {args.dataset} {args.configuration} FOLD "
          f"-tr {args.trainer} -p {args.plans} -pretrained_weights {args.output}")


if __name__ == "__main__":
    main()
