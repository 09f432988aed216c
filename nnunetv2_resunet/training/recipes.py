"""Recipe variants: trainers that keep a network and change how nnU-Net trains it.

``ResUnetTrainer_ThesisRecipe`` keeps ResUnet v1.0 and trains it with the thesis's loss and optimiser, to separate
what the architecture contributes from what the recipe does. ``TransformerRecipeTrainer`` is the base of the
transformer baselines: nnU-Net's SGD at 1e-2 makes Swin-Unet diverge (nnU-Net issue #2197, where nnU-Net's
maintainers train it with AdamW at 1e-4), so these trainers use AdamW with a linear warm-up into nnU-Net's poly
schedule and gradient clipping, as nnU-Net's own transformer trainers (Primus) do.
"""

import math

import torch
from nnunetv2.training.loss.compound_losses import DC_and_BCE_loss, DC_and_CE_loss
from nnunetv2.training.loss.dice import MemoryEfficientSoftDiceLoss
from nnunetv2.training.lr_scheduler.polylr import PolyLRScheduler
from nnunetv2.utilities.helpers import dummy_context
from torch import autocast, nn

from nnunetv2_resunet.training.resunet_trainer import ResUnetTrainer


class ResUnetTrainer_ThesisRecipe(ResUnetTrainer):
    """ResUnet v1.0 trained with the thesis's recipe instead of nnU-Net's, to separate architecture from recipe.

    Loss ``0.4 * CE + 0.6 * Dice`` (nnU-Net's soft Dice with its settings; Dice + BCE for region labels), SGD with
    momentum 0.9 (no Nesterov) and weight decay 1e-4, no deep supervision. Kept from nnU-Net because the thesis
    does not say otherwise: the initial learning rate (1e-2), the PolyLR schedule, epochs, gradient clipping,
    data and augmentation.
    """

    recipe = "thesis"
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

    def build_optimizer(self):
        optimizer = torch.optim.SGD(self.network.parameters(), self.initial_lr, momentum=self.momentum,
                                    weight_decay=self.weight_decay)
        lr_scheduler = PolyLRScheduler(optimizer, self.initial_lr, self.num_epochs)
        return optimizer, lr_scheduler


class WarmupPolyLRScheduler(PolyLRScheduler):
    """nnU-Net's poly schedule after a linear warm-up, in one scheduler that nnU-Net steps per epoch.

    Epoch ``e < warmup_steps`` trains at ``initial_lr * (e + 1) / warmup_steps``; afterwards the learning rate falls
    as nnU-Net's ``PolyLRScheduler`` over the remaining epochs, ``initial_lr * (1 - (e - w) / (max - w)) ** 0.9``
    (nnU-Net's ``Lin_incr_LRScheduler`` then ``PolyLRScheduler_offset``, without switching schedulers). The rate
    depends on the step alone, so resuming (``--c``) restores it.
    """

    def __init__(self, optimizer, initial_lr: float, max_steps: int, warmup_steps: int, exponent: float = 0.9):
        self.warmup_steps = warmup_steps
        super().__init__(optimizer, initial_lr, max_steps, exponent)

    def step(self, current_step=None):
        if current_step is None or current_step == -1:
            current_step = self.ctr
            self.ctr += 1
        if current_step < self.warmup_steps:
            new_lr = self.initial_lr * (current_step + 1) / self.warmup_steps
        else:
            progress = (current_step - self.warmup_steps) / max(self.max_steps - self.warmup_steps, 1)
            new_lr = self.initial_lr * (1 - progress) ** self.exponent
        for param_group in self.optimizer.param_groups:
            param_group["lr"] = new_lr
        self._last_lr = [group["lr"] for group in self.optimizer.param_groups]


class TransformerRecipeTrainer(ResUnetTrainer):
    """The recipe of the transformer baselines: AdamW, warm-up, nnU-Net's poly schedule, gradient clipping at 1.

    AdamW at 1e-4 (nnU-Net's maintainers for Swin-Unet in issue #2197; EMCAD's own rate), weight decay 1e-4 (the
    value of all three papers), PyTorch's betas; the learning rate rises linearly over the first 5 % of the epochs
    (50 of nnU-Net's 1000, as nnU-Net's warm-up and Primus trainers) and then follows nnU-Net's poly schedule;
    gradients are clipped to norm 1 (Primus). Loss, deep supervision, data, augmentation and epochs stay nnU-Net's.
    Not a runnable trainer by itself: the named shells in :mod:`.trainers` give it a network.
    """

    recipe = "AdamW (transformers)"
    warmup_fraction = 0.05
    gradient_clip = 1.0

    def __init__(self, plans: dict, configuration: str, fold: int, dataset_json: dict,
                 device: torch.device = torch.device("cuda")):
        super().__init__(plans, configuration, fold, dataset_json, device)
        self.initial_lr = 1e-4
        self.weight_decay = 1e-4

    @property
    def warmup_epochs(self) -> int:
        """Epochs of linear warm-up: 5 % of ``num_epochs`` (read when the optimizer is built, so a subclass that
        changes ``num_epochs`` in its ``__init__`` gets its own)."""
        return max(1, math.ceil(self.warmup_fraction * self.num_epochs))

    def build_optimizer(self):
        # Fused on CUDA: one kernel for all parameters instead of a few per tensor (over a hundred tensors here).
        optimizer = torch.optim.AdamW(self.network.parameters(), lr=self.initial_lr, weight_decay=self.weight_decay,
                                      fused=self.device.type == "cuda")
        lr_scheduler = WarmupPolyLRScheduler(optimizer, self.initial_lr, self.num_epochs, self.warmup_epochs)
        return optimizer, lr_scheduler

    def train_step(self, batch: dict) -> dict:
        """nnU-Net 2.8's ``train_step`` with gradients clipped to ``gradient_clip`` instead of 12."""
        data = batch["data"].to(self.device, non_blocking=True)
        target = batch["target"]
        target = ([t.to(self.device, non_blocking=True) for t in target] if isinstance(target, list)
                  else target.to(self.device, non_blocking=True))
        self.optimizer.zero_grad(set_to_none=True)
        with autocast(self.device.type, enabled=True) if self.device.type == "cuda" else dummy_context():
            output = self.network(data)
            loss = self.loss(output, target)
        if self.grad_scaler is not None:
            self.grad_scaler.scale(loss).backward()
            self.grad_scaler.unscale_(self.optimizer)
            torch.nn.utils.clip_grad_norm_(self.network.parameters(), self.gradient_clip)
            self.grad_scaler.step(self.optimizer)
            self.grad_scaler.update()
        else:
            loss.backward()
            torch.nn.utils.clip_grad_norm_(self.network.parameters(), self.gradient_clip)
            self.optimizer.step()
        return {"loss": loss.detach().cpu().numpy()}
