"""``nnUNetv2_resunet_init_weights``: what it refuses, with messages that name the problem (the happy path runs in
the integration tests, with nnUNetv2_train -pretrained_weights)."""

import nnunetv2.paths
import pytest
from nnunet_workspace import SYNTHETIC_NAME

from nnunetv2_resunet.architectures.pretrained import PretrainedWeightsError
from nnunetv2_resunet.training.init_weights import initial_weights, main


@pytest.fixture
def planned(nnunet_workspace, monkeypatch):
    monkeypatch.setattr(nnunetv2.paths, "nnUNet_preprocessed", str(nnunet_workspace.preprocessed))
    return nnunet_workspace


def test_refusals_name_the_problem(planned, published_file):
    resnet = str(published_file("resnet34"))
    with pytest.raises(ValueError, match="nnU-Net finds no trainer NoSuchTrainer"):
        initial_weights(SYNTHETIC_NAME, "2d", "NoSuchTrainer", "nnUNetPlans", resnet)
    with pytest.raises(ValueError, match="nnUNetTrainer is not a trainer of nnunetv2_resunet"):
        initial_weights(SYNTHETIC_NAME, "2d", "nnUNetTrainer", "nnUNetPlans", resnet)
    with pytest.raises(ValueError, match="OtherPlans.json does not exist"):
        initial_weights(SYNTHETIC_NAME, "2d", "ResUnetTrainer", "OtherPlans", resnet)
    with pytest.raises(ValueError, match="ResUnetTrainer trains a 2D network"):
        initial_weights(SYNTHETIC_NAME, "3d_fullres", "ResUnetTrainer", "nnUNetPlans", resnet)
    with pytest.raises(PretrainedWeightsError, match="ConvUNet has no encoder that published weights exist for"):
        initial_weights(SYNTHETIC_NAME, "2d", "ClassicUNetTrainer", "nnUNetPlans", resnet)
    with pytest.raises(PretrainedWeightsError, match="is it Google's R50\\+ViT-B_16.npz"):
        initial_weights(SYNTHETIC_NAME, "2d", "TransUNetTrainer", "nnUNetPlans", resnet)


def test_command_line_exits_with_the_message(planned, tmp_path, capsys):
    assert main(["-d", SYNTHETIC_NAME, "-tr", "ResUnetTrainer", "-i", str(tmp_path / "missing.pth"),
                 "-o", str(tmp_path / "init.pth")]) == 1
    assert "missing.pth: no such file" in capsys.readouterr().err
    assert not (tmp_path / "init.pth").exists()
