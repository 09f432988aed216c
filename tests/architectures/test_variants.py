"""The family's axes do what they claim: ResNet depths, decoders, the ResUnet fixes as switches, skip attention,
ImageNet loading at every depth, and the config tables' invariants."""

from dataclasses import replace

import pytest
import torch

from nnunetv2_resunet.architectures.building_blocks import Bottleneck
from nnunetv2_resunet.architectures.configs.comparisons import COMPARISONS, PLAIN_UNETS
from nnunetv2_resunet.architectures.configs.ladder import LADDER
from nnunetv2_resunet.architectures.configs.transformers import NO_TRANSFORMER_BLOCKS, TRANSFORMERS
from nnunetv2_resunet.architectures.conv_unet import ConvUNet, ConvUNetConfig
from nnunetv2_resunet.architectures.decoders.resunet import ResUnetDecoder
from nnunetv2_resunet.architectures.decoders.unet import UNetDecoder
from nnunetv2_resunet.architectures.decoders.unet3p import UNet3PlusDecoder
from nnunetv2_resunet.architectures.decoders.unetpp import UNetPlusPlusDecoder
from nnunetv2_resunet.architectures.encoders.resnet import RESNET_ENCODERS, resnet_encoder
from nnunetv2_resunet.architectures.pretrained import load_torchvision_resnet
from nnunetv2_resunet.architectures.registry import NETWORK_CONFIGS, build_network
from nnunetv2_resunet.architectures.resunet import DECODERS, ResUnet, ResUnetConfig, build_encoder

SEED = LADDER["v0_1"]
DECODER_CLASSES = {"resunet": ResUnetDecoder, "unet": UNetDecoder, "unetpp": UNetPlusPlusDecoder,
                   "unet3p": UNet3PlusDecoder}
TORCHVISION_CHANNELS = {18: (64, 64, 128, 256, 512), 34: (64, 64, 128, 256, 512),
                        50: (64, 256, 512, 1024, 2048), 101: (64, 256, 512, 1024, 2048),
                        152: (64, 256, 512, 1024, 2048)}


@pytest.mark.parametrize("depth", list(RESNET_ENCODERS))
@pytest.mark.parametrize("decoder", DECODERS)
def test_every_depth_with_every_decoder(depth, decoder):
    """Built on the meta device (no memory, no compute): shapes and widths only."""
    config = replace(SEED, decoder=decoder, **resnet_encoder(depth))
    with torch.device("meta"):
        net = ResUnet(1, 2, config, deep_supervision=True)
        outputs = net(torch.empty(1, 1, 40, 36))
    assert isinstance(net.decoder, DECODER_CLASSES[decoder])
    assert net.encoder.output_channels == TORCHVISION_CHANNELS[depth]
    assert len(outputs) == len(net.output_strides)
    assert tuple(outputs[0].shape) == (1, 2, 40, 36)
    n_blocks = sum(len(getattr(net.encoder, f"layer{i}")) for i in range(1, 5))
    assert n_blocks == sum(RESNET_ENCODERS[depth]["blocks"])


@pytest.mark.parametrize("decoder", DECODERS)
def test_decoder_widths_do_not_grow_with_encoder_depth(decoder):
    """The documented rule: decoders are sized by the nominal widths, so every conv of R50's .. R152's decoder has
    the output width it has on a ResNet-34; only the convs that read encoder features have wider inputs."""
    def decoder_widths(depth):
        with torch.device("meta"):
            net = ResUnet(1, 2, replace(SEED, decoder=decoder, **resnet_encoder(depth)))
        convs = [m for m in net.decoder.modules() if isinstance(m, (torch.nn.Conv2d, torch.nn.ConvTranspose2d))]
        return [c.out_channels for c in convs], [c.in_channels for c in convs]

    (out34, in34), (out50, in50), (out152, in152) = decoder_widths(34), decoder_widths(50), decoder_widths(152)
    assert out34 == out50 == out152
    assert in50 == in152 and in50 != in34


def test_unknown_depth_block_and_decoder_are_rejected():
    with pytest.raises(ValueError, match="one of .*got 42"):
        resnet_encoder(42)
    with pytest.raises(ValueError, match="block must be one of .*'wide'"):
        replace(SEED, block="wide")
    with pytest.raises(ValueError, match="decoder must be one of .*'fpn'"):
        replace(SEED, decoder="fpn")
    with pytest.raises(ValueError, match="strided downsampling needs block='residual'"):
        ConvUNetConfig(name="x", change="x", downsampling="stride")


def test_bottleneck_block_has_torchvision_names_and_expansion():
    block = Bottleneck(64, 64, stride=2)
    assert {k.rsplit(".", 1)[0] for k in block.state_dict()} == {
        "conv1", "bn1", "conv2", "bn2", "conv3", "bn3", "downsample.0", "downsample.1"}
    assert block.conv2.stride == (2, 2) and block.conv1.stride == (1, 1)  # torchvision v1.5
    assert block(torch.randn(1, 64, 8, 8)).shape == (1, 256, 4, 4)


@pytest.mark.parametrize("depth", list(RESNET_ENCODERS))
def test_torchvision_state_dict_loads_at_every_depth(depth):
    import torchvision  # installed with nnunetv2 (dynamic-network-architectures -> timm); only tests use it

    torch.manual_seed(depth)
    state_dict = getattr(torchvision.models, f"resnet{depth}")(weights=None).state_dict()
    # With the fix-3a tail, which has no torchvision counterpart and keeps its initialisation.
    encoder = build_encoder(1, replace(LADDER["v1_0"], **resnet_encoder(depth)))
    kept = load_torchvision_resnet(encoder, state_dict, f"resnet{depth}")
    assert kept and all(k.startswith("tail.") for k in kept)
    loaded = encoder.state_dict()
    for key, value in state_dict.items():
        if key.startswith("fc."):
            continue
        expected = value.sum(dim=1, keepdim=True) if key == "conv1.weight" else value
        torch.testing.assert_close(loaded[key], expected, msg=key)


def test_depth_mismatch_is_a_clear_error():
    import torchvision  # installed with nnunetv2 (dynamic-network-architectures -> timm); only tests use it

    from nnunetv2_resunet.architectures.pretrained import PretrainedWeightsError
    encoder = build_encoder(3, replace(SEED, **resnet_encoder(50)))
    with pytest.raises(PretrainedWeightsError, match="resnet34.pth lacks 102 encoder keys.*another depth"):
        load_torchvision_resnet(encoder, torchvision.models.resnet34(weights=None).state_dict(), "resnet34.pth")


def test_tail_works_at_the_nominal_width():
    r34 = build_encoder(1, LADDER["v1_0"])
    r50 = build_encoder(1, replace(LADDER["v1_0"], **resnet_encoder(50)))
    assert r34.output_channels[-1] == r50.output_channels[-1] == 512
    assert r50.tail[0][0].in_channels == 2048 and r34.tail[0][0].in_channels == 512
    assert len(r50.tail) == LADDER["v1_0"].bottleneck_convs


def _output_with_feature_replaced(net: torch.nn.Module, feature: str, x: torch.Tensor) -> torch.Tensor:
    """The network's output when the encoder hands the decoder noise instead of ``feature``."""
    def replace_feature(module, inputs, features):
        features = dict(features)
        features[feature] = torch.randn_like(features[feature])
        return features

    handle = net.encoder.register_forward_hook(replace_feature)
    try:
        with torch.no_grad():
            return net(x)
    finally:
        handle.remove()


@pytest.mark.parametrize("decoder", ("resunet", "unet", "unet3p"))
def test_a_dropped_skip_is_not_read_and_a_kept_one_is(decoder):
    """Fix 2 as a switch: without the layer1 skip these decoders never read layer1."""
    torch.manual_seed(0)
    config = replace(SEED, decoder=decoder, **resnet_encoder(18), skips=("layer3", "layer2", "stem"))
    net = ResUnet(1, 2, config).eval()
    x = torch.randn(1, 1, 64, 64)
    with torch.no_grad():
        reference = net(x)
    torch.testing.assert_close(_output_with_feature_replaced(net, "layer1", x), reference)
    assert not torch.allclose(_output_with_feature_replaced(net, "layer2", x), reference)


def test_a_dropped_skip_leaves_the_unetpp_nodes_of_its_level():
    """UNet++: the dropped level's encoder feature is concatenated into none of its nodes X(1, j) (widths: only the
    j - 1 earlier nodes), but still feeds X(0, 1) from below, the start of the stem level's nested pathway."""
    dropped = ResUnet(1, 2, replace(SEED, decoder="unetpp", skips=("layer3", "layer2", "stem")))
    kept = ResUnet(1, 2, replace(SEED, decoder="unetpp"))
    for j in range(1, 4):
        assert dropped.decoder.nodes[f"x1_{j}"].skip_channels == (j - 1) * 64
        assert kept.decoder.nodes[f"x1_{j}"].skip_channels == j * 64
    assert dropped.decoder.nodes["x0_1"].up.in_channels == 64
    x = torch.randn(1, 1, 64, 64)
    with torch.no_grad():
        reference = dropped.eval()(x)
    assert not torch.allclose(_output_with_feature_replaced(dropped, "layer1", x), reference)


@pytest.mark.parametrize("decoder", DECODERS)
def test_stem_maxpool_switch_halves_the_total_stride(decoder):
    with torch.device("meta"):
        seed = ResUnet(1, 2, replace(SEED, decoder=decoder))
        fixed = ResUnet(1, 2, replace(SEED, decoder=decoder, stem_maxpool=False))
    assert (seed.total_stride, fixed.total_stride) == (32, 16)
    assert not hasattr(fixed.encoder.maxpool, "kernel_size")


def test_unetpp_heads_are_the_nested_top_nodes():
    torch.manual_seed(0)
    net = ResUnet(1, 2, COMPARISONS["unetpp_r34"], deep_supervision=True).eval()
    assert net.output_strides == (1, 1, 1, 1)
    assert sorted(net.decoder.nodes) == sorted(f"x{i}_{j}" for j in range(1, 5) for i in range(5 - j))
    with torch.no_grad():
        outputs = net(torch.randn(1, 1, 64, 64))
    assert all(o.shape == (1, 2, 64, 64) for o in outputs)
    assert not torch.allclose(outputs[0], outputs[-1])


def test_unet3p_stages_fuse_every_scale():
    net = ResUnet(1, 2, COMPARISONS["unet3p_r34"])
    # Five levels: every stage fuses five sources of 64 channels (the paper's 320).
    assert [stage.out_channels for stage in net.decoder.stages] == [320] * 4
    assert net.decoder.stages[-1].keys == ("e0", "d1", "d2", "d3", "d4")
    assert net.decoder.stages[0].keys == ("e0", "e1", "e2", "e3", "d4")


def test_classic_unet_is_the_paper_layout():
    net = ConvUNet(1, 2, PLAIN_UNETS["classic_unet"])
    assert net.encoder.output_channels == (64, 128, 256, 512, 1024)
    assert all(isinstance(level[0], torch.nn.MaxPool2d) for level in net.encoder.levels[1:])
    convs = [m for m in net.encoder.levels[2].modules() if isinstance(m, torch.nn.Conv2d)]
    assert [(c.kernel_size, c.out_channels) for c in convs] == [((3, 3), 256)] * 2
    assert net.output_strides == (1, 2, 4, 8)


def test_residual_unet_uses_residual_units_and_strided_downsampling():
    net = ConvUNet(1, 2, PLAIN_UNETS["residual_unet"])
    first_convs = [next(m for m in level.convs if isinstance(m, torch.nn.Conv2d)) for level in net.encoder.levels]
    assert [conv.stride for conv in first_convs] == [(1, 1), (2, 2), (2, 2), (2, 2)]
    # Full pre-activation, except the first unit, which sees the image.
    assert [isinstance(level.convs[0], torch.nn.BatchNorm2d) for level in net.encoder.levels] == \
        [False, True, True, True]
    assert all(hasattr(stage.convs, "shortcut") for stage in net.decoder.stages)


def test_spatial_attention_switch_gates_the_skips():
    """An open gate (sigmoid ~ 1) gives the ungated network's output; a gate that closes changes it."""
    torch.manual_seed(0)
    gated = ConvUNet(1, 2, PLAIN_UNETS["residual_unet_sa"]).eval()
    plain = ConvUNet(1, 2, PLAIN_UNETS["residual_unet"]).eval()
    gates = [stage.gate for stage in gated.decoder.stages]
    assert all(gate is not None for gate in gates) and all(s.gate is None for s in plain.decoder.stages)
    assert all(gate.conv.kernel_size == (7, 7) and gate.conv.in_channels == 2 for gate in gates)
    result = plain.load_state_dict(gated.state_dict(), strict=False)
    assert not result.missing_keys and all(".gate." in k for k in result.unexpected_keys)
    x = torch.randn(1, 1, 32, 32)
    with torch.no_grad():
        for gate in gates:
            gate.conv.weight.zero_()
            gate.conv.bias.fill_(30.0)
        torch.testing.assert_close(gated(x), plain(x))
        for gate in gates:
            gate.conv.bias.fill_(-30.0)
        assert not torch.allclose(gated(x), plain(x))


def test_tables_are_rows_of_the_registry_with_unique_names():
    for table in (LADDER, COMPARISONS, PLAIN_UNETS, TRANSFORMERS, NO_TRANSFORMER_BLOCKS):
        for name, config in table.items():
            assert config.name == name and NETWORK_CONFIGS[name] is config
    assert len(NETWORK_CONFIGS) == len(LADDER) + len(COMPARISONS) + len(PLAIN_UNETS) + len(TRANSFORMERS) + \
        len(NO_TRANSFORMER_BLOCKS)
    assert all(isinstance(c, ResUnetConfig) for c in COMPARISONS.values())
    with pytest.raises(ValueError, match="no network for a dict"):
        build_network({}, 1, 2)
