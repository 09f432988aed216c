"""``nnUNetv2_resunet_demo``: the plugin's whole flow on real data it ships (:mod:`.cli`), a small ACDC sample
(``acdc_sample/``, with its provenance).

Imports: the converters and the studies, which it drives as a user would, through their commands.
"""
