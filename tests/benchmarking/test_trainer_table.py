"""The trainer table in README.md is generated, current, and covers every trainer nnU-Net can find."""

from pathlib import Path

import pytest

from nnunetv2_resunet.architectures.configs.comparisons import COMPARISONS
from nnunetv2_resunet.architectures.configs.ladder import LADDER
from nnunetv2_resunet.architectures.configs.transformers import NO_TRANSFORMER_BLOCKS, TRANSFORMERS
from nnunetv2_resunet.benchmarking.trainer_table import (
    DEFAULT_INPUT_CHANNELS,
    DEFAULT_NUM_CLASSES,
    DEFAULT_PATCH_SIZE,
    NNUNET_PLANS,
    TABLE_END,
    TABLE_START,
    markdown_table,
    measure,
    replace_table,
    trainer_stats,
)
from nnunetv2_resunet.training import ALL_TRAINERS

README = Path(__file__).resolve().parents[2] / "README.md"


def test_readme_table_is_current():
    rows = trainer_stats()
    table = markdown_table(rows, DEFAULT_PATCH_SIZE, DEFAULT_INPUT_CHANNELS, DEFAULT_NUM_CLASSES)
    document = README.read_text(encoding="utf-8")
    assert replace_table(document, table) == document, \
        "README.md's table is stale: run python -m nnunetv2_resunet.benchmarking.trainer_table --update README.md"
    assert len(rows) - len(NNUNET_PLANS) == len(ALL_TRAINERS) == \
        1 + len(LADDER) + 7 + len(TRANSFORMERS) + len(NO_TRANSFORMER_BLOCKS) + 1
    for row in rows:
        assert f"`{row.trainer}`" in document
    # nnU-Net's default and its ResEnc M and L presets, 2d, beside ours: the ResEnc network is residual and larger.
    nnunet = {row.plans: row for row in rows if row.plans}
    assert list(nnunet) == ["nnUNetPlans", "nnUNetResEncUNetMPlans", "nnUNetResEncUNetLPlans"]
    assert nnunet["nnUNetResEncUNetMPlans"].parameters > 2 * nnunet["nnUNetPlans"].parameters
    assert "| `nnUNetTrainer` `-p nnUNetResEncUNetLPlans` |" in document


def test_measure_counts_what_it_claims():
    """Parameters are the network's; FLOPs grow with the patch area (4x pixels, about 4x FLOPs)."""
    parameters, flops, strides = measure(LADDER["v0_1"], (64, 64))
    parameters_large, flops_large, _ = measure(LADDER["v0_1"], (128, 128))
    assert parameters == parameters_large > 20e6 and strides[0] == 1
    assert 3.5 * flops < flops_large < 4.5 * flops
    deeper, _, _ = measure(COMPARISONS["resunet_r50"], (64, 64))
    assert deeper > measure(LADDER["v1_0"], (64, 64))[0]
    with pytest.raises(ValueError, match=r"got \(64,\)"):
        measure(LADDER["v0_1"], (64,))


def test_replace_table_needs_both_markers():
    assert replace_table(f"a\n{TABLE_START}\nold\n{TABLE_END}\nb", "new") == f"a\n{TABLE_START}\nnew\n{TABLE_END}\nb"
    with pytest.raises(ValueError, match="needs the lines"):
        replace_table("no markers", "new")
