"""Evaluation: metrics of one mask pair (:mod:`.metrics`: Dice, HD95), the two averaging conventions
(:mod:`.conventions`), one case read from disk (:mod:`.case_metrics`), the published figures (:mod:`.published`),
plots (:mod:`.plots`) and the report command (:mod:`.report`). Metric code returns numbers; the report formats them.

Imports: numpy, scipy, SimpleITK, matplotlib and nnU-Net's label handling; nothing from architectures, training,
planning or benchmarking (a report reads predictions on disk, never a network).
"""
