"""ImageNet initialisation from a local torchvision ResNet file (made in the test: nothing is downloaded)."""

import pytest
import torch
import torchvision  # installed with nnunetv2 (dynamic-network-architectures -> timm); only tests use it

from nnunetv2_resunet.architectures.configs.ladder import LADDER
from nnunetv2_resunet.architectures.pretrained import (
    PretrainedWeightsError,
    adapt_input_conv,
    load_torchvision_resnet,
    read_pretrained_file,
)
from nnunetv2_resunet.architectures.resunet import ResUnet


@pytest.fixture(scope="module")
def resnet34_state_dict() -> dict[str, torch.Tensor]:
    torch.manual_seed(0)
    return torchvision.models.resnet34(weights=None).state_dict()


@pytest.mark.parametrize("input_channels", [1, 2, 3, 4])
def test_every_torchvision_tensor_lands_by_name(resnet34_state_dict, input_channels):
    network = ResUnet(input_channels, 3, LADDER["v0_2"])
    kept = load_torchvision_resnet(network.encoder, resnet34_state_dict, "test")
    loaded = network.encoder.state_dict()
    assert kept == []
    for key, value in resnet34_state_dict.items():
        if key.startswith("fc."):
            continue
        expected = adapt_input_conv(value, input_channels) if key == "conv1.weight" else value
        assert torch.equal(loaded[key], expected), key


def test_grey_input_sums_rgb_filters(resnet34_state_dict):
    rgb = resnet34_state_dict["conv1.weight"]
    grey = adapt_input_conv(rgb, 1)
    image = torch.randn(1, 1, 16, 16)
    as_rgb = torch.nn.functional.conv2d(image.expand(1, 3, 16, 16), rgb)
    assert torch.allclose(torch.nn.functional.conv2d(image, grey), as_rgb, atol=1e-5)


def test_tail_keeps_its_initialisation(resnet34_state_dict):
    network = ResUnet(1, 3, LADDER["v1_0"])
    before = {k: v.clone() for k, v in network.encoder.tail.state_dict().items()}
    kept = load_torchvision_resnet(network.encoder, resnet34_state_dict, "test")
    assert kept and all(k.startswith("tail.") for k in kept)
    assert all(torch.equal(before[k], v) for k, v in network.encoder.tail.state_dict().items())


def test_a_file_of_another_depth_is_refused():
    network = ResUnet(1, 3, LADDER["v0_2"])
    with pytest.raises(PretrainedWeightsError, match="resnet18.pth lacks .* encoder keys"):
        load_torchvision_resnet(network.encoder, torchvision.models.resnet18(weights=None).state_dict(),
                                "resnet18.pth")
    with pytest.raises(PretrainedWeightsError, match="unexpected keys"):
        load_torchvision_resnet(network.encoder, torchvision.models.resnet50(weights=None).state_dict(),
                                "resnet50.pth")


def test_reading_names_the_problem(tmp_path, monkeypatch, resnet34_state_dict):
    monkeypatch.delenv("RESUNET_PRETRAINED", raising=False)
    with pytest.raises(PretrainedWeightsError, match="set RESUNET_PRETRAINED"):
        read_pretrained_file()
    with pytest.raises(PretrainedWeightsError, match="no such file"):
        read_pretrained_file(str(tmp_path / "missing.pth"))
    corrupt = tmp_path / "corrupt.pth"
    corrupt.write_bytes(b"not a checkpoint")
    with pytest.raises(PretrainedWeightsError, match="corrupt.pth is not a readable torch state dict"):
        read_pretrained_file(str(corrupt))
    good = tmp_path / "resnet34.pth"
    torch.save(resnet34_state_dict, good)
    monkeypatch.setenv("RESUNET_PRETRAINED", str(good))
    state_dict, path = read_pretrained_file()
    assert path == str(good) and state_dict.keys() == resnet34_state_dict.keys()
