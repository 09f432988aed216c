"""Experiment planning: nnU-Net's planner with ResUnet's memory estimate (:mod:`.resunet_planner`), its command
``nnUNetv2_resunet_plan`` (:mod:`.cli`), and plans made without a dataset on disk (:mod:`.synthetic_plans`).

Imports: nnU-Net's planning code and ``nnunetv2_resunet.architectures`` (the network whose memory is planned for);
nothing from training, evaluation or benchmarking.
"""
