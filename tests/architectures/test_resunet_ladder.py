"""The ladder's own claims: torchvision names, nnU-Net's memory estimate, SyncBatchNorm, and the one change each
ladder step makes. The contract every network of the family honours (shapes for any size, deep supervision vs
nnU-Net's targets, strict loads with deep supervision off, logits) is tested in test_family_contract.py."""

import dataclasses

import pytest
import torch
from torch import nn
from torch.utils.flop_counter import FlopCounterMode

from nnunetv2_resunet.architectures.configs.ladder import LADDER
from nnunetv2_resunet.architectures.resunet import ResUnet, ResUnetConfig

NUM_CLASSES = 4


@pytest.fixture(scope="module", params=list(LADDER))
def config(request) -> ResUnetConfig:
    return LADDER[request.param]


def build(config: ResUnetConfig, deep_supervision: bool, input_channels: int = 1, seed: int = 0) -> ResUnet:
    torch.manual_seed(seed)
    network = ResUnet(input_channels, NUM_CLASSES, config, deep_supervision=deep_supervision)
    network.apply(ResUnet.initialize)
    return network.eval()


def flops(network: nn.Module, size: tuple[int, int]) -> int:
    counter = FlopCounterMode(display=False)
    with counter, torch.no_grad():
        network(torch.zeros(1, network.encoder.conv1.in_channels, *size))
    return counter.get_total_flops()


def test_encoder_keeps_torchvision_names(config):
    import torchvision  # installed with nnunetv2 (dynamic-network-architectures -> timm); only tests use it

    network = build(config, deep_supervision=False, input_channels=3)
    reference = {k: v.shape for k, v in torchvision.models.resnet34(weights=None).state_dict().items()
                 if not k.startswith("fc.")}
    ours = {k: v.shape for k, v in network.encoder.state_dict().items() if not k.startswith("tail.")}
    assert ours == reference


def test_conv_feature_map_size_counts_conv_outputs(config):
    """The meta-device estimate equals the conv outputs of a real forward, for a size needing padding too."""
    network = build(config, deep_supervision=True)
    for size in [(64, 48), (37, 50)]:
        counted = []
        hooks = [m.register_forward_hook(lambda m, i, o, counted=counted: counted.append(o.numel()))
                 for m in network.modules() if isinstance(m, (nn.Conv2d, nn.ConvTranspose2d))]
        with torch.no_grad():
            network(torch.zeros(1, 1, *size))
        for hook in hooks:
            hook.remove()
        assert network.compute_conv_feature_map_size(size) == sum(counted)
    assert network.compute_conv_feature_map_size((128, 128)) > network.compute_conv_feature_map_size((64, 64))


def test_sync_batchnorm_conversion_keeps_the_state_dict(config):
    """nnU-Net's DDP path converts BatchNorm to SyncBatchNorm; checkpoints must load either way."""
    network = build(config, deep_supervision=True)
    converted = nn.SyncBatchNorm.convert_sync_batchnorm(build(config, deep_supervision=True, seed=3))
    assert any(isinstance(m, nn.SyncBatchNorm) for m in converted.modules())
    converted.load_state_dict(network.state_dict(), strict=True)


# Each step's parent and the state-dict entries its one change may touch (key prefixes). Adding a ladder row means
# adding a line here.
LADDER_STEPS = {
    "v0_2": ("v0_1", ()),
    "v0_3": ("v0_1", ("decoder.stages.3.up.",)),  # the upsampler into the stem's stage no longer upsamples
    "v0_4": ("v0_3", ("decoder.stages.2.convs.0.0.",)),  # layer1's stage fuses nothing: 64 fewer inputs
    "v0_5": ("v0_4", ("encoder.tail.",)),
    "v0_6": ("v0_5", ("decoder.stages.0.convs.", "decoder.stages.1.up.", "decoder.seg_layers.0.")),
    "v0_7": ("v0_6", ("decoder.stages.2.convs.0.0.",)),
    "v1_0": ("v0_6", ("decoder.stages.1.convs.", "decoder.stages.2.up.", "decoder.seg_layers.1.")),
}


def shapes(network: nn.Module) -> dict[str, tuple[int, ...]]:
    return {k: tuple(v.shape) for k, v in network.state_dict().items()}


def test_every_ladder_step_is_described():
    assert set(LADDER_STEPS) | {"v0_1"} == set(LADDER)


@pytest.mark.parametrize("step", list(LADDER_STEPS))
def test_ladder_step_changes_only_what_it_claims(step):
    parent_name, touched = LADDER_STEPS[step]
    child, parent = shapes(build(LADDER[step], True)), shapes(build(LADDER[parent_name], True))
    differing = {k for k in child.keys() | parent.keys() if child.get(k) != parent.get(k)}
    assert all(k.startswith(touched) for k in differing), sorted(differing)
    assert bool(differing) == bool(touched)
    for prefix in touched:
        assert any(k.startswith(prefix) for k in differing), f"{step}: nothing changed under {prefix}"


def test_v0_2_is_v0_1_with_imagenet_weights():
    changed = {f.name for f in dataclasses.fields(ResUnetConfig)
               if getattr(LADDER["v0_2"], f.name) != getattr(LADDER["v0_1"], f.name)}
    assert changed == {"name", "change", "imagenet_init"}


def test_v0_3_costs_several_times_v0_1():
    """Without the stem max-pool every layer runs at twice the resolution: about 4x the encoder's compute."""
    size = (128, 128)
    v0_1, v0_3 = build(LADDER["v0_1"], False), build(LADDER["v0_3"], False)
    assert flops(v0_3, size) > 3 * flops(v0_1, size)
    assert v0_3.total_stride == 16 and v0_1.total_stride == 32


def test_v1_0_stage_widths():
    """Our reading of the thesis: layer3's stage 768 -> 512, layer2's 384 -> 384, layer1's 128 -> 96 (no skip)."""
    stages = build(LADDER["v1_0"], False).decoder.stages
    widths = [(s.convs[0][0].in_channels, s.convs[0][0].out_channels) for s in stages]
    assert widths == [(768, 512), (384, 384), (128, 96), (128, 64), (32, 32)]


def test_invalid_config_is_refused():
    with pytest.raises(ValueError, match="unknown skip sources"):
        dataclasses.replace(LADDER["v1_0"], skips=("layer5",))


def test_readme_accounts_for_the_thesis_parameter_count():
    """README's sentence on the thesis's 21.3 M against our 36.67 M: each figure recounted from the networks."""
    import re
    from pathlib import Path

    import torchvision

    readme = (Path(__file__).resolve().parents[2] / "README.md").read_text(encoding="utf-8")
    text = " ".join(readme[readme.index("**The thesis's \"21.3 M parameters\""):].split("\n\n")[0].split())
    resnet34 = torchvision.models.resnet34()
    without_classifier = sum(p.numel() for n, p in resnet34.named_parameters() if not n.startswith("fc."))
    network = ResUnet(1, 9, LADDER["v1_0"], deep_supervision=True)
    parts = {"encoder": 0, "tail": 0, "stages": 0, "heads": 0}
    for name, parameter in network.named_parameters():
        part = ("tail" if name.startswith("encoder.tail") else "encoder" if name.startswith("encoder.")
                else "heads" if name.startswith("decoder.seg_layers") else "stages")
        parts[part] += parameter.numel()

    def millions(count: int) -> str:
        return f"{count / 1e6:.2f} M"

    assert f"less `fc`: {millions(without_classifier)})" in text and round(without_classifier / 1e6, 1) == 21.3
    assert f"counts: encoder {millions(parts['encoder'])}" in text
    assert f"tail (two 3x3 conv-BN-ReLU at 512 channels) {millions(parts['tail'])}" in text
    assert f"decoder stages {millions(parts['stages'])} and the segmentation heads {millions(parts['heads'])}" in text
    assert f"{millions(sum(parts.values()))} in all" in text
    assert re.search(r"36\.67 M for v1\.0", text) and millions(sum(parts.values())) == "36.67 M"
