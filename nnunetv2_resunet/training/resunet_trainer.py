"""nnU-Net trainers for the ResUnet family: one base trainer, then one named shell per config.

Each trainer changes nnU-Net's default in one thing only, the network: data, augmentation, loss, optimiser and
schedule stay nnU-Net's. ``ResUnetTrainer`` is ResUnet v1.0 and the base of every trainer here;
``ResUnetTrainer_v0_1`` .. ``ResUnetTrainer_v1_0`` are the ablation ladder (``nnunetv2_resunet.configs``); the
comparison models (``nnunetv2_resunet.comparisons``) are named ``<Model>Trainer[_<variant>]``: the decoder or
network family first (``ResUnet``, ``UNet``, ``UNetPlusPlus``, ``UNet3Plus``, ``ResidualUNet``, ``ClassicUNet``),
then the encoder (``_R34``, ``_R50``) or the one switch that differs (``_SpatialAttention``).
``ResUnetTrainer_ThesisRecipe`` is the one exception to "only the network": it keeps v1.0 and changes the
recipe. nnU-Net finds them by name through ``nnUNet_extTrainer`` (see ``nnunetv2_resunet._ext_trainer``).
"""

import torch
from nnunetv2.training.loss.compound_losses import DC_and_BCE_loss, DC_and_CE_loss
from nnunetv2.training.loss.dice import MemoryEfficientSoftDiceLoss
from nnunetv2.training.lr_scheduler.polylr import PolyLRScheduler
from nnunetv2.training.nnUNetTrainer.nnUNetTrainer import nnUNetTrainer
from nnunetv2.utilities.plans_handling.plans_handler import ConfigurationManager, PlansManager
from torch import nn
from torch._dynamo import OptimizedModule

from nnunetv2_resunet.base import SegmentationNetwork
from nnunetv2_resunet.comparisons import COMPARISONS, PLAIN_UNETS
from nnunetv2_resunet.configs import LADDER
from nnunetv2_resunet.network import ResUnetConfig
from nnunetv2_resunet.pretrained import load_torchvision_resnet, read_pretrained_file
from nnunetv2_resunet.registry import NetworkConfig, build_network


def check_2d(configuration_manager: ConfigurationManager, trainer_name: str, configuration: str = "") -> None:
    """Raise a clear error for a 3d configuration: ResUnet is a 2D network."""
    patch_size = configuration_manager.patch_size
    if len(patch_size) != 2:
        raise ValueError(
            f"{trainer_name} trains a 2D network, but configuration {configuration or 'given'} has a "
            f"{len(patch_size)}D patch size {list(patch_size)}. Use the 2d configuration: -c 2d")


class ResUnetTrainer(nnUNetTrainer):
    """nnU-Net's trainer with the ResUnet network. Subclasses only name another ``resunet_config``, which may be
    any config of the family (``nnunetv2_resunet.registry.NETWORK_CONFIGS``)."""

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
        weights match the outputs exactly (nnU-Net derives them from its own pooling plan otherwise)."""
        if not self.enable_deep_supervision:
            return None
        return [[1 / stride] * 2 for stride in self._bare_network().output_strides]

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


class ResUnetTrainer_v0_1(ResUnetTrainer):
    resunet_config = LADDER["v0_1"]


class ResUnetTrainer_v0_2(ResUnetTrainer):
    resunet_config = LADDER["v0_2"]


class ResUnetTrainer_v0_3(ResUnetTrainer):
    resunet_config = LADDER["v0_3"]


class ResUnetTrainer_v0_4(ResUnetTrainer):
    resunet_config = LADDER["v0_4"]


class ResUnetTrainer_v0_5(ResUnetTrainer):
    resunet_config = LADDER["v0_5"]


class ResUnetTrainer_v0_6(ResUnetTrainer):
    resunet_config = LADDER["v0_6"]


class ResUnetTrainer_v0_7(ResUnetTrainer):
    resunet_config = LADDER["v0_7"]


class ResUnetTrainer_v1_0(ResUnetTrainer):
    resunet_config = LADDER["v1_0"]


LADDER_TRAINERS: dict[str, type[ResUnetTrainer]] = {
    t.resunet_config.name: t for t in (ResUnetTrainer_v0_1, ResUnetTrainer_v0_2, ResUnetTrainer_v0_3,
                                       ResUnetTrainer_v0_4, ResUnetTrainer_v0_5, ResUnetTrainer_v0_6,
                                       ResUnetTrainer_v0_7, ResUnetTrainer_v1_0)
}


class ResUnetTrainer_R50(ResUnetTrainer):
    resunet_config = COMPARISONS["resunet_r50"]


class UNetTrainer_R34(ResUnetTrainer):
    resunet_config = COMPARISONS["unet_r34"]


class UNetPlusPlusTrainer_R34(ResUnetTrainer):
    resunet_config = COMPARISONS["unetpp_r34"]


class UNet3PlusTrainer_R34(ResUnetTrainer):
    resunet_config = COMPARISONS["unet3p_r34"]


class ClassicUNetTrainer(ResUnetTrainer):
    resunet_config = PLAIN_UNETS["classic_unet"]


class ResidualUNetTrainer(ResUnetTrainer):
    resunet_config = PLAIN_UNETS["residual_unet"]


class ResidualUNetTrainer_SpatialAttention(ResUnetTrainer):
    resunet_config = PLAIN_UNETS["residual_unet_sa"]


class ResUnetTrainer_ThesisRecipe(ResUnetTrainer):
    """ResUnet v1.0 trained with the thesis's recipe instead of nnU-Net's, to separate architecture from recipe.

    Loss ``0.4 * CE + 0.6 * Dice`` (nnU-Net's soft Dice with its settings; Dice + BCE for region labels), SGD with
    momentum 0.9 (no Nesterov) and weight decay 1e-4, no deep supervision. Kept from nnU-Net because the thesis
    does not say otherwise: the initial learning rate (1e-2), the PolyLR schedule, epochs, gradient clipping,
    data and augmentation.
    """

    ce_weight = 0.4
    dice_weight = 0.6
    momentum = 0.9

    def __init__(self, plans: dict, configuration: str, fold: int, dataset_json: dict,
                 device: torch.device = torch.device("cuda")):
        super().__init__(plans, configuration, fold, dataset_json, device)
        self.enable_deep_supervision = False
        self.weight_decay = 1e-4

    def _build_loss(self) -> nn.Module:
        if self.label_manager.has_regions:
            loss = DC_and_BCE_loss({}, {"batch_dice": self.configuration_manager.batch_dice, "do_bg": True,
                                        "smooth": 1e-5, "ddp": self.is_ddp},
                                   weight_ce=self.ce_weight, weight_dice=self.dice_weight,
                                   use_ignore_label=self.label_manager.ignore_label is not None,
                                   dice_class=MemoryEfficientSoftDiceLoss)
        else:
            loss = DC_and_CE_loss({"batch_dice": self.configuration_manager.batch_dice, "smooth": 1e-5,
                                   "do_bg": False, "ddp": self.is_ddp}, {},
                                  weight_ce=self.ce_weight, weight_dice=self.dice_weight,
                                  ignore_label=self.label_manager.ignore_label, dice_class=MemoryEfficientSoftDiceLoss)
        if self._do_i_compile():
            loss.dc = torch.compile(loss.dc)
        return loss

    def configure_optimizers(self):
        optimizer = torch.optim.SGD(self.network.parameters(), self.initial_lr, momentum=self.momentum,
                                    weight_decay=self.weight_decay)
        lr_scheduler = PolyLRScheduler(optimizer, self.initial_lr, self.num_epochs)
        return optimizer, lr_scheduler


# The comparison trainers by the name of their config (the recipe variant trains v1_0, see LADDER_TRAINERS).
COMPARISON_TRAINERS: dict[str, type[ResUnetTrainer]] = {
    t.resunet_config.name: t for t in (ResUnetTrainer_R50, UNetTrainer_R34, UNetPlusPlusTrainer_R34,
                                       UNet3PlusTrainer_R34, ClassicUNetTrainer, ResidualUNetTrainer,
                                       ResidualUNetTrainer_SpatialAttention)
}
