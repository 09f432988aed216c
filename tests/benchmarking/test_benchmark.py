"""nnUNetv2_resunet_benchmark on CPU with a tiny patch: files written, figures present and positive, ratios to the
first trainer. No timing assertions: the machine is shared."""

import json
import subprocess

import pytest
import torch
from nnunet_workspace import console_script

from nnunetv2_resunet.benchmarking.benchmark import TrainerSpec
from nnunetv2_resunet.benchmarking.measure import PEAK_TFLOPS, count_forward_flops
from nnunetv2_resunet.benchmarking.trainer_steps import build_trainer, make_batch
from nnunetv2_resunet.experiment_planning.synthetic_plans import synthetic_plans

TRAINERS = ["nnUNetTrainer", "nnUNetTrainer:nnUNetResEncUNetMPlans", "ResUnetTrainer_v0_1", "ResUnetTrainer",
            "SwinUnetTrainer"]


@pytest.fixture(scope="module")
def report(tmp_path_factory):
    out = tmp_path_factory.mktemp("benchmarks")
    completed = subprocess.run(
        [*console_script("nnUNetv2_resunet_benchmark"), "-tr", *TRAINERS, "--patch-size", "64", "64",
         "--batch-size", "2", "--warmup", "1", "--steps", "2", "--device", "cpu", "--threads", "1", "-o", str(out),
         "--name", "tiny"],
        capture_output=True, text=True, timeout=600)
    assert completed.returncode == 0, completed.stdout[-3000:] + completed.stderr[-3000:]
    with open(out / "tiny.json") as f:
        return json.load(f), (out / "tiny.md").read_text(), completed.stdout


def test_files_and_table_are_written(report):
    data, markdown, stdout = report
    assert [r["trainer"] for r in data["results"]] == TRAINERS
    for trainer in TRAINERS:
        assert f"| {trainer} |" in markdown and f"| {trainer} |" in stdout
    assert data["meta"]["device_type"] == "cpu"


@pytest.mark.parametrize("field", ["parameters", "forward_gflops_per_patch", "train_step_ms", "train_ms_per_patch",
                                   "inference_ms_per_patch", "activation_mib_per_patch", "achieved_tflops"])
def test_figures_are_positive(report, field):
    for result in report[0]["results"]:
        assert result[field] > 0, (result["trainer"], field, result[field])


def test_ratios_are_to_the_first_trainer(report):
    results = report[0]["results"]
    assert all(v == pytest.approx(1.0) for v in results[0]["ratio_to_first"].values() if v is not None)
    for result in results[1:]:
        ratio = result["ratio_to_first"]["forward_gflops_per_patch"]
        assert ratio == pytest.approx(result["forward_gflops_per_patch"] / results[0]["forward_gflops_per_patch"])


def test_no_mfu_on_cpu_without_a_peak(report):
    assert all(r["mfu"] is None for r in report[0]["results"])


def test_deep_supervision_targets_match_outputs():
    """Targets come from nnU-Net's DownsampleSegForDSTransform and must match every output's size."""
    plans, dataset_json = synthetic_plans([48, 80], 2, num_classes=3)
    trainer = build_trainer("ResUnetTrainer", plans, dataset_json, "2d", torch.device("cpu"))
    data, target = make_batch(trainer, 2, torch.device("cpu"))
    outputs = trainer.network(data)
    assert [o.shape[2:] for o in outputs] == [t.shape[2:] for t in target]
    assert torch.isfinite(trainer.loss(outputs, target))


def test_flops_match_a_hand_count():
    conv = torch.nn.Conv2d(2, 4, 3, padding=1, bias=False)
    assert count_forward_flops(conv, (1, 2, 8, 8)) == 2 * 4 * 2 * 9 * 8 * 8


def test_trainer_spec_parsing():
    assert TrainerSpec.parse("nnUNetTrainer:nnUNetResEncUNetMPlans") == TrainerSpec("nnUNetTrainer",
                                                                                     "nnUNetResEncUNetMPlans")
    assert TrainerSpec.parse("ResUnetTrainer").plans_identifier is None


def test_peak_table_lists_the_devices_named_in_the_issue():
    names = [name for name, _ in PEAK_TFLOPS]
    assert {"H100", "H100 PCIe", "H200", "A100", "RTX 3090"} <= set(names)
    assert names.index("H100 PCIe") < names.index("H100")  # specific before generic


def test_channels_last_network_gives_the_same_outputs():
    """What ResUnetTrainer does on CUDA (NHWC weights, NCHW inputs) changes the layout, not the result."""
    plans, dataset_json = synthetic_plans([32, 32], 2, num_classes=3)
    trainer = build_trainer("ResUnetTrainer", plans, dataset_json, "2d", torch.device("cpu"), channels_last=False)
    data, _ = make_batch(trainer, 2, torch.device("cpu"))
    trainer.network.eval()
    expected = trainer.network(data)
    trainer.network.to(memory_format=torch.channels_last)
    outputs = trainer.network(data)
    assert outputs[0].is_contiguous(memory_format=torch.channels_last)
    for out, ref in zip(outputs, expected):
        # fp32 through ~40 layers with other conv algorithms: differences of a few 1e-4.
        torch.testing.assert_close(out, ref, rtol=1e-3, atol=2e-3)
