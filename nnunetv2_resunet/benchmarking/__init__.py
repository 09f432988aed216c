"""Cost: ``nnUNetv2_resunet_benchmark`` (:mod:`.benchmark`, :mod:`.measure`, :mod:`.trainer_steps`, :mod:`.tables`,
:mod:`.cli`), ``nnUNetv2_resunet_check``, health and cost on a GPU (:mod:`.check`, :mod:`.check_cli`), the trainer
table of README (:mod:`.trainer_table`) and the planner's memory calibration (:mod:`.calibration`).

Imports: anything below it, architectures, training and experiment_planning; nothing imports from here.
"""
