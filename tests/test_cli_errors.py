"""Every console command answers a mistake in one line that names the input, with a non-zero exit, and no traceback;
flags are spelled as nnU-Net spells them, and the old spellings still work with a note.

The table of bad inputs runs each command's console entry point (loaded from the installed entry points, as the
console script calls it) in this process, with its stderr captured: a traceback there is an exception escaping
``main``, which fails the row. A few rows run as real console scripts in subprocesses, for the exit status, the
note of an old spelling and a closed pipe (``| head``).
"""

from __future__ import annotations

import json
import os
import subprocess
from dataclasses import dataclass, field
from importlib.metadata import distribution
from pathlib import Path

import pytest
from nnunet_workspace import console_script

from nnunetv2_resunet.command_line import CommandParser, UserError, add_option, one_line, run_command

NNUNET_FOLDERS = ("nnUNet_raw", "nnUNet_preprocessed", "nnUNet_results")
PLANNED = "Dataset950_Planned"  # synthetic 2d plans in nnUNet_preprocessed, nothing else
NO_JSON = "Dataset951_NoJson"  # a dataset folder in nnUNet_raw without dataset.json
STUDY_DATASET = "Dataset952_Study"
NO_GPU = "no GPU"  # a row's environment: torch sees no CUDA device (also on a GPU machine)


def our_entry_points() -> dict:
    return {e.name: e for e in distribution("nnunetv2-resunet").entry_points if e.group == "console_scripts"}


@dataclass(frozen=True)
class Row:
    """A command, its arguments (``{name}`` placeholders are paths of the workspace), how nnU-Net's variables
    differ from the workspace's (``"unset"`` or ``"file"``), and what the one line must contain."""

    command: str
    args: tuple[str, ...]
    names: tuple[str, ...]
    env: dict[str, str] = field(default_factory=dict)
    status: int = 1


def row(command: str, args: str, *names: str, status: int = 1, **env: str):
    return pytest.param(Row(f"nnUNetv2_resunet_{command}", tuple(args.split()), names, env, status),
                        id=f"{command}: {args} {' '.join(f'{k}={v}' for k, v in env.items())}".strip())


UNKNOWN_ID = "dataset 999: no Dataset999_* folder"
ROWS = [
    row("report", "-pred {missing} -gt {empty}", "-pred {missing} does not exist"),
    row("report", "-pred {file} -gt {empty}", "-pred {file} is a file, not a folder"),
    row("report", "-pred {empty} -gt {empty}", "dataset.json {empty}/dataset.json does not exist"),
    row("report", "-d 999 -tr nnUNetTrainer -c 2d", UNKNOWN_ID),
    row("report", "-d Synapse -tr nnUNetTrainer -c 2d", "dataset 'Synapse': give a dataset id"),
    row("report", "-d Dataset999_X -tr nnUNetTrainer -c 2d", "nnUNet_results is not set", nnUNet_results="unset"),
    row("report", "-d Dataset999_X -tr nnUNetTrainer -c 2d", "nnUNet_preprocessed {file} is a file",
        nnUNet_preprocessed="file"),
    row("report", "-d " + PLANNED + " -tr nnUNetTrainer -c 2d", "-d " + PLANNED, "no ground truth folder"),
    row("report", "-pred {empty} -gt {empty} -o {file}/out", "-o {file}/out", "is a file"),
    row("report", "-pred {empty} -gt {empty} -f x", "-f", "'x'", status=2),
    row("convert_synapse", "-i {missing}", "{missing}"),
    row("convert_synapse", "-i {file}", "{file}"),
    row("convert_synapse", "-i {empty}", "nnUNet_raw is not set", nnUNet_raw="unset"),
    row("convert_synapse", "-i {empty}", "nnUNet_raw names a file", nnUNet_raw="file"),
    row("convert_acdc", "-i {empty}", "{empty}"),
    row("convert_acdc", "-i {empty} -split papers", "-split", "'papers'", status=2),
    row("convert_acdc", "-i {empty}", "nnUNet_preprocessed is not set", nnUNet_preprocessed="unset"),
    row("convert_avt", "-i {missing}", "{missing}"),
    row("convert_avt", "-i {empty} -d abc", "-d", "'abc'", status=2),
    row("benchmark", "-device cuda", "-device cuda: no CUDA GPU", status=2, torch=NO_GPU),
    row("benchmark", "-device cpu -tr NoSuchTrainer", "trainer NoSuchTrainer"),
    row("benchmark", "-device cpu -d 999", UNKNOWN_ID),
    row("benchmark", "-device cpu -d 999", "nnUNet_preprocessed is not set", nnUNet_preprocessed="unset"),
    row("benchmark", "-device cpu -d " + PLANNED + " -p NoSuchPlans", "-p NoSuchPlans", "NoSuchPlans.json"),
    row("benchmark", "-device cpu -d " + PLANNED + " -c 3d_fullres", "-c 3d_fullres", "they have 2d"),
    row("benchmark", "-device cpu -o {file}", "-o {file}", "is a file"),
    row("benchmark", "-dev cpu", "-dev", "-device", status=2),
    row("check", "-device cuda", "-device cuda: no CUDA GPU", status=2, torch=NO_GPU),
    row("check", "-device cpu -batch_size 0", "-batch_size", status=2),
    row("check", "-device cpu -o {file}", "-o {file}", "is a file"),
    row("plan", "-d 999", UNKNOWN_ID),
    row("plan", "-d 999", "nnUNet_raw is not set", nnUNet_raw="unset"),
    row("plan", "-d 999", "nnUNet_raw {file} is a file", nnUNet_raw="file"),
    row("plan", "-d 951", "-d 951", f"{NO_JSON}/dataset.json does not exist"),
    row("plan", "-d 951", "nnUNet_preprocessed", "is a file", nnUNet_preprocessed="file"),
    row("plan", "-d Dataset951_NoJson", "-d", "'Dataset951_NoJson'", status=2),
    row("study", "status {missing}", "{missing}: no such study file", status=2),
    row("study", "run {study_unknown_trainer} -device cpu", "NoSuchTrainer", status=2),
    row("study", "run {study} -device cuda", "-device cuda: no CUDA GPU", status=2, torch=NO_GPU),
    row("study", "status {study}", "nnUNet_raw", status=2, nnUNet_raw="unset"),
    row("study", "run {study} -device tpu", "-device", "'tpu'", status=2),
    row("demo", "-o {file}", "-o {file}", "is a file"),
    row("demo", "-o {file}/demo", "-o {file}/demo", "is a file", nnUNet_raw="unset", nnUNet_preprocessed="unset",
        nnUNet_results="unset"),
    row("demo", "-o {tmp}/demo", "nnUNet_raw unset while", nnUNet_raw="unset"),
    row("demo", "-o {tmp}/demo -device cuda", "-device cuda: no CUDA GPU", torch=NO_GPU),
    row("init_weights", "-d 999 -tr ResUnetTrainer -i {weights} -o {tmp}/init.pth", UNKNOWN_ID),
    row("init_weights", "-d 999 -tr ResUnetTrainer -i {weights} -o {tmp}/init.pth", "nnUNet_preprocessed is not set",
        nnUNet_preprocessed="unset"),
    row("init_weights", "-d " + PLANNED + " -p NoSuchPlans -tr ResUnetTrainer -i {weights} -o {tmp}/init.pth",
        "NoSuchPlans.json does not exist"),
    row("init_weights", "-d " + PLANNED + " -tr NoSuchTrainer -i {weights} -o {tmp}/init.pth",
        "trainer NoSuchTrainer"),
    row("init_weights", "-d " + PLANNED + " -c 3d_fullres -tr ResUnetTrainer -i {weights} -o {tmp}/init.pth",
        "no configuration '3d_fullres'"),
    row("init_weights", "-d " + PLANNED + " -tr ResUnetTrainer -i {empty_weights} -o {tmp}/init.pth",
        "{empty_weights} is empty (0 bytes)"),
    row("init_weights", "-d " + PLANNED + " -tr ResUnetTrainer -i {weights} -o {file}/init.pth", "-o", "{file}"),
]


@pytest.fixture(scope="module")
def workspace(tmp_path_factory) -> dict[str, str]:
    """nnU-Net's three folders with: synthetic 2d plans (PLANNED), a dataset without dataset.json (NO_JSON), a
    dataset for study files; plus a plain file, a missing path, an empty folder and weight files."""
    from nnunetv2_resunet.experiment_planning.synthetic_plans import synthetic_plans

    root = tmp_path_factory.mktemp("cli_errors")
    paths = {name: root / name for name in NNUNET_FOLDERS}
    for folder in paths.values():
        folder.mkdir()
    plans, dataset_json = synthetic_plans((64, 64), 2, num_classes=3)
    (paths["nnUNet_preprocessed"] / PLANNED).mkdir()
    (paths["nnUNet_preprocessed"] / PLANNED / "nnUNetPlans.json").write_text(json.dumps({**plans,
                                                                                        "dataset_name": PLANNED}))
    (paths["nnUNet_preprocessed"] / PLANNED / "dataset.json").write_text(json.dumps(dataset_json))
    (paths["nnUNet_raw"] / NO_JSON / "imagesTr").mkdir(parents=True)
    (paths["nnUNet_raw"] / STUDY_DATASET / "imagesTs").mkdir(parents=True)
    (paths["nnUNet_raw"] / STUDY_DATASET / "dataset.json").write_text(json.dumps(dataset_json))
    study = 'name = "errors"\nfolds = [0]\n[[datasets]]\nid = 952\n[[models]]\nconfiguration = "2d"\ntrainers = '
    (root / "study.toml").write_text(study + '["nnUNetTrainer"]\n')
    (root / "unknown_trainer.toml").write_text(study + '["NoSuchTrainer"]\n')
    (root / "a_file.txt").write_text("not a folder\n")
    (root / "empty").mkdir()
    (root / "empty.pth").write_bytes(b"")
    return {**{name: str(p) for name, p in paths.items()}, "tmp": str(root), "file": str(root / "a_file.txt"),
            "missing": str(root / "missing"), "empty": str(root / "empty"), "empty_weights": str(root / "empty.pth"),
            "weights": str(root / "a_file.txt"), "study": str(root / "study.toml"),
            "study_unknown_trainer": str(root / "unknown_trainer.toml")}


def test_every_command_is_in_the_table():
    assert {r.values[0].command for r in ROWS} == set(our_entry_points())


@pytest.mark.parametrize("case", ROWS)
def test_a_mistake_is_one_line_naming_the_input(case: Row, workspace, monkeypatch, capsys):
    for name in NNUNET_FOLDERS:
        monkeypatch.setenv(name, workspace[name])
    for name, how in case.env.items():
        if how == NO_GPU:
            monkeypatch.setattr("torch.cuda.is_available", lambda: False)
        elif how == "unset":
            monkeypatch.delenv(name)
        else:
            monkeypatch.setenv(name, workspace[how])
    monkeypatch.delenv("nnUNet_resunet_debug", raising=False)
    main = our_entry_points()[case.command].load()
    try:
        status = main([a.format(**workspace) for a in case.args])
    except SystemExit as exit_:  # argparse's own errors
        status = exit_.code
    err = capsys.readouterr().err
    lines = err.splitlines()
    assert status == case.status, err
    assert len(lines) == 1 and "Traceback" not in err, err
    assert lines[0].startswith(case.command) and ": error: " in lines[0]  # (a subcommand's: PROG SUB: error:)
    for name in case.names:
        assert name.format(**workspace) in lines[0]


# ----------------------------------------------------------------------------------------------------------------------
# Spelling
# ----------------------------------------------------------------------------------------------------------------------

def _parse(command: str, argv: list[str]):
    """The parsed arguments of ``command`` for ``argv`` (its own parser, as its main builds it)."""
    if command == "benchmark":
        from nnunetv2_resunet.benchmarking.cli import parse_args
    elif command == "check":
        from nnunetv2_resunet.benchmarking.check_cli import parse_args
    elif command == "init_weights":
        from nnunetv2_resunet.training.init_weights import parse_args
    elif command == "report":
        from nnunetv2_resunet.evaluation.report.cli import build_parser

        return build_parser().parse_args(argv)
    elif command == "study":
        from nnunetv2_resunet.studies.cli import build_parser

        return build_parser().parse_args(argv)
    else:
        from nnunetv2_resunet.dataset_conversion.cli import build_parser

        return build_parser(command, "", 801, "Synapse").parse_args(argv)
    return parse_args(argv)


OLD_SPELLINGS = [  # command, arguments with old spellings, the new spellings the notes must name, what was parsed
    ("benchmark", "--device cpu --patch-size 32 32 --cpu-time --output-dir out",
     ["-device", "-patch_size", "--cpu_time", "-o"], {"device": "cpu", "patch_size": [32, 32], "output_dir": "out"}),
    ("check", "-device cpu --patch_size 32 32 --memory_targets 1", ["-patch_size", "-memory_targets"],
     {"patch_size": [32, 32], "memory_targets": [1.0]}),
    ("report", "--pred p --gt g --test-pred a=b --allow-missing --no-plots", ["-pred", "-gt", "-test_pred",
     "--allow_missing", "--no_plots"], {"pred": "p", "test_pred": ["a=b"], "allow_missing": True}),
    ("converter", "--input x --dataset_id 5 --num_processes 2 --name N", ["-i", "-d", "-np", "-n"],
     {"input": Path("x"), "dataset_id": 5, "num_processes": 2, "name": "N"}),
    ("init_weights", "--dataset 5 --trainer T --input i --output o", ["-d", "-tr", "-i", "-o"],
     {"dataset": "5", "trainer": "T", "input": "i", "output": "o"}),
    ("study", "submit s.toml --slurm_folder f", ["-slurm_folder"], {"slurm_folder": "f"}),
]


@pytest.mark.parametrize(("command", "argv", "new", "parsed"), OLD_SPELLINGS, ids=[s[0] for s in OLD_SPELLINGS])
def test_old_spellings_still_work_with_a_note(command, argv, new, parsed, capsys):
    args = _parse(command, argv.split())
    assert {k: getattr(args, k) for k in parsed} == parsed
    notes = capsys.readouterr().err.splitlines()
    assert len(notes) == len(new)
    for note, spelling in zip(notes, new, strict=True):
        assert f"is spelled {spelling} now" in note


def test_help_shows_only_the_new_spellings(capsys):
    with pytest.raises(SystemExit):
        _parse("benchmark", ["-h"])
    help_text = capsys.readouterr().out
    assert "-device DEVICE" in help_text and "-patch_size H W" in help_text and "--debug" in help_text
    assert "--device" not in help_text and "--patch-size" not in help_text


def test_device_is_read_as_device_not_as_d_evice(capsys):
    args = _parse("benchmark", ["-device", "cpu"])
    assert (args.device, args.dataset) == ("cpu", None)
    # Where a command has -d but no -device, argparse alone would read -device cpu as -d evice plus a stray cpu.
    parser = CommandParser(prog="prog")
    parser.add_argument("-d")
    with pytest.raises(SystemExit) as exit_info:
        parser.parse_args(["-device", "cpu"])
    assert exit_info.value.code == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "unrecognized option -device (it would be read as -d evice)" in err
    add_option(parser, "-device", old=["--device"])
    with pytest.raises(SystemExit):
        parser.parse_args(["-dev", "cpu"])  # argparse would take it as -device (or -d ev): neither, here
    assert "did you mean -device?" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        parser.parse_args(["--dev", "cpu"])
    assert "unrecognized arguments: --dev cpu" in capsys.readouterr().err


# ----------------------------------------------------------------------------------------------------------------------
# Tracebacks: for bugs always, for user errors on request
# ----------------------------------------------------------------------------------------------------------------------

def _fails(argv: list[str]) -> None:
    raise UserError("line one:\n  detail a\n  detail b")


def test_debug_shows_the_traceback_of_a_user_error(monkeypatch, capsys):
    monkeypatch.delenv("nnUNet_resunet_debug", raising=False)
    assert run_command(_fails, [], "prog") == 1
    assert capsys.readouterr().err == "prog: error: line one: detail a; detail b\n"
    assert run_command(_fails, ["--debug"], "prog") == 1
    err = capsys.readouterr().err
    assert err.startswith("Traceback") and "_fails" in err
    assert err.endswith("prog: error: line one: detail a; detail b\n")
    monkeypatch.setenv("nnUNet_resunet_debug", "1")
    assert run_command(_fails, [], "prog") == 1
    assert capsys.readouterr().err.startswith("Traceback")


def test_a_bug_keeps_its_traceback_and_nnunet_complaints_do_not():
    with pytest.raises(KeyError):
        run_command(lambda argv: {}["missing"], [], "prog")
    with pytest.raises(RuntimeError, match="something else"):
        run_command(lambda argv: (_ for _ in ()).throw(RuntimeError("something else")), [], "prog")
    # nnU-Net's own message for a trainer it cannot find is several lines long; ours is one.
    complaint = RuntimeError("Could not find requested nnunet trainer Foo in nnunetv2.training.nnUNetTrainer (x).")
    assert run_command(lambda argv: (_ for _ in ()).throw(complaint), [], "prog") == 1
    assert one_line("a:\n b\n c") == "a: b; c"


def test_images_too_small_for_the_network_still_plan():
    """nnU-Net plans 4 x 4 images; ResUnet's memory estimate must too (a training-mode BatchNorm once refused the
    one value per channel such a patch gives at the bottom, and nnUNetv2_resunet_plan died with a traceback)."""
    from nnunetv2_resunet.architectures.configs.ladder import LADDER
    from nnunetv2_resunet.experiment_planning.resunet_planner import resunet_feature_map_size

    assert 0 < resunet_feature_map_size(LADDER["v1_0"], (4, 4), 1, 2) < resunet_feature_map_size(
        LADDER["v1_0"], (64, 64), 1, 2)


# ----------------------------------------------------------------------------------------------------------------------
# Real console scripts
# ----------------------------------------------------------------------------------------------------------------------

def test_console_scripts_exit_with_one_line_and_a_note(workspace):
    """Two of the commands that start fastest, each with an old spelling and a mistake: the note, the error, the
    exit status of the console script itself."""
    env = {**os.environ, **{name: workspace[name] for name in NNUNET_FOLDERS}}
    env.pop("nnUNet_resunet_debug", None)
    note = "{0}: note: {1} is spelled {2} now, as in nnU-Net (the old spelling still works)"
    for command, args, status, error in (
        ("nnUNetv2_resunet_convert_synapse", ["--input", workspace["missing"]], 1,
         f"nnUNetv2_resunet_convert_synapse: error: {workspace['missing']}: missing folder"),
        ("nnUNetv2_resunet_study", ["submit", workspace["missing"], "--slurm_folder", workspace["tmp"]], 2,
         f"nnUNetv2_resunet_study: error: {workspace['missing']}: no such study file"),
    ):
        result = subprocess.run([*console_script(command), *args], env=env, capture_output=True, text=True,
                                timeout=300)
        lines = result.stderr.splitlines()
        assert result.returncode == status and len(lines) == 2, result.stderr
        prog = command + (" submit" if command.endswith("study") else "")
        assert lines[0] == note.format(prog, args[-2] if command.endswith("study") else args[0],
                                       "-slurm_folder" if command.endswith("study") else "-i")
        assert lines[1].startswith(error), result.stderr


def test_output_into_a_closed_pipe_ends_quietly(workspace):
    """As ``nnUNetv2_resunet_study status STUDY | head -1``, with the reader gone before the command writes: no
    traceback, no 'Exception ignored' at exit; exit status 1, as CPython's recipe for SIGPIPE has it."""
    env = {**os.environ, **{name: workspace[name] for name in NNUNET_FOLDERS}}
    process = subprocess.Popen([*console_script("nnUNetv2_resunet_study"), "status", workspace["study"]], env=env,
                               stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    process.stdout.close()
    status = process.wait(timeout=300)
    err = process.stderr.read()
    process.stderr.close()
    assert (status, err) == (1, ""), err
