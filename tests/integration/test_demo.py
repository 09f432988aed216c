"""``nnUNetv2_resunet_demo``, README's first set-up command: the whole flow on the real ACDC sample the plugin ships,
in a folder of its own, without nnU-Net's variables; re-run instantly; never on another dataset's id.

The run here is the demo's own code path with one change: short-run trainers (1 epoch of 2 iterations of a
batch of 2, smaller than the plans', written into an ``nnUNet_extTrainer`` folder as a user's own trainers would be)
instead of the demo's ``<Trainer>_demo`` budget, which ``tests/training/test_budgets.py`` checks on its own.
"""

from __future__ import annotations

import json
import os
import subprocess

import pytest
import torch
from nnunet_workspace import NnUNetWorkspace, console_script

from nnunetv2_resunet.demo.cli import (
    DATASET_NAME,
    SAMPLE,
    DemoError,
    demo_dataset_exists,
    nnunet_folders,
    sample_cases,
)

SHORT = ("nnUNetTrainer", "ResUnetTrainer", "EMCADTrainer")
NNUNET_VARIABLES = ("nnUNet_raw", "nnUNet_preprocessed", "nnUNet_results")


def demo(cwd, env, *args: str) -> subprocess.CompletedProcess:
    result = subprocess.run([*console_script("nnUNetv2_resunet_demo"), *args], cwd=cwd, env=env, capture_output=True,
                            text=True, timeout=900)
    assert result.returncode == 0, f"demo exited {result.returncode}\n{result.stdout[-6000:]}\n{result.stderr[-6000:]}"
    return result


def outputs(root) -> dict[str, float]:
    return {str(p.relative_to(root)): p.stat().st_mtime for p in root.rglob("*") if p.is_file()}


@pytest.fixture(scope="module")
def demo_run(tmp_path_factory):
    """The demo, started in an empty folder with none of nnU-Net's variables set."""
    trainers = NnUNetWorkspace(tmp_path_factory.mktemp("trainers"))
    short = [trainers.add_short_trainer(base, batch_size=2) for base in SHORT]
    env = {k: v for k, v in trainers.env.items() if k not in NNUNET_VARIABLES}
    cwd = tmp_path_factory.mktemp("demo")
    first = demo(cwd, env, "-device", "cpu", "-tr", *short)
    return cwd, env, short, first


def test_the_demo_runs_the_whole_flow_on_the_shipped_sample(demo_run):
    cwd, env, short, first = demo_run
    folder = cwd / "nnUNet_resunet_demo"
    assert "It demonstrates the flow and measures nothing" in first.stdout
    # The sample converted by our converter, into the demo's own nnU-Net folders.
    raw = folder / "nnUNet_raw" / f"Dataset899_{DATASET_NAME}"
    assert json.loads((raw / "dataset.json").read_text())["training_cases"] == sample_cases()
    assert "$ nnUNetv2_resunet_convert_acdc -i" in first.stdout and "$ nnUNetv2_resunet_study run" in first.stdout
    # nnU-Net's integrity check and planning ran on the real anatomy.
    preprocessed = folder / "nnUNet_preprocessed" / raw.name
    assert "verify_dataset_integrity Done" in (preprocessed / "study_preprocess_nnUNetPlans.log").read_text()
    # Each model trained and validated on fold 0's patient: RV, MYO, LV scored.
    for trainer in short:
        fold = folder / "nnUNet_results" / raw.name / f"{trainer}__nnUNetPlans__2d" / "fold_0"
        assert torch.load(fold / "checkpoint_final.pth", map_location="cpu",
                          weights_only=False)["trainer_name"] == trainer
        summary = json.loads((fold / "validation" / "summary.json").read_text())
        assert set(summary["mean"]) == {"1", "2", "3"}
        assert len(summary["metric_per_case"]) == 2  # one patient, two frames
        assert all(0.0 <= m["Dice"] <= 1.0 or m["Dice"] != m["Dice"]
                   for case in summary["metric_per_case"] for m in case["metrics"].values())
    # The report, with its tables and plots, in the demo's folder.
    report = folder / "demo" / raw.name
    markdown = (report / "report.md").read_text()
    assert all(trainer in markdown for trainer in short)
    assert list(report.glob("*.png")) and (report / "per_case.csv").is_file()
    assert str(report / "report.md") in first.stdout


def test_a_second_demo_is_instant_and_changes_nothing(demo_run):
    cwd, env, short, _ = demo_run
    before = outputs(cwd)
    again = demo(cwd, env, "-device", "cpu", "-tr", *short)
    assert "1/2 conversion: done before" in again.stdout and "$ nnUNetv2_resunet_convert_acdc" not in again.stdout
    assert "start " not in again.stderr  # the study started nothing
    after = outputs(cwd)
    assert {k: v for k, v in after.items() if not k.endswith("demo.toml")} == \
           {k: v for k, v in before.items() if not k.endswith("demo.toml")}


def test_the_demo_never_takes_another_datasets_id(tmp_path, monkeypatch):
    for variable in NNUNET_VARIABLES:
        monkeypatch.delenv(variable, raising=False)
    folders = nnunet_folders(tmp_path / "demo")
    assert all(p.is_dir() and p.parent == tmp_path / "demo" for p in folders.values())
    assert not demo_dataset_exists(folders, 899)
    (folders["nnUNet_results"] / "Dataset899_Other").mkdir()
    with pytest.raises(DemoError, match=r"Dataset899_Other: dataset id 899 belongs to another dataset"):
        demo_dataset_exists(folders, 899)
    # Our name, other cases: not the demo's either.
    mine = folders["nnUNet_raw"] / f"Dataset898_{DATASET_NAME}"
    mine.mkdir()
    (mine / "dataset.json").write_text(json.dumps({"training_cases": ["patient999_frame01"]}))
    with pytest.raises(DemoError, match="not the demo's sample"):
        demo_dataset_exists(folders, 898)
    # Half of nnU-Net's variables set: say which are missing rather than mix folders.
    monkeypatch.setenv("nnUNet_raw", str(tmp_path))
    with pytest.raises(DemoError, match="nnUNet_preprocessed, nnUNet_results unset while nnUNet_raw is set"):
        nnunet_folders(tmp_path / "demo")
    assert len(list(SAMPLE.glob("*.h5"))) == 8 and os.access(SAMPLE / "README.md", os.R_OK)
