"""nnunetv2-resunet: the ResUnet ablation ladder (a ResNet-34 U-Net with three fixes) as nnU-Net v2 trainers.

Kept free of heavy imports: a ``.pth`` file imports :mod:`nnunetv2_resunet._ext_trainer` at every interpreter
start so that ``nnUNetv2_train -tr ResUnetTrainer`` finds our trainers.
"""

__version__ = "0.1.0"
