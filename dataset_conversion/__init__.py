"""Dataset converters: public releases (Synapse, ACDC, AVT) into nnU-Net raw format, with the published splits.

Installed as ``nnunetv2_resunet.dataset_conversion``.
"""
