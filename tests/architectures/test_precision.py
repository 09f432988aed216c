"""Which precision the transformer parts take under nnU-Net's fp16 autocast, decided by the GPU's real bfloat16
support (compute capability), and how tensors cross into and out of those parts."""

from types import SimpleNamespace

import pytest
import torch

from nnunetv2_resunet.architectures import precision
from nnunetv2_resunet.architectures.precision import assume_compute_capability, fp16_safe, native_bf16

GPUS = {"V100": (7, 0), "T4": (7, 5), "A100": (8, 0), "RTX 3090": (8, 6), "H100": (9, 0)}


@pytest.mark.parametrize("gpu", list(GPUS))
def test_native_bf16_is_the_compute_capability_not_torchs_emulation_answer(gpu, monkeypatch):
    """``torch.cuda.is_bf16_supported()`` answers True on a V100 (it counts emulation); the decision must not."""
    major, minor = GPUS[gpu]
    monkeypatch.setattr(torch.version, "hip", None)
    monkeypatch.setattr(torch.cuda, "is_bf16_supported", lambda including_emulation=True: True)
    monkeypatch.setattr(torch.cuda, "get_device_properties", lambda device=None: SimpleNamespace(
        major=major, minor=minor, name=gpu))
    assert native_bf16(torch.device("cuda", 0)) is (GPUS[gpu] >= (8, 0))


def test_cpu_and_assumed_gpus():
    assert native_bf16(torch.device("cpu"))
    with assume_compute_capability((7, 0)):
        assert not native_bf16(torch.device("cpu"))
        with assume_compute_capability((9, 0)):
            assert native_bf16(torch.device("cpu"))
        assert not native_bf16(torch.device("cpu"))
    assert precision._assumed_capability is None


def _probe(x: torch.Tensor, skip: torch.Tensor) -> dict[str, torch.Tensor]:
    """A stand-in transformer part: a matmul (autocast casts it) and an op autocast leaves alone."""
    weight = torch.ones(x.shape[-1], 3)
    return {"linear": x @ weight, "sum": x + skip}


@pytest.mark.parametrize("gpu, inner", [("A100", torch.bfloat16), ("V100", torch.float32)])
def test_a_part_computes_in_bf16_or_fp32_and_hands_float32_back(gpu, inner):
    """A float16 input (EMCAD's RGB stem hands the encoder one) enters a float32 part as float32, not as a float16
    tensor that meets float32 weights; whatever the part computed leaves as float32."""
    seen = {}

    def part(x, skip):
        seen["input"] = x.dtype
        out = _probe(x, skip)
        seen["linear"] = out["linear"].dtype
        return out

    x = torch.randn(2, 4)
    with assume_compute_capability(GPUS[gpu]), torch.autocast("cpu", dtype=torch.float16):
        half = x @ torch.eye(4)  # what a convolution before the part gives it
        assert half.dtype == torch.float16
        out = fp16_safe(part, half, torch.randn(2, 4))
    assert seen["input"] == (torch.float16 if inner == torch.bfloat16 else torch.float32)
    assert seen["linear"] == inner
    assert {t.dtype for t in out.values()} == {torch.float32}


def test_outside_fp16_autocast_nothing_changes():
    x = torch.randn(2, 4)
    assert fp16_safe(_probe, x, x)["linear"].dtype == torch.float32
    with torch.autocast("cpu", dtype=torch.bfloat16):
        assert fp16_safe(_probe, x, x)["linear"].dtype == torch.bfloat16  # a bf16 run stays the caller's
