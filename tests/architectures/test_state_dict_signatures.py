"""Every config still builds exactly the state dict it built when its signature was recorded.

Users' checkpoints outlive our code layout: nnU-Net loads ``network_weights`` strictly into the network the
trainer builds, so a renamed module or a changed width breaks every checkpoint trained before. The committed
``state_dict_signatures.json`` holds each config's key names and tensor shapes (1 input channel, 9 classes, deep
supervision on; the heads are built either way). Changing it is a deliberate act, reviewed as a diff:

    python -m pytest tests/architectures/test_state_dict_signatures.py --update-signatures

rewrites the file from the code (a new config gets its row the same way).
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from nnunetv2_resunet.architectures.registry import NETWORK_CONFIGS, build_network

SIGNATURES_FILE = Path(__file__).with_name("state_dict_signatures.json")
INPUT_CHANNELS, NUM_CLASSES = 1, 9


def signature(name: str) -> dict[str, list[int]]:
    """Key names and shapes of the state dict of config ``name`` (built on the meta device: no memory)."""
    with torch.device("meta"):
        network = build_network(NETWORK_CONFIGS[name], INPUT_CHANNELS, NUM_CLASSES, deep_supervision=True)
    return {key: list(value.shape) for key, value in network.state_dict().items()}


def signatures_text(signatures: dict[str, dict[str, list[int]]]) -> str:
    """The JSON file's text: one line per tensor, so that a changed signature reads as a line diff."""
    lines = ["{", f'  "input_channels": {INPUT_CHANNELS},', f'  "num_classes": {NUM_CLASSES},', '  "configs": {']
    for i, (name, tensors) in enumerate(signatures.items()):
        lines.append(f"    {json.dumps(name)}: {{")
        rows = [f"      {json.dumps(key)}: {json.dumps(shape)}" for key, shape in tensors.items()]
        lines.append(",\n".join(rows))
        lines.append("    }" + ("," if i < len(signatures) - 1 else ""))
    lines += ["  }", "}", ""]
    return "\n".join(lines)


@pytest.fixture(scope="module")
def recorded(request) -> dict[str, dict[str, list[int]]]:
    if request.config.getoption("--update-signatures"):
        SIGNATURES_FILE.write_text(signatures_text({name: signature(name) for name in NETWORK_CONFIGS}))
    return json.loads(SIGNATURES_FILE.read_text())["configs"]


def test_every_config_has_a_recorded_signature(recorded):
    missing = sorted(set(NETWORK_CONFIGS) - set(recorded))
    assert not missing, f"configs without a recorded signature (add them with --update-signatures): {missing}"


@pytest.mark.parametrize("name", sorted(NETWORK_CONFIGS))
def test_state_dict_matches_recorded_signature(name, recorded):
    if name not in recorded:
        pytest.fail(f"{name} has no recorded signature; run with --update-signatures")
    actual, expected = signature(name), recorded[name]
    missing, unexpected = sorted(set(expected) - set(actual)), sorted(set(actual) - set(expected))
    reshaped = sorted(f"{k}: {expected[k]} -> {actual[k]}" for k in set(actual) & set(expected)
                      if actual[k] != expected[k])
    assert not (missing or unexpected or reshaped), (
        f"{name}'s state dict no longer matches the one checkpoints were trained with:\n"
        f"  keys gone: {missing[:10]}\n  keys new: {unexpected[:10]}\n  shapes changed: {reshaped[:10]}")
    # The order matters too: nnU-Net's --c restores the optimizer's momentum buffers by parameter index.
    assert list(actual) == list(expected), f"{name}: same keys, but in another order"
