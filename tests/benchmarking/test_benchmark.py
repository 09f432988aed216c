"""nnUNetv2_resunet_benchmark on CPU with a tiny patch: files written, figures present and positive, ratios to the
first trainer. No timing assertions: the machine is shared."""

import json
import subprocess
from pathlib import Path

import pytest
import torch
from nnunet_workspace import console_script

from nnunetv2_resunet.benchmarking.benchmark import TrainerSpec
from nnunetv2_resunet.benchmarking.measure import PEAK_TFLOPS, count_forward_flops, saved_activation_bytes
from nnunetv2_resunet.benchmarking.trainer_steps import build_trainer, make_batch
from nnunetv2_resunet.experiment_planning.synthetic_plans import synthetic_plans

ROOT = Path(__file__).resolve().parents[2]
TRAINERS = ["nnUNetTrainer", "nnUNetTrainer:nnUNetResEncUNetMPlans", "ResUnetTrainer_v0_1", "ResUnetTrainer",
            "SwinUnetTrainer"]


@pytest.fixture(scope="module")
def report(tmp_path_factory):
    out = tmp_path_factory.mktemp("benchmarks")
    completed = subprocess.run(
        [*console_script("nnUNetv2_resunet_benchmark"), "-tr", *TRAINERS, "-patch_size", "64", "64",
         "-batch_size", "2", "-warmup", "1", "-steps", "2", "-device", "cpu", "-threads", "1", "-o", str(out),
         "-name", "tiny"],
        capture_output=True, text=True, timeout=600)
    assert completed.returncode == 0, completed.stdout[-3000:] + completed.stderr[-3000:]
    with open(out / "tiny.json") as f:
        return json.load(f), (out / "tiny.md").read_text(), completed.stdout


@pytest.mark.integration
def test_files_and_table_are_written(report):
    data, markdown, stdout = report
    assert [r["trainer"] for r in data["results"]] == TRAINERS
    for trainer in TRAINERS:
        assert f"| {trainer} |" in markdown and f"| {trainer} |" in stdout
    assert data["meta"]["device_type"] == "cpu"


@pytest.mark.integration
@pytest.mark.parametrize("field", ["parameters", "forward_gflops_per_patch", "train_step_ms", "train_ms_per_patch",
                                   "inference_ms_per_patch", "activation_mib_per_patch", "achieved_tflops"])
def test_figures_are_positive(report, field):
    for result in report[0]["results"]:
        assert result[field] > 0, (result["trainer"], field, result[field])


@pytest.mark.integration
def test_ratios_are_to_the_first_trainer(report):
    results = report[0]["results"]
    assert all(v == pytest.approx(1.0) for v in results[0]["ratio_to_first"].values() if v is not None)
    for result in results[1:]:
        ratio = result["ratio_to_first"]["forward_gflops_per_patch"]
        assert ratio == pytest.approx(result["forward_gflops_per_patch"] / results[0]["forward_gflops_per_patch"])


@pytest.mark.integration
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


def test_saved_activations_match_a_hand_count():
    """A conv saves its input for the weight gradient (the weight itself is a parameter, not an activation) and a
    ReLU its output: fp32, 4 bytes per element."""
    network = torch.nn.Sequential(torch.nn.Conv2d(2, 4, 3, padding=1, bias=False), torch.nn.ReLU())
    assert saved_activation_bytes(network, torch.randn(1, 2, 8, 8)) == 4 * (2 * 8 * 8 + 4 * 8 * 8)
    assert saved_activation_bytes(network, torch.randn(3, 2, 8, 8)) == 3 * 4 * (2 * 8 * 8 + 4 * 8 * 8)


# The committed benchmarks (results/benchmarks) and the number of classes of their synthetic plans (docs/benchmark.md).
COMMITTED = {"cpu-1thread_ladder_128x128_b4": 14, "cpu-1thread_transformers_224x224_b2": 9}


def network_on_meta(trainer_name: str, plans: dict, dataset_json: dict, tmp_path, monkeypatch) -> torch.nn.Module:
    """The network the trainer's own build_network_architecture builds for these plans, on the meta device."""
    from nnunetv2.utilities.find_objects import recursive_find_trainer_class_by_name

    monkeypatch.setenv("nnUNet_results", str(tmp_path))  # the trainer writes its log file there
    trainer = recursive_find_trainer_class_by_name(trainer_name)(plans, "2d", 0, dataset_json, torch.device("cpu"))
    with torch.device("meta"):
        return trainer.build_network_architecture(trainer.plans_manager, trainer.configuration_manager, 1,
                                                  trainer.label_manager.num_segmentation_heads,
                                                  trainer.enable_deep_supervision)


@pytest.mark.parametrize("name", list(COMMITTED))
def test_committed_parameters_and_flops_are_exact(name, tmp_path, monkeypatch):
    """docs/benchmark.md: "Read the FLOPs, parameters and activations as exact (they do not depend on the machine)".
    The committed figures are exactly what the trainers' networks count today."""
    results = json.loads((ROOT / "results" / "benchmarks" / f"{name}.json").read_text())["results"]
    for result in results:
        plans, dataset_json = synthetic_plans(result["patch_size"], result["batch_size"], num_classes=COMMITTED[name])
        plans["continue_training"] = False  # nnU-Net's run_training adds this key; the trainer pops it
        network = network_on_meta(result["trainer"], plans, dataset_json, tmp_path, monkeypatch)
        assert sum(p.numel() for p in network.parameters()) == result["parameters"], result["trainer"]
        flops = count_forward_flops(network, (1, 1, *result["patch_size"]))
        assert flops / 1e9 == result["forward_gflops_per_patch"], result["trainer"]


@pytest.mark.integration
def test_reported_flops_and_activations_are_the_networks_exact_counts(report):
    """The command's figures are exact counts of the trainer's network at the patch: forward FLOPs of one patch, and
    the bytes one more patch saves for backward (fp32 on CPU), not estimates."""
    for result in report[0]["results"]:
        spec = TrainerSpec.parse(result["trainer"])  # TRAINER or TRAINER:PLANS (nnU-Net's ResEnc M here)
        plans, dataset_json = synthetic_plans([64, 64], 2, spec.plans_identifier or "nnUNetPlans")
        trainer = build_trainer(spec.trainer_name, plans, dataset_json, "2d", torch.device("cpu"))
        network = trainer.network
        assert sum(p.numel() for p in network.parameters()) == result["parameters"]
        assert count_forward_flops(network, (1, 1, 64, 64)) / 1e9 == result["forward_gflops_per_patch"]
        data = torch.randn(1, 1, 64, 64)
        one_more = saved_activation_bytes(network, data.repeat(2, 1, 1, 1)) - saved_activation_bytes(network, data)
        assert one_more / 2 ** 20 == result["activation_mib_per_patch"], result["trainer"]


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
