"""Published encoder weights from files in their original formats (written by the tests: nothing is downloaded).

Each format is checked against something independent of our loader: torchvision's own state dict, timm's own
readers (``vision_transformer._load_weights`` for Google's .npz, the Swin and PVTv2 ``checkpoint_filter_fn``),
SciPy's zoom for TransUNet's position-embedding resize, and the official Swin-Unet ``load_from`` mapping.
"""

import re
from functools import partial

import numpy as np
import pytest
import torch
import torchvision  # installed with nnunetv2 (dynamic-network-architectures -> timm); only tests use it
from scipy import ndimage
from timm.layers import HybridEmbed
from timm.models import swin_transformer, vision_transformer

from nnunetv2_resunet.architectures.configs.ladder import LADDER
from nnunetv2_resunet.architectures.configs.transformers import TRANSFORMERS
from nnunetv2_resunet.architectures.encoders.vit_hybrid import position_embedding_for, transunet_resnet
from nnunetv2_resunet.architectures.pretrained import (
    PretrainedWeightsError,
    adapt_input_conv,
    load_published_weights,
    load_torchvision_resnet,
    read_weights_file,
)
from nnunetv2_resunet.architectures.registry import NETWORK_CONFIGS, build_network
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


def test_torchvision_file_report(published_file):
    network = build_network(LADDER["v1_0"], 1, 3)
    report = load_published_weights(network, str(published_file("resnet34")))
    assert report.unused == {"fc.weight": "the ImageNet classifier", "fc.bias": "the ImageNet classifier"}
    assert set(report.loaded) | {k for k in report.kept if k.startswith("encoder.tail.")} == \
        {k for k in network.state_dict() if k.startswith("encoder.")}
    assert "encoder.conv1.weight" in report.adapted


def test_reading_names_the_problem(tmp_path, resnet34_state_dict):
    with pytest.raises(PretrainedWeightsError, match="no such file"):
        read_weights_file(str(tmp_path / "missing.pth"))
    corrupt = tmp_path / "corrupt.pth"
    corrupt.write_bytes(b"not a checkpoint")
    with pytest.raises(PretrainedWeightsError, match="corrupt.pth is not a readable weights file"):
        read_weights_file(str(corrupt))
    not_tensors = tmp_path / "numbers.pth"
    torch.save({"epoch": 3}, not_tensors)
    with pytest.raises(PretrainedWeightsError, match="not a state dict of tensors"):
        read_weights_file(str(not_tensors))
    wrapped = tmp_path / "wrapped.pth"
    torch.save({"model": resnet34_state_dict}, wrapped)
    assert read_weights_file(str(wrapped)).keys() == resnet34_state_dict.keys()


def test_google_npz_lands_where_timms_own_reader_puts_it(published_file):
    """timm's ``_load_weights`` reads the same .npz into the same modules (with a class token: it cannot drop one);
    every tensor but the position embeddings must agree, and those are the file's without the class token."""
    path = published_file("r50_vit_b16")
    network = build_network(TRANSFORMERS["transunet"], 1, 9, patch_size=(224, 224))
    report = load_published_weights(network, str(path))
    reference = vision_transformer.VisionTransformer(
        img_size=224, patch_size=1, num_classes=0, global_pool="", embed_dim=768, depth=12, num_heads=12,
        embed_layer=partial(HybridEmbed, backbone=transunet_resnet(3)))
    vision_transformer._load_weights(reference, str(path))
    ours = network.encoder.vit.state_dict()
    compared = 0
    for name, value in reference.state_dict().items():
        if name in ("pos_embed", "cls_token"):
            continue
        torch.testing.assert_close(ours[name], value, rtol=0, atol=0, msg=name)
        compared += 1
    assert compared == len(ours) - 1
    file_positions = torch.from_numpy(np.load(path)["Transformer/posembed_input/pos_embedding"])
    torch.testing.assert_close(ours["pos_embed"], file_positions[:, 1:])
    assert set(report.unused) == {"cls", "head/kernel", "head/bias", "pre_logits/kernel", "pre_logits/bias"}
    assert {k for k in network.state_dict() if k.startswith("encoder.")} == set(report.loaded)


def test_position_embeddings_resize_like_transunet():
    """TransUNet resizes the pretrained grid with ``scipy.ndimage.zoom(order=1)``; ours gives the same values (and
    also handles non-square grids, which TransUNet's code cannot)."""
    grid = torch.randn(1, 14 * 14, 8)
    ours = position_embedding_for(grid, (14, 14), (28, 28))
    transunet = ndimage.zoom(grid[0].reshape(14, 14, 8).numpy(), (2, 2, 1), order=1).reshape(1, 28 * 28, 8)
    torch.testing.assert_close(ours, torch.from_numpy(transunet), rtol=1e-5, atol=1e-5)
    assert position_embedding_for(grid, (14, 14), (20, 18)).shape == (1, 360, 8)


def test_microsoft_swin_lands_as_timm_reads_it_and_seeds_the_decoder(published_file):
    path = published_file("swin_tiny")
    network = build_network(TRANSFORMERS["swin_unet"], 1, 9, patch_size=(224, 224))
    report = load_published_weights(network, str(path))
    released = torch.load(path, weights_only=True)["model"]
    # timm's reference: the released depths (2, 2, 6, 2), its filter; ours keeps the first two blocks of stage 2.
    reference = swin_transformer.SwinTransformer(num_classes=10)  # the synthetic file's small classifier
    reference.load_state_dict(swin_transformer.checkpoint_filter_fn(released, reference))
    ours = network.encoder.swin.state_dict()
    for name, value in ours.items():
        expected = reference.state_dict()[name]
        if name == "patch_embed.proj.weight":
            expected = expected.sum(dim=1, keepdim=True)  # one input channel: the RGB filters summed
        torch.testing.assert_close(value, expected, rtol=0, atol=0, msg=name)
    # Swin-Unet's load_from: encoder stage i's blocks into decoder stage 3 - i.
    decoder = network.decoder.state_dict()
    seeded = 0
    for key, value in released.items():
        match = re.match(r"layers\.([0-2])\.blocks\.([01])\.(.+)", key)
        if match and not key.endswith(("relative_position_index", "attn_mask")):
            torch.testing.assert_close(decoder[f"layers_up.{3 - int(match[1])}.blocks.{match[2]}.{match[3]}"], value)
            seeded += 1
    assert seeded == 3 * 2 * 13
    deeper = {k for k in released if re.match(r"layers\.2\.blocks\.[2-5]\.", k)}  # Swin-T's stage 2 has 6 blocks
    buffers = {k for k in released if k.endswith(("relative_position_index", "attn_mask"))} - deeper
    assert set(report.unused) == deeper | buffers | {"head.fc.weight", "head.fc.bias"}
    assert {k for k in network.state_dict() if k.startswith("encoder.")} <= set(report.loaded)


def _whai362_to_timm(key: str) -> str:
    """The renaming of PVTv2's release to timm's modules, written out here independently of the loader."""
    key = re.sub(r"^patch_embed1\.", "patch_embed.", key)
    key = re.sub(r"^patch_embed([234])\.", lambda m: f"stages.{int(m[1]) - 1}.downsample.", key)
    key = re.sub(r"^block(\d)\.(\d+)\.", lambda m: f"stages.{int(m[1]) - 1}.blocks.{m[2]}.", key)
    key = re.sub(r"^norm(\d)\.", lambda m: f"stages.{int(m[1]) - 1}.norm.", key)
    return key.replace("mlp.dwconv.dwconv.", "mlp.dwconv.")


@pytest.mark.parametrize("name", ["emcad", "resunet_pvt_v2_b2"])
def test_pvt_v2_release_lands_in_the_encoder(published_file, name):
    path = published_file("pvt_v2_b2")
    network = build_network(TRANSFORMERS[name], 1, 9)
    report = load_published_weights(network, str(path))
    released = torch.load(path, weights_only=True)
    ours = network.state_dict()
    for key, value in released.items():
        if key.startswith("head."):
            continue
        target = "encoder.model.model." + _whai362_to_timm(key)
        if target.endswith("patch_embed.proj.weight") and network.rgb_stem is None:
            value = value.sum(dim=1, keepdim=True)  # ResUnet's decoder on PVT takes the grey image directly
        torch.testing.assert_close(ours[target], value, rtol=0, atol=0, msg=key)
    assert set(report.unused) == {"head.weight", "head.bias"}
    assert all(k.startswith(("decoder.", "rgb_stem.")) for k in report.kept)


def test_a_file_of_another_model_is_refused(published_file):
    with torch.device("meta"):
        transunet = build_network(TRANSFORMERS["transunet"], 1, 3)
        emcad = build_network(TRANSFORMERS["emcad"], 1, 3)
        classic = build_network(NETWORK_CONFIGS["classic_unet"], 1, 3)
    with pytest.raises(PretrainedWeightsError, match="is it Google's R50\\+ViT-B_16.npz"):
        load_published_weights(transunet, str(published_file("swin_tiny")))
    with pytest.raises(PretrainedWeightsError, match="pvt_v2_b2"):
        load_published_weights(emcad, str(published_file("resnet34")))
    with pytest.raises(PretrainedWeightsError, match="ConvUNet has no encoder that published weights exist for"):
        load_published_weights(classic, str(published_file("resnet34")))


def test_an_ablated_network_starts_from_its_originals_file_less_the_blocks(published_file):
    """Primus's ablation of EMCAD takes pvt_v2_b2.pth as EMCAD does: every tensor but those of the removed
    transformer blocks, which are reported as unused."""
    from nnunetv2_resunet.architectures.configs.transformers import NO_TRANSFORMER_BLOCKS

    path = str(published_file("pvt_v2_b2"))
    original = build_network(TRANSFORMERS["emcad"], 1, 9)
    original_report = load_published_weights(original, path)
    ablated = build_network(NO_TRANSFORMER_BLOCKS["emcad_no_transformer_blocks"], 1, 9)
    report = load_published_weights(ablated, path)
    theirs, ours = original.state_dict(), ablated.state_dict()
    assert set(report.loaded) == {k for k in original_report.loaded if k in ours}
    assert all(torch.equal(ours[k], theirs[k]) for k in report.loaded)
    blocks = {k for k in original_report.loaded if k not in ours}
    assert blocks and all(".blocks." in k for k in blocks)
    assert set(report.unused) == blocks | {"head.weight", "head.bias"}
    assert report.unused[min(blocks)].endswith("replaces by identity (Primus's ablation)")
    assert all(k.startswith(("decoder.", "rgb_stem.")) for k in report.kept)
