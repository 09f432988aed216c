"""``nnUNetv2_resunet_demo``: the plugin's whole flow on four real ACDC patients it ships, in minutes on a CPU.

It runs what a user runs, printing each command first:

    nnUNetv2_resunet_convert_acdc -i <the shipped sample> -d 899 -n ACDCSample
    nnUNetv2_resunet_study run <folder>/demo.toml -device cpu -np 2 -o <folder>

The study plans and preprocesses with nnU-Net's planner, trains nnU-Net's 2d default, ResUnet v1.0 and EMCAD at the
demonstration budget (``<Trainer>_demo``, :data:`nnunetv2_resunet.training.budgets.DEMO_BUDGET`), lets nnU-Net
validate each on fold 0 (one patient, two frames: the sample has no held-out test set) and writes the report, its
tables and plots. It demonstrates the flow and measures nothing: at this budget no model learns, and one patient
could not tell models apart if they had.

Folders: nnU-Net's own when ``nnUNet_raw``, ``nnUNet_preprocessed`` and ``nnUNet_results`` are all set; otherwise a
folder of its own (``-o``, default ``./nnUNet_resunet_demo``) with ``nnUNet_raw/``, ``nnUNet_preprocessed/`` and
``nnUNet_results/`` inside. The study file and the report always go to that folder. The dataset gets an id of its
own (``-d``, default 899): an id another dataset holds is refused, never reused. Re-running is instant (the study
skips what is done) and an interrupted demo resumes where it stopped.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
from collections.abc import Sequence
from pathlib import Path

from nnunetv2_resunet.command_line import command_parser, output_folder, run_command, torch_device

SAMPLE = Path(__file__).resolve().parent / "acdc_sample"
DEFAULT_DATASET_ID = 899
DATASET_NAME = "ACDCSample"
DEFAULT_FOLDER = "nnUNet_resunet_demo"
STUDY_NAME = "demo"
# nnU-Net's 2d default, ResUnet v1.0 and the most recent transformer baseline, at the demonstration budget.
TRAINERS = ("nnUNetTrainer_demo", "ResUnetTrainer_demo", "EMCADTrainer_demo")
NNUNET_VARIABLES = ("nnUNet_raw", "nnUNet_preprocessed", "nnUNet_results")
CONVERTER = "nnUNetv2_resunet_convert_acdc"
STUDY = "nnUNetv2_resunet_study"
CONVERTED_BY = "nnunetv2-resunet dataset converters"  # dataset.json's converted_by, written by our converters


class DemoError(Exception):
    """A problem the user can fix; the message names the path or the variable and what to do."""


def sample_cases() -> list[str]:
    """The shipped volumes, ``patientXXX_frameYY``, as the converter names its cases."""
    return sorted(p.stem for p in SAMPLE.glob("*.h5"))


def nnunet_folders(folder: Path) -> dict[str, Path]:
    """nnU-Net's three folders: the user's when all three variables are set, else inside ``folder`` (created)."""
    given = {v: os.environ.get(v, "") for v in NNUNET_VARIABLES}
    if all(given.values()):
        return {v: Path(p) for v, p in given.items()}
    if any(given.values()):
        unset = ", ".join(v for v, p in given.items() if not p)
        raise DemoError(f"{unset} unset while {', '.join(v for v, p in given.items() if p)} is set: set all three "
                        f"nnU-Net variables, or none (the demo then works in {folder})")
    if folder.exists() and not folder.is_dir():
        raise DemoError(f"{folder}: a file where the demo's folder belongs; pass another folder with -o")
    folders = {v: folder / v for v in NNUNET_VARIABLES}
    for path in folders.values():
        path.mkdir(parents=True, exist_ok=True)
    return folders


def dataset_folder_name(dataset_id: int) -> str:
    return f"Dataset{dataset_id:03d}_{DATASET_NAME}"


def demo_dataset_exists(folders: dict[str, Path], dataset_id: int) -> bool:
    """Whether an earlier demo converted the sample already (then it is reused as it is).

    Raises:
        DemoError: If another dataset holds ``dataset_id`` in any of nnU-Net's folders: the demo never touches it.
    """
    ours = dataset_folder_name(dataset_id)
    for root in folders.values():
        for path in sorted(root.glob(f"Dataset{dataset_id:03d}_*")) if root.is_dir() else ():
            if path.name != ours:
                raise DemoError(f"{path}: dataset id {dataset_id} belongs to another dataset; the demo never "
                                f"touches an existing dataset: pass a free id with -d")
    raw = folders["nnUNet_raw"] / ours
    if not raw.exists():
        return False
    try:
        described = json.loads((raw / "dataset.json").read_text())
    except (OSError, ValueError):
        described = {}
    if described.get("converted_by") != CONVERTED_BY or described.get("training_cases") != sample_cases():
        raise DemoError(f"{raw}: not the demo's sample (its dataset.json describes other cases); the demo never "
                        f"touches an existing dataset: pass a free id with -d")
    return True


def study_text(dataset_id: int, trainers: Sequence[str]) -> str:
    """The study the demo runs: one dataset, one 2d model block, fold 0, scored on its validation patient."""
    listed = ", ".join(f'"{t}"' for t in trainers)
    return f"""\
# Written by nnUNetv2_resunet_demo (re-written on every run). It demonstrates the flow and measures nothing: the
# models train for a few iterations and are scored on one patient.
name = "{STUDY_NAME}"
folds = [0]

[[datasets]]
id = {dataset_id}                      # {dataset_folder_name(dataset_id)}: the ACDC sample shipped with the plugin
test_images = ""              # no held-out test set: fold 0's validation patient (two frames) is scored

[[models]]
configuration = "2d"
trainers = [{listed}]
"""


def run_step(step: str, name: str, *args: object) -> None:
    """Run one of our commands as a user would, shown first; the installation the demo was started from runs it
    (the studies' ``console_command``)."""
    from nnunetv2_resunet.studies.execute import console_command

    executed = [*console_command(name), *map(str, args)]
    shown = subprocess.list2cmdline([name, *map(str, args)])
    print(f"\n== {step}\n$ {shown}", flush=True)
    result = subprocess.run(executed)
    if result.returncode == 130:
        raise KeyboardInterrupt
    if result.returncode != 0:
        raise DemoError(f"{shown} exited with {result.returncode} (its message is above); run "
                        f"nnUNetv2_resunet_demo again once it is fixed: what is done is kept")


def build_parser() -> argparse.ArgumentParser:
    parser = command_parser(
        "nnUNetv2_resunet_demo",
        "The whole flow on four real ACDC patients shipped with the plugin: convert, plan and preprocess, train "
        "nnU-Net's 2d default, ResUnet v1.0 and EMCAD briefly, validate, report. It demonstrates the flow and "
        "measures nothing.")
    parser.add_argument("-o", dest="folder", type=Path, default=Path(DEFAULT_FOLDER),
                        help=f"the demo's folder: study file, report, and nnU-Net's folders unless nnUNet_raw, "
                             f"nnUNet_preprocessed and nnUNet_results are set (default: ./{DEFAULT_FOLDER})")
    parser.add_argument("-d", dest="dataset_id", type=int, default=DEFAULT_DATASET_ID,
                        help=f"dataset id for the sample (default {DEFAULT_DATASET_ID}); one another dataset holds "
                             f"is refused")
    parser.add_argument("-tr", dest="trainers", nargs="+", default=list(TRAINERS),
                        help=f"trainers to compare (default: {' '.join(TRAINERS)})")
    parser.add_argument("-device", choices=("cpu", "cuda", "mps"), default=None,
                        help="nnU-Net's -device (default: cuda when a GPU is visible, else cpu)")
    parser.add_argument("-np", dest="num_processes", type=int, default=None,
                        help="processes for conversion, preprocessing and the report (default: the CPUs, at most 4)")
    return parser


def run_demo(args: argparse.Namespace) -> Path:
    """Convert (unless done), run the study, return the report's folder."""
    folder = args.folder.absolute()
    output_folder(folder, "-o")  # also when nnU-Net's variables are set: the study file and the report go there
    folders = nnunet_folders(folder)
    os.environ.update({v: str(p) for v, p in folders.items()})
    cpus = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1
    num_processes = args.num_processes or max(1, min(4, cpus))
    # nnU-Net's default is 12 augmentation workers per GPU: far too many for a laptop or a small CPU node.
    os.environ.setdefault("nnUNet_n_proc_DA", str(max(1, min(4, cpus - 1))))
    device = args.device
    if device is None:
        import torch

        device = "cuda" if torch.cuda.is_available() else "cpu"
    elif device == "cuda":
        torch_device(device)
    print(f"nnUNetv2_resunet_demo: the flow on {len(sample_cases())} real ACDC volumes (4 patients) shipped with "
          f"the plugin, {', '.join(args.trainers)} on {device}. It demonstrates the flow and measures nothing: the "
          f"demo's trainers train for a few iterations and the score is one patient's.\nFolder: {folder}"
          + "".join(f"\n{v}={p}" for v, p in folders.items()), flush=True)
    if demo_dataset_exists(folders, args.dataset_id):
        print(f"\n== 1/2 conversion: done before ({folders['nnUNet_raw'] / dataset_folder_name(args.dataset_id)})")
    else:
        run_step("1/2 conversion of the sample into nnU-Net's raw format", CONVERTER, "-i", SAMPLE, "-d",
                 args.dataset_id, "-n", DATASET_NAME, "-np", num_processes)
    study = folder / f"{STUDY_NAME}.toml"
    study.write_text(study_text(args.dataset_id, args.trainers))
    run_step("2/2 the study: plan and preprocess, train, validate, report (done runs are skipped)", STUDY, "run",
             study, "-device", device, "-np", num_processes, "-o", folder)
    return folder / STUDY_NAME


def main(argv: Sequence[str] | None = None) -> int:
    """Console entry point ``nnUNetv2_resunet_demo``; returns the exit status."""
    return run_command(_demo, argv, "nnUNetv2_resunet_demo", user_errors=(DemoError,))


def _demo(argv: list[str]) -> int:
    args = build_parser().parse_args(argv)
    try:
        report = run_demo(args)
    except KeyboardInterrupt:
        print("nnUNetv2_resunet_demo: interrupted; run it again to resume", file=sys.stderr)
        return 130
    print(f"\nThe report: {report / dataset_folder_name(args.dataset_id) / 'report.md'} (tables, plots beside it).\n"
          f"It demonstrates the flow and measures nothing. The same on real data: README's user flow "
          f"(convert a public dataset, then nnUNetv2_resunet_study run studies/<a study>.toml).")
    return 0


if __name__ == "__main__":
    sys.exit(main())
