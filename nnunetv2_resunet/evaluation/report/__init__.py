"""``nnUNetv2_resunet_report``: collect the cases (:mod:`.cases`), evaluate them (:mod:`.evaluate`), summarise
(:mod:`.summary`), format (:mod:`.formatting`) and write (:mod:`.writing`); :mod:`.cli` is the command."""
