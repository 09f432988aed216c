"""The folder that ``nnUNet_extTrainer`` points at. nnU-Net imports the modules here by bare name."""
