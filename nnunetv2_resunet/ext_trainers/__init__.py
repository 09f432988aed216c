"""The folder that ``nnUNet_extTrainer`` points at; nnU-Net imports the modules here by bare name, so it stays tiny
and only re-exports ``nnunetv2_resunet.training``."""
