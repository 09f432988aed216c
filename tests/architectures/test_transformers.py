"""The transformer baselines: sizes of the official models, any planned patch, the official skips and padding,
initialisation, and what keeps them finite under nnU-Net's fp16 autocast.

The shared contract (deep supervision, flag off, strict loading, memory estimate) runs over these rows in
``test_contract.py``. Shape checks here run on the meta device (no memory, no compute).
"""

from pathlib import Path

import pytest
import torch
from test_contract import nnunet_target_sizes
from torch import nn

from nnunetv2_resunet.architectures.configs.transformers import OFFICIAL_PARAMETERS, TRANSFORMERS
from nnunetv2_resunet.architectures.encoders import timm as timm_encoder_module
from nnunetv2_resunet.architectures.encoders.swin import SwinEncoder
from nnunetv2_resunet.architectures.encoders.timm import TimmEncoder
from nnunetv2_resunet.architectures.encoders.vit_hybrid import ViTHybridEncoder
from nnunetv2_resunet.architectures.registry import build_network

# Non-square, not multiples of 16 or 32, one of them odd: nnU-Net plans such patches.
PATCH_SIZES = [(256, 224), (320, 288), (200, 168), (97, 75)]


@pytest.mark.parametrize("name", list(OFFICIAL_PARAMETERS))
def test_parameters_within_one_percent_of_the_official_model(name):
    """At 224 x 224 with 9 classes, as the papers' code builds them (one input channel, as nnU-Net gives)."""
    with torch.device("meta"):
        network = build_network(TRANSFORMERS[name], 1, 9, deep_supervision=True)
    parameters = sum(p.numel() for p in network.parameters())
    assert parameters == pytest.approx(OFFICIAL_PARAMETERS[name], rel=0.01)


@pytest.mark.parametrize("name", list(OFFICIAL_PARAMETERS))
def test_parameters_are_the_documented_counts(name):
    """docs/models.md states ours and the official count to 0.01 M (TransUNet: 105.28 M / 105.28 M): ours, rounded
    as the table rounds, is exactly both."""
    with torch.device("meta"):
        network = build_network(TRANSFORMERS[name], 1, 9, deep_supervision=True)
    ours = f"{sum(p.numel() for p in network.parameters()) / 1e6:.2f} M"
    trainer = {"transunet": "TransUNetTrainer", "swin_unet": "SwinUnetTrainer", "emcad": "EMCADTrainer"}[name]
    docs = (Path(__file__).parents[2] / "docs" / "models.md").read_text(encoding="utf-8")
    (row,) = [line for line in docs.splitlines() if line.startswith(f"| `{trainer}` |") and " M / " in line]
    assert f"| {ours} / {ours} |" in row, (ours, row)


@pytest.mark.parametrize("name", list(TRANSFORMERS))
@pytest.mark.parametrize("patch_size", PATCH_SIZES, ids=lambda s: f"{s[0]}x{s[1]}")
def test_any_planned_patch_size(name, patch_size):
    with torch.device("meta"):
        network = build_network(TRANSFORMERS[name], 1, 3, deep_supervision=True, patch_size=patch_size)
        outputs = network(torch.empty(2, 1, *patch_size))
    assert [tuple(o.shape[2:]) for o in outputs] == nnunet_target_sizes(patch_size, network.output_strides)
    assert max(network.output_strides) <= 16  # a target pixel for every patch of at least 9 pixels
    encoder = network.encoder
    if isinstance(encoder, ViTHybridEncoder):  # position embeddings for the planned grid, rounded up
        assert encoder.vit.pos_embed.shape[1] == -(-patch_size[0] // 16) * -(-patch_size[1] // 16)
    if isinstance(encoder, SwinEncoder):  # windows and masks built for the planned patch, rounded up
        first_block = encoder.swin.layers[0].blocks[0]
        assert first_block.input_resolution == tuple(-(-s // 32) * 8 for s in patch_size)


def test_swin_unet_skips_are_the_inputs_of_the_stage_blocks():
    """Swin-Unet's skips are the features before each stage's blocks, i.e. after timm's patch merging."""
    torch.manual_seed(0)
    encoder = SwinEncoder(1, "swin_tiny_patch4_window7_224", (64, 64), {"depths": (2, 2, 2, 2)}).eval()
    seen = {}
    for index in (1, 2):
        stage = encoder.swin.layers[index]
        stage.downsample.register_forward_hook(lambda m, i, o, index=index: seen.__setitem__(("merge", index), o))
        stage.blocks.register_forward_hook(lambda m, i, o, index=index: seen.__setitem__(("blocks", index), o))
    with torch.no_grad():
        features = encoder(torch.randn(1, 1, 64, 64))
    assert encoder.feature_names == ("patch_embed", "layers.1.downsample", "layers.2.downsample", "norm")
    for index in (1, 2):
        skip = features[f"layers.{index}.downsample"].permute(0, 2, 3, 1)  # the contract is NCHW, timm NHWC
        torch.testing.assert_close(skip, seen[("merge", index)])
        assert not torch.allclose(skip, seen[("blocks", index)])
    assert encoder.output_channels == (96, 192, 384, 768) and encoder.strides == (4, 8, 16, 32)


@pytest.fixture(scope="module")
def vit_hybrid() -> ViTHybridEncoder:
    torch.manual_seed(0)
    return ViTHybridEncoder(1, patch_size=(64, 64)).eval()


def test_transunet_pads_like_transunet_not_like_timm(vit_hybrid):
    """Symmetric conv padding and an unpadded stem pool; the short 1/4 features are zero-padded at the end."""
    backbone = vit_hybrid.vit.patch_embed.backbone
    assert backbone.stem.conv.padding == (3, 3) and backbone.stem.pool.padding == 0
    assert backbone.stages[1].blocks[0].conv2.padding == (1, 1)  # timm's hybrid pads 'same': (0, 1)
    projection = backbone.stages[0].blocks[0].downsample.norm
    assert projection.num_groups == projection.num_channels == 256 and projection.eps == 1e-5
    with torch.no_grad():
        features = vit_hybrid(torch.randn(1, 1, 64, 64))
    assert [tuple(features[n].shape[1:]) for n in vit_hybrid.feature_names] == \
        [(64, 32, 32), (256, 16, 16), (512, 8, 8), (768, 4, 4)]
    block1 = features["block1"]
    assert torch.all(block1[..., -1, :] == 0) and torch.all(block1[..., :, -1] == 0)
    assert block1[..., :-1, :-1].abs().sum() > 0


def test_transunet_repeats_a_grey_image_and_resizes_position_embeddings(vit_hybrid):
    """One channel goes through the RGB stem as three copies (weight standardisation makes summed filters
    inexact); another grid than the planned one gets the embeddings resized instead of failing."""
    assert vit_hybrid.repeat_grey and vit_hybrid.vit.patch_embed.backbone.stem.conv.in_channels == 3
    with torch.no_grad():
        wide = vit_hybrid(torch.randn(1, 1, 96, 64))["transformer"]
    assert wide.shape == (1, 768, 6, 4)
    two_channels = ViTHybridEncoder(2, patch_size=(32, 32))
    assert not two_channels.repeat_grey and two_channels.vit.patch_embed.backbone.stem.conv.in_channels == 2


def test_initialize_keeps_the_networks_own_initialisation():
    """nnU-Net applies ``initialize`` to every module; these networks initialised themselves (timm's init for the
    encoder, the official or He init for the decoder), so it must change nothing."""
    for config in TRANSFORMERS.values():
        with torch.device("meta"):
            network = build_network(config, 1, 3)
        assert network.initialize(nn.Conv2d(1, 1, 3)) is None
    emcad = build_network(TRANSFORMERS["emcad"], 1, 3)
    before = {k: v.clone() for k, v in emcad.state_dict().items()}
    emcad.apply(emcad.initialize)
    assert all(torch.equal(before[k], v) for k, v in emcad.state_dict().items())
    # EMCAD's grey-to-RGB conv exists for one channel only; with three the encoder takes them directly.
    assert emcad.rgb_stem is not None and build_network(TRANSFORMERS["emcad"], 3, 3).rgb_stem is None


def _output_dtypes(network: nn.Module, x: torch.Tensor, autocast_dtype: torch.dtype | None) -> dict[str, set]:
    """The dtypes the network's linear and conv layers output, by where they sit (encoder, decoder)."""
    dtypes = {"encoder": set(), "decoder": set()}
    for name, module in network.named_modules():
        part = name.split(".")[0]
        if part in dtypes and isinstance(module, (nn.Linear, nn.Conv2d)):
            kind = "linear" if isinstance(module, nn.Linear) else "conv"
            module.register_forward_hook(lambda m, i, o, part=part, kind=kind: dtypes[part].add((kind, o.dtype)))
    with torch.no_grad(), torch.autocast("cpu", dtype=autocast_dtype or torch.float32,
                                         enabled=autocast_dtype is not None):
        network(x)
    return dtypes


@pytest.mark.parametrize("name", list(TRANSFORMERS))
def test_fp16_autocast_runs_the_transformer_parts_in_bf16(name):
    """Under nnU-Net's fp16 autocast the transformer parts compute in bf16 (fp32's range); the convolutional
    decoders stay fp16. Outside autocast everything stays fp32."""
    torch.manual_seed(0)
    network = build_network(TRANSFORMERS[name], 1, 3, patch_size=(32, 32)).eval()
    x = torch.randn(1, 1, 32, 32)
    fp16 = _output_dtypes(network, x, torch.float16)
    assert {dtype for _, dtype in fp16["encoder"]} == {torch.bfloat16}
    transformer_decoder = name == "swin_unet"
    decoder_linear = {dtype for kind, dtype in fp16["decoder"] if kind == "linear"}
    decoder_conv = {dtype for kind, dtype in fp16["decoder"] if kind == "conv"}
    assert decoder_linear == ({torch.bfloat16} if transformer_decoder else set())
    assert decoder_conv == {torch.float16}
    fp32 = _output_dtypes(network, x, None)
    assert {dtype for _, dtype in fp32["encoder"] | fp32["decoder"]} == {torch.float32}


def test_an_activation_beyond_fp16_range_stays_finite(monkeypatch):
    """The failure the guard prevents: a transformer activation beyond 65504 (here the first block's MLP output,
    which joins the residual stream) is inf in fp16 and NaN after the next norm. Under the guard the same encoder
    computes in bf16 and stays finite."""
    torch.manual_seed(0)
    encoder = TimmEncoder(1, "pvt_v2_b0").eval()
    with torch.no_grad():
        encoder.timm_model.stages[0].blocks[0].mlp.fc2.weight.mul_(1e6)
    x = torch.randn(1, 1, 64, 64)
    with torch.no_grad(), torch.autocast("cpu", dtype=torch.float16):
        guarded = encoder(x)
    monkeypatch.setattr(timm_encoder_module, "fp16_safe", lambda function, *inputs: function(*inputs))
    with torch.no_grad(), torch.autocast("cpu", dtype=torch.float16):
        unguarded = encoder(x)
    assert all(torch.isfinite(f).all() for f in guarded.values())
    assert not all(torch.isfinite(f).all() for f in unguarded.values())


def test_emcad_mscb_saturates_at_six_as_in_emcads_synapse_configuration():
    """A one-channel MSCB with unit weights and identity BatchNorm, worked by hand: expansion, depth-wise conv and
    projection pass x through, each activation clips at 6 (ReLU6, EMCAD's --activation_mscb relu6), and the
    residual adds x: x + min(max(x, 0), 6). With plain ReLU an input of 10 would give 20."""
    from nnunetv2_resunet.architectures.decoders.emcad import MSCB

    block = MSCB(1, kernel_sizes=(1,), expansion_factor=1).eval()
    with torch.no_grad():
        for module in block.modules():
            if isinstance(module, nn.Conv2d):
                module.weight.fill_(1.0)
            elif isinstance(module, nn.BatchNorm2d):
                module.running_var.fill_(1.0 - module.eps)  # exactly the identity in eval mode
        x = torch.tensor([-2.0, 0.5, 3.0, 10.0]).view(1, 1, 2, 2)
        assert block(x).flatten().tolist() == pytest.approx([-2.0, 1.0, 6.0, 16.0])
    # In the whole decoder, ReLU6 sits in the MSCBs only; EUCB, LGAG and CAB keep ReLU (the official defaults).
    with torch.device("meta"):
        decoder = build_network(TRANSFORMERS["emcad"], 1, 9).decoder
    for name, module in decoder.named_modules():
        if isinstance(module, (nn.ReLU, nn.ReLU6)):
            in_mscb = name.startswith("mscb")
            assert isinstance(module, nn.ReLU6) == in_mscb, name


def test_emcad_predicts_with_the_last_head_upsampled():
    """EMCAD's evaluation (utils.test_single_volume) predicts with P[-1]: the stride-4 head, upsampled 4x
    bilinearly (EMCADNet: F.interpolate(p1, scale_factor=4, mode='bilinear')). The 1/32 head feeds nothing."""
    import dataclasses

    import torch.nn.functional as F

    torch.manual_seed(0)
    small = dataclasses.replace(TRANSFORMERS["emcad"], encoder="pvt_v2_b0")  # the same decoder, a fast encoder
    network = build_network(small, 1, 3, deep_supervision=True, patch_size=(64, 64)).eval()
    x = torch.randn(1, 1, 64, 64)
    with torch.no_grad():
        full, stride4, *_ = network(x)
        assert torch.equal(full, F.interpolate(stride4, scale_factor=4, mode="bilinear"))
        network.decoder.deep_supervision = False
        assert torch.equal(network(x), full)
        network.decoder.seg_layers[0].weight.add_(1.0)  # the 1/32 head
        assert torch.equal(network(x), full)


@pytest.mark.parametrize("name", list(TRANSFORMERS))
def test_no_transformer_blocks_removes_the_blocks_and_nothing_else(name):
    """Primus's ablation: the state dict is the original's without exactly the keys of its transformer blocks
    (attention + MLP, with their norms), every other tensor the same; no transformer block is left."""
    from nnunetv2_resunet.architectures.configs.transformers import NO_TRANSFORMER_BLOCKS
    from nnunetv2_resunet.architectures.timm_unet import RemovedBlock, transformer_blocks

    with torch.device("meta"):
        original = build_network(TRANSFORMERS[name], 1, 9, deep_supervision=True)
        ablated = build_network(NO_TRANSFORMER_BLOCKS[f"{name}_no_transformer_blocks"], 1, 9, deep_supervision=True)
    block_types = transformer_blocks()
    blocks = [prefix for prefix, module in original.named_modules() if isinstance(module, block_types)]
    assert blocks and not any(isinstance(m, block_types) for m in ablated.modules())
    assert [p for p, m in ablated.named_modules() if isinstance(m, RemovedBlock)] == blocks
    kept = {k: v.shape for k, v in original.state_dict().items() if not any(k.startswith(b + ".") for b in blocks)}
    assert {k: v.shape for k, v in ablated.state_dict().items()} == kept
    assert len(kept) < len(original.state_dict())
    assert ablated.output_strides == original.output_strides


def test_no_transformer_blocks_computes_the_original_with_identity_blocks():
    """Swin-Unet (blocks in the encoder and the decoder) with the same weights: the ablated network (the removal
    the config applies, on a copy; the test above ties the config to it) computes what the original computes when
    every block passes its input through."""
    import copy

    from nnunetv2_resunet.architectures.timm_unet import remove_transformer_blocks, transformer_blocks

    torch.manual_seed(0)
    original = build_network(TRANSFORMERS["swin_unet"], 1, 3, patch_size=(64, 64)).eval()
    ablated = copy.deepcopy(original)
    assert remove_transformer_blocks(ablated) == 8 + 6  # Swin-Unet: depths 2, 2, 2, 2; the decoder 2, 2, 2
    x = torch.randn(1, 1, 64, 64)
    with torch.no_grad():
        with_blocks = original(x)
        for module in original.modules():
            if isinstance(module, transformer_blocks()):
                module.register_forward_hook(lambda m, inputs, output: inputs[0])
        torch.testing.assert_close(ablated(x), original(x))
    assert not torch.allclose(with_blocks, ablated(x))  # the blocks did something in the original
