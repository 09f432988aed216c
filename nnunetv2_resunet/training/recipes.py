"""Recipe variants: trainers that keep a network and change how nnU-Net trains it.

``ResUnetTrainer_ThesisRecipe`` keeps ResUnet v1.0 and trains it with the thesis's loss and optimiser, to separate
what the architecture contributes from what the recipe does.
"""

import torch
from nnunetv2.training.loss.compound_losses import DC_and_BCE_loss, DC_and_CE_loss
from nnunetv2.training.loss.dice import MemoryEfficientSoftDiceLoss
from nnunetv2.training.lr_scheduler.polylr import PolyLRScheduler
from torch import nn

from nnunetv2_resunet.training.resunet_trainer import ResUnetTrainer


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
