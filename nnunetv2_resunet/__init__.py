"""nnunetv2-resunet: the ResUnet ablation ladder (a ResNet-34 U-Net with three fixes), comparison models and
converters, as nnU-Net v2 trainers and commands.

The folder tree is the architecture (README, "Where things are"): ``architectures`` (networks and their config
tables) <- ``training`` (nnU-Net trainers) <- ``ext_trainers`` (what nnU-Net imports by name); ``evaluation``
(metrics and the report) stands alone; ``experiment_planning`` (the ResUnet planner) and ``benchmarking`` (cost)
build on the networks; ``dataset_conversion`` (the converters) stands alone. tests/test_layout.py enforces the
directions of these imports.

Kept free of heavy imports: a ``.pth`` file imports :mod:`nnunetv2_resunet._ext_trainer` at every interpreter
start so that ``nnUNetv2_train -tr ResUnetTrainer`` finds our trainers.
"""

__version__ = "0.1.0"
