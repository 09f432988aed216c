"""``nnUNetv2_resunet_check`` through its console command on CPU at 32 x 32: the same code a GPU user runs, at a
size the suite can afford (its CPU figures say nothing about a GPU)."""

import json
import subprocess

import pytest
from nnunet_workspace import console_script

from nnunetv2_resunet.architectures.configs.ladder import LADDER
from nnunetv2_resunet.experiment_planning.resunet_planner import (
    RESUNET_REFERENCE_VAL_2D,
    planned_2d_batch_size,
    resunet_feature_map_size,
)

TINY = ["-device", "cpu", "-patch_size", "32", "32", "-batch_size", "2", "-num_classes", "3", "-warmup", "1",
        "-steps", "2"]


def check(tmp_path, *args: str) -> tuple[subprocess.CompletedProcess, dict, str]:
    result = subprocess.run([*console_script("nnUNetv2_resunet_check"), *TINY, *args, "-o", str(tmp_path)],
                            capture_output=True, text=True, timeout=900)
    assert result.returncode in (0, 1), result.stderr[-3000:]
    return result, json.loads((tmp_path / "check.json").read_text()), (tmp_path / "check.md").read_text()


@pytest.mark.integration
def test_a_healthy_check_reports_every_figure(tmp_path):
    result, report, markdown = check(tmp_path, "-tr", "ResUnetTrainer_v0_1", "-compiled", "nnUNetTrainer",
                                     "-compile_backend", "aot_eager", "-memory_targets", "0.01")
    assert result.returncode == 0 and report["healthy"], markdown
    assert report["environment"]["packages"]["nnunetv2"].startswith("2.8")
    assert report["environment"]["transformer_parts_under_fp16"] == "bfloat16"  # a CPU computes bf16
    rows = {(r["trainer"], r["compiled"]): r for r in report["training"]}
    assert set(rows) == {("nnUNetTrainer", False), ("nnUNetTrainer", True), ("ResUnetTrainer_v0_1", False)}
    for row in rows.values():
        assert row["finite"] and row["batch_size"] == 2 and row["patch_size"] == [32, 32] and row["step_ms"] > 0
        assert row["grad_scale"] is None and row["mfu"] is None  # nnU-Net's CPU step: no GradScaler; no GPU peak
    assert rows[("nnUNetTrainer", False)]["step_ratio"] == rows[("nnUNetTrainer", True)]["step_ratio"] == 1.0
    assert rows[("ResUnetTrainer_v0_1", False)]["parameters"] == pytest.approx(26.46e6, rel=1e-3)
    ours = next(r for r in report["planner"] if r["trainer"] == "ResUnetTrainer")
    assert ours["planned_batch"] == planned_2d_batch_size(
        resunet_feature_map_size(LADDER["v1_0"], (32, 32), 1, 3), RESUNET_REFERENCE_VAL_2D, 0.01)
    assert report["prediction"]["label_agreement"] == 1.0 and report["prediction"]["devices"] == "cpu vs cpu"
    assert "**Healthy.**" in markdown and "| ResUnetTrainer_v0_1 | no | 26.5 | yes |" in markdown
    assert "ResUnet v1.0's step at most 2x" in markdown and "wrote " in result.stdout


def test_a_broken_trainer_makes_it_unhealthy_and_the_others_still_run(tmp_path):
    """The same entry point in this process (the console command is run above): a trainer that fails is reported
    and makes the check unhealthy (exit 1), and the others still run."""
    from nnunetv2_resunet.benchmarking.check_cli import main

    code = main([*TINY, "-tr", "NoSuchTrainer", "-compiled", "-memory_targets", "-o", str(tmp_path)])
    report, markdown = json.loads((tmp_path / "check.json").read_text()), (tmp_path / "check.md").read_text()
    assert code == 1 and not report["healthy"]
    rows = {r["trainer"]: r for r in report["training"]}
    assert rows["nnUNetTrainer"]["finite"] and "error" not in rows["nnUNetTrainer"]
    assert "NoSuchTrainer" in rows["NoSuchTrainer"]["error"] and "**UNHEALTHY.**" in markdown


def test_cuda_without_a_gpu_is_one_line(monkeypatch):
    from nnunetv2_resunet.benchmarking import check_cli

    monkeypatch.setattr(check_cli.torch.cuda, "is_available", lambda: False)
    with pytest.raises(SystemExit) as exit_info:
        check_cli.parse_args(["-device", "cuda"])
    assert exit_info.value.code == 2
