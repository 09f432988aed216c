"""``ResUnetTrainer``: nnU-Net's trainer with a network of this package, and the base of every trainer here.

It changes nnU-Net's default in one thing only, the network (``resunet_config``, any config of
``nnunetv2_resunet.architectures.registry``): data, augmentation, loss, optimiser and schedule stay nnU-Net's. Its
own config is ResUnet v1.0. The named shells are in :mod:`.trainers`, the recipe variants in :mod:`.recipes`.

What the network starts from is nnU-Net's business: from scratch, from ``--c``'s checkpoint, or from
``-pretrained_weights FILE`` (published encoder weights come as such a file, written by
``nnUNetv2_resunet_init_weights``, :mod:`.init_weights`). The training log says which; a config that is defined by
its pretrained encoder (``imagenet_init``, ladder step v0.2) refuses to train from scratch.
"""

import numpy as np
import torch
from nnunetv2.training.loss.deep_supervision import DeepSupervisionWrapper
from nnunetv2.training.nnUNetTrainer.nnUNetTrainer import nnUNetTrainer
from nnunetv2.utilities.label_handling.label_handling import determine_num_input_channels
from nnunetv2.utilities.plans_handling.plans_handler import ConfigurationManager, PlansManager
from torch import nn
from torch._dynamo import OptimizedModule
from torch.nn.parallel import DistributedDataParallel

from nnunetv2_resunet.architectures.base import SegmentationNetwork
from nnunetv2_resunet.architectures.configs.ladder import LADDER
from nnunetv2_resunet.architectures.pretrained import expected_file, has_pretrained_encoder
from nnunetv2_resunet.architectures.registry import NetworkConfig, build_network
from nnunetv2_resunet.command_line import UserError


def check_2d(configuration_manager: ConfigurationManager, trainer_name: str, configuration: str = "") -> None:
    """Raise a clear error for a 3d configuration: ResUnet is a 2D network."""
    patch_size = configuration_manager.patch_size
    if len(patch_size) != 2:
        raise UserError(
            f"{trainer_name} trains a 2D network, but configuration {configuration or 'given'} has a "
            f"{len(patch_size)}D patch size {list(patch_size)}. Use the 2d configuration: -c 2d")


class ResUnetTrainer(nnUNetTrainer):
    """nnU-Net's trainer with the ResUnet network. Subclasses only name another ``resunet_config``, which may be
    any config of the family (``nnunetv2_resunet.architectures.registry.NETWORK_CONFIGS``)."""

    resunet_config: NetworkConfig = LADDER["v1_0"]
    # The training recipe, as the trainer table names it (subclasses that change it say so).
    recipe: str = "nnU-Net"
    # NHWC on CUDA, with or without DDP (see prepare_network_for_training); a shell can switch it off.
    channels_last_on_cuda: bool = True
    # The patch dimensions its networks take (check_2d refuses others); nnUNetv2_resunet_study checks a study's
    # configurations against it before anything starts.
    network_dimensions: tuple[int, ...] = (2,)

    def __init__(self, plans: dict, configuration: str, fold: int, dataset_json: dict,
                 device: torch.device = torch.device("cuda")):
        super().__init__(plans, configuration, fold, dataset_json, device)
        check_2d(self.configuration_manager, self.__class__.__name__, configuration)
        self._loading_checkpoint = False
        self._weights_loaded_by: str | None = None  # set when a state dict is loaded into the network

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
                                deep_supervision=enable_deep_supervision, patch_size=configuration_manager.patch_size)
        network.apply(network.initialize)
        return network

    def _bare_network(self) -> SegmentationNetwork:
        """The network inside nnU-Net's DDP and torch.compile wrappers (either may not be there yet)."""
        network = self.network.module if isinstance(self.network, DistributedDataParallel) else self.network
        return network._orig_mod if isinstance(network, OptimizedModule) else network

    def _get_deep_supervision_scales(self):
        """One scale per network output, taken from the network, so that nnU-Net's target downsampling and loss
        weights match the outputs exactly (nnU-Net derives them from its own pooling plan otherwise). Like
        nnU-Net's own, it works before ``initialize()``: the network is then built on the meta device (no memory)
        from the plans, exactly as ``initialize()`` will build it."""
        if not self.enable_deep_supervision:
            return None
        return [[1 / stride] * 2 for stride in self._output_strides()]

    def _build_loss(self):
        """nnU-Net's loss, with one change under DDP: the lowest-resolution output keeps a weight of 1e-6 (nnU-Net
        gives it 0, or 1e-6 under DDP without torch.compile), so that its head gets a gradient, which DDP waits for.
        nnU-Net relies on torch.compile producing a zero gradient for it; under DDP, compile splits the graph at
        DDP's gradient buckets and the unused head's piece has no backward to run ("Expected to have finished
        reduction": seen with every network here on nnU-Net's -num_gpus path with compile on)."""
        loss = super()._build_loss()
        if self.is_ddp and isinstance(loss, DeepSupervisionWrapper) and loss.weight_factors[-1] == 0:
            weights = np.array([1 / 2 ** i for i in range(len(loss.weight_factors))])
            weights[-1] = 1e-6
            loss.weight_factors = tuple(weights / weights.sum())
        return loss

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
        # Records what nnU-Net loads into the network: -pretrained_weights (run_training's maybe_load_checkpoint,
        # after initialize) or a checkpoint (load_checkpoint, e.g. --c); on_train_start reports it.
        self._bare_network().register_load_state_dict_post_hook(self._record_loaded_weights)

    def configure_optimizers(self):
        """nnU-Net's hook, called by ``initialize()`` after the network is built, moved to the device and compiled,
        and before it is wrapped in SyncBatchNorm and DDP: the network is made ready for training here
        (:meth:`prepare_network_for_training`), then the recipe's optimizer and schedule are built on it
        (:meth:`build_optimizer`; recipe variants override that one)."""
        self.prepare_network_for_training()
        return self.build_optimizer()

    def build_optimizer(self):
        """The optimizer and learning-rate schedule: nnU-Net's (SGD, Nesterov momentum 0.99, poly schedule)."""
        return super().configure_optimizers()

    def prepare_network_for_training(self) -> None:
        """What must happen to the parameters before DistributedDataParallel takes them (it fixes, at wrap time,
        which parameters it waits a gradient for and the layout of its gradient buckets):

        - deep supervision set as this trainer trains, so that the heads a network without deep supervision does not
          use stop requiring gradients (DDP would wait for them forever: ``SegmentationNetwork.set_deep_supervision``);
        - NHWC (channels_last) on CUDA: cuDNN's tensor-core convolutions and batch norm run natively in it under
          autocast. In place on the parameters, before torch.compile's lazy first trace; inputs stay NCHW, the first
          convolution's output follows the weights' format. Not on CPU, where nnU-Net does not train.
        """
        network = self._bare_network()
        network.set_deep_supervision(self.enable_deep_supervision)
        if self.channels_last_on_cuda and self.device.type == "cuda":
            network.to(memory_format=torch.channels_last)

    def set_deep_supervision_enabled(self, enabled: bool) -> None:
        """nnU-Net's switch (on at the start of training, off for the final validation), through the network's own,
        which keeps what is unused out of training (see :meth:`prepare_network_for_training`)."""
        self._bare_network().set_deep_supervision(enabled)

    def _record_loaded_weights(self, module: nn.Module, incompatible_keys) -> None:
        self._weights_loaded_by = "checkpoint" if self._loading_checkpoint else "pretrained_weights"

    def load_checkpoint(self, filename_or_checkpoint) -> None:
        self._loading_checkpoint = True
        try:
            super().load_checkpoint(filename_or_checkpoint)
        finally:
            self._loading_checkpoint = False

    def on_train_start(self):
        if not self.was_initialized:
            self.initialize()
        self._report_starting_weights()
        super().on_train_start()

    def _init_weights_command(self) -> str:
        return (f"nnUNetv2_resunet_init_weights -d {self.plans_manager.dataset_name} -c {self.configuration_name} "
                f"-tr {self.__class__.__name__} -p {self.plans_manager.plans_name} -i PUBLISHED_FILE -o init.pth")

    def _report_starting_weights(self) -> None:
        """Say in the training log what the network starts from; refuse to train an ImageNet variant from scratch."""
        if self._weights_loaded_by == "checkpoint":
            self.print_to_log_file("Network weights: restored from this fold's checkpoint (--c).")
            return
        if self._weights_loaded_by == "pretrained_weights":
            self.print_to_log_file(
                "Network weights: loaded before training by nnUNetv2_train's -pretrained_weights (a file written by "
                "nnUNetv2_resunet_init_weights starts the encoder from published weights; its 'init_info' names "
                "the source).")
            return
        network = self._bare_network()
        if getattr(self.resunet_config, "imagenet_init", False):
            raise RuntimeError(
                f"{self.__class__.__name__} trains from ImageNet weights, but none were given. Write them once with "
                f"{self._init_weights_command()} (PUBLISHED_FILE: {expected_file(network)}) and train with "
                f"nnUNetv2_train ... -pretrained_weights init.pth")
        advice = (f" To start the encoder from published weights ({expected_file(network)}): "
                  f"{self._init_weights_command()}, then nnUNetv2_train ... -pretrained_weights init.pth."
                  if has_pretrained_encoder(network) else "")
        self.print_to_log_file(f"Network weights: from scratch (the network's own initialisation).{advice}")
