"""``ResUnetTrainer``: nnU-Net's trainer with a network of this package, and the base of every trainer here.

It changes nnU-Net's default in one thing only, the network (``resunet_config``, any config of
``nnunetv2_resunet.architectures.registry``): data, augmentation, loss, optimiser and schedule stay nnU-Net's. Its
own config is ResUnet v1.0. The named shells are in :mod:`.trainers`, the recipe variants in :mod:`.recipes`.
"""

import torch
from nnunetv2.training.nnUNetTrainer.nnUNetTrainer import nnUNetTrainer
from nnunetv2.utilities.label_handling.label_handling import determine_num_input_channels
from nnunetv2.utilities.plans_handling.plans_handler import ConfigurationManager, PlansManager
from torch import nn
from torch._dynamo import OptimizedModule

from nnunetv2_resunet.architectures.base import SegmentationNetwork
from nnunetv2_resunet.architectures.configs.ladder import LADDER
from nnunetv2_resunet.architectures.pretrained import load_torchvision_resnet, read_pretrained_file
from nnunetv2_resunet.architectures.registry import NetworkConfig, build_network
from nnunetv2_resunet.architectures.resunet import ResUnetConfig


def check_2d(configuration_manager: ConfigurationManager, trainer_name: str, configuration: str = "") -> None:
    """Raise a clear error for a 3d configuration: ResUnet is a 2D network."""
    patch_size = configuration_manager.patch_size
    if len(patch_size) != 2:
        raise ValueError(
            f"{trainer_name} trains a 2D network, but configuration {configuration or 'given'} has a "
            f"{len(patch_size)}D patch size {list(patch_size)}. Use the 2d configuration: -c 2d")


class ResUnetTrainer(nnUNetTrainer):
    """nnU-Net's trainer with the ResUnet network. Subclasses only name another ``resunet_config``, which may be
    any config of the family (``nnunetv2_resunet.architectures.registry.NETWORK_CONFIGS``)."""

    resunet_config: NetworkConfig = LADDER["v1_0"]
    # NHWC on CUDA: cuDNN's tensor-core convolutions and batch norm run natively in it under autocast. Inputs stay
    # NCHW; the first convolution's output follows the weights' format. Not on CPU, where nnU-Net does not train.
    channels_last_on_cuda: bool = True

    def __init__(self, plans: dict, configuration: str, fold: int, dataset_json: dict,
                 device: torch.device = torch.device("cuda")):
        super().__init__(plans, configuration, fold, dataset_json, device)
        check_2d(self.configuration_manager, self.__class__.__name__, configuration)

    @classmethod
    def build_network_architecture(cls,
                                   plans_manager: PlansManager,
                                   configuration_manager: ConfigurationManager,
                                   num_input_channels: int,
                                   num_output_channels: int,
                                   enable_deep_supervision: bool = True) -> nn.Module:
        """nnU-Net 2.8's hook, called for training and for inference (a classmethod, so each shell's config is
        used; nnU-Net calls it on the class with the same arguments as its static default)."""
        check_2d(configuration_manager, cls.__name__)
        network = build_network(cls.resunet_config, num_input_channels, num_output_channels,
                                deep_supervision=enable_deep_supervision)
        network.apply(network.initialize)
        return network

    def _bare_network(self) -> SegmentationNetwork:
        """The network inside nnU-Net's DDP and torch.compile wrappers."""
        network = self.network.module if self.is_ddp else self.network
        return network._orig_mod if isinstance(network, OptimizedModule) else network

    def _get_deep_supervision_scales(self):
        """One scale per network output, taken from the network, so that nnU-Net's target downsampling and loss
        weights match the outputs exactly (nnU-Net derives them from its own pooling plan otherwise). Like
        nnU-Net's own, it works before ``initialize()``: the network is then built on the meta device (no memory)
        from the plans, exactly as ``initialize()`` will build it."""
        if not self.enable_deep_supervision:
            return None
        return [[1 / stride] * 2 for stride in self._output_strides()]

    def _output_strides(self) -> tuple[int, ...]:
        if self.network is not None:
            return self._bare_network().output_strides
        num_input_channels = determine_num_input_channels(self.plans_manager, self.configuration_manager,
                                                          self.dataset_json)
        with torch.device("meta"):
            network = self.build_network_architecture(self.plans_manager, self.configuration_manager,
                                                      num_input_channels, self.label_manager.num_segmentation_heads,
                                                      True)
        return network.output_strides

    def initialize(self):
        super().initialize()
        if self.channels_last_on_cuda and self.device.type == "cuda" and not self.is_ddp:
            # In place on the parameters the optimizer holds, before torch.compile's lazy first trace. Not under DDP:
            # its gradient buckets already have the parameters' old layout, and every step would copy gradients.
            self._bare_network().to(memory_format=torch.channels_last)
        if isinstance(self.resunet_config, ResUnetConfig) and self.resunet_config.imagenet_init:
            # Before any checkpoint: nnU-Net's --c, --val and -pretrained_weights load afterwards and win.
            state_dict, path = read_pretrained_file()
            kept = load_torchvision_resnet(self._bare_network().encoder, state_dict, path)
            self.print_to_log_file(f"Encoder initialised from ImageNet weights in {path}; "
                                   f"{len(kept)} encoder tensors without a counterpart keep He init")
