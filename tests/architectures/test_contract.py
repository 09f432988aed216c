"""nnU-Net's network contract, checked for every config of every table (``registry.NETWORK_CONFIGS``).

A new variant is tested by adding its row to a table. Networks are built once per config (module cache) and
run on tiny inputs, so the whole file stays a few seconds per config on a CPU.
"""

import pytest
import torch
from batchgeneratorsv2.transforms.utils.deep_supervision_downsampling import DownsampleSegForDSTransform

from nnunetv2_resunet.architectures.registry import NETWORK_CONFIGS, build_network

IN_CHANNELS, NUM_CLASSES = 1, 3
# Sizes that are not multiples of any network's stride (the padding path; 12 x 9 is below every deepest stride);
# 64 x 64 is one (the direct path).
SIZES = [(40, 36), (33, 47), (12, 9)]

_cache: dict[tuple[str, bool], torch.nn.Module] = {}


def network(name: str, deep_supervision: bool = True) -> torch.nn.Module:
    """The network of ``name``, He-initialised with a fixed seed, in eval mode (BN uses running stats)."""
    key = (name, deep_supervision)
    if key not in _cache:
        torch.manual_seed(0)
        net = build_network(NETWORK_CONFIGS[name], IN_CHANNELS, NUM_CLASSES, deep_supervision=deep_supervision)
        net.apply(net.initialize)
        _cache[key] = net.eval()
    return _cache[key]


def nnunet_target_sizes(size: tuple[int, int], strides: tuple[int, ...]) -> list[tuple[int, int]]:
    """The target sizes nnU-Net's DownsampleSegForDSTransform makes for our deep-supervision scales."""
    transform = DownsampleSegForDSTransform(ds_scales=[[1 / s, 1 / s] for s in strides])
    targets = transform(segmentation=torch.zeros((1, *size), dtype=torch.uint8))["segmentation"]
    return [tuple(t.shape[1:]) for t in targets]


@pytest.fixture(scope="module", autouse=True)
def _free_cache():
    yield
    _cache.clear()


@pytest.mark.parametrize("name", list(NETWORK_CONFIGS))
@pytest.mark.parametrize("size", SIZES, ids=lambda s: f"{s[0]}x{s[1]}")
def test_deep_supervision_outputs_match_nnunet_targets(name, size):
    net = network(name)
    with torch.no_grad():
        outputs = net(torch.randn(2, IN_CHANNELS, *size))
    assert isinstance(outputs, list)
    assert len(outputs) == len(net.output_strides) >= 2
    assert net.output_strides[0] == 1
    assert list(net.output_strides) == sorted(net.output_strides), "full resolution first"
    assert [tuple(o.shape[2:]) for o in outputs] == nnunet_target_sizes(size, net.output_strides)
    assert all(o.shape[:2] == (2, NUM_CLASSES) for o in outputs)


@pytest.mark.parametrize("name", list(NETWORK_CONFIGS))
def test_flag_off_gives_the_full_resolution_output(name):
    net = network(name)
    x = torch.randn(1, IN_CHANNELS, 40, 36)
    with torch.no_grad():
        with_ds = net(x)
        net.decoder.deep_supervision = False
        try:
            without = net(x)
        finally:
            net.decoder.deep_supervision = True
    assert isinstance(without, torch.Tensor)
    assert without.shape == (1, NUM_CLASSES, 40, 36)
    torch.testing.assert_close(without, with_ds[0])


@pytest.mark.parametrize("name", list(NETWORK_CONFIGS))
def test_state_dict_loads_strictly_with_deep_supervision_off(name):
    trained = network(name)
    fresh = build_network(NETWORK_CONFIGS[name], IN_CHANNELS, NUM_CLASSES, deep_supervision=False).eval()
    fresh.load_state_dict(trained.state_dict(), strict=True)
    x = torch.randn(1, IN_CHANNELS, 64, 64)
    with torch.no_grad():
        torch.testing.assert_close(fresh(x), trained(x)[0])


@pytest.mark.parametrize("name", list(NETWORK_CONFIGS))
def test_conv_feature_map_size_positive_and_increasing(name):
    net = network(name)
    small, large = net.compute_conv_feature_map_size((40, 36)), net.compute_conv_feature_map_size((80, 72))
    assert 0 < small < large
    with pytest.raises(ValueError, match="without batch or channel"):
        net.compute_conv_feature_map_size((1, 40, 36))


@pytest.mark.parametrize("name", list(NETWORK_CONFIGS))
def test_logits_not_probabilities(name):
    """nnU-Net applies softmax (or sigmoid for regions) itself: the outputs must be raw logits, neither
    probabilities (softmax: sum 1 over classes; sigmoid: all in [0, 1]) nor log-probabilities (log_softmax:
    logsumexp 0 over classes)."""
    with torch.no_grad():
        out = network(name)(torch.randn(1, IN_CHANNELS, 40, 36))[0]
    assert not torch.allclose(out.sum(dim=1), torch.ones(()))
    assert not torch.allclose(torch.logsumexp(out, dim=1), torch.zeros(()), atol=1e-4)
    assert not ((out >= 0) & (out <= 1)).all()


@pytest.mark.parametrize("name", list(NETWORK_CONFIGS))
def test_rejects_non_positive_channels(name):
    with pytest.raises(ValueError, match="must be positive, got 0"):
        build_network(NETWORK_CONFIGS[name], 0, NUM_CLASSES)


@pytest.mark.parametrize("name", list(NETWORK_CONFIGS))
def test_without_deep_supervision_exactly_the_unused_heads_stop_training(name):
    """nnU-Net wraps the network in DDP without ``find_unused_parameters``: a parameter that requires a gradient
    must get one. With deep supervision off, exactly the parameters a real backward leaves without gradient stop
    requiring one (heads only), and switching it back on makes them trainable again: all of them, except EMCAD's
    1/32 head, which no output uses in either mode (its official prediction is the last head alone)."""
    net = network(name)
    net.set_deep_supervision(False)
    try:
        frozen = {n for n, p in net.named_parameters() if not p.requires_grad}
        net.zero_grad(set_to_none=True)
        net(torch.randn(1, IN_CHANNELS, 40, 36)).sum().backward()
        assert frozen == {n for n, p in net.named_parameters() if p.grad is None}
        assert all(".seg_layers." in n for n in frozen)
    finally:
        net.set_deep_supervision(True)
        net.zero_grad(set_to_none=True)
    unused_in_both = {"decoder.seg_layers.0.weight", "decoder.seg_layers.0.bias"} if name.startswith("emcad") else set()
    assert {n for n, p in net.named_parameters() if not p.requires_grad} == unused_in_both
    sum(o.sum() for o in net(torch.randn(1, IN_CHANNELS, 40, 36))).backward()
    assert all(p.grad is not None for p in net.parameters() if p.requires_grad)
    net.zero_grad(set_to_none=True)
