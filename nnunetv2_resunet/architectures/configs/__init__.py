"""The tables of named network variants, one frozen config per row (``ladder``: the ResUnet ablation ladder;
``comparisons``: the comparison models). ``nnunetv2_resunet.architectures.registry`` merges them."""
