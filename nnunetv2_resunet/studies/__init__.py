"""Studies: a whole comparison (datasets x trainers x folds, test-set predictions, one report) as one command,
``nnUNetv2_resunet_study``, run on this machine or submitted to SLURM.

A study file (TOML, :mod:`.study_file`) names what to run and where each dataset comes from (:mod:`.sources`, our
converters as data); :mod:`.checks` says, for every subcommand alike, everything that stops it from running;
:mod:`.runs` turns it into runs (preprocess, train per
fold, predict, report) with their dependencies; :mod:`.state` reads each run's state from nnU-Net's own files
(checkpoints, validation summaries, predictions), so the status is always what is on disk and no database of our
own can disagree with it; :mod:`.locks` keeps two invocations off the same run; :mod:`.execute` runs one run
(and, locally, all of them, one per slot); :mod:`.slurm` submits them through submitit as array jobs with
dependencies; :mod:`.progress` formats the status table; :mod:`.cli` is the command.

Imports: nnU-Net and our commands are driven as subprocesses (``nnUNetv2_plan_and_preprocess``, ``nnUNetv2_train``,
``nnUNetv2_predict``, ``nnUNetv2_resunet_report``), exactly as a user types them; of this project only
``training.budgets`` is imported (for the budget names), lazily.
"""
