"""Studies that say what to do: every subcommand checks a study the same way and names every problem at once; a
study whose data are missing still shows its table and names, per dataset, the converter command its file gives
(checked here against the converters' real command lines and the shipped files' headers). In-process and on tiny
folders: nothing is trained."""

import json
import shlex
from pathlib import Path

import pytest

from nnunetv2_resunet.studies import cli
from nnunetv2_resunet.studies.checks import StudyProblems, check_study, study_problems
from nnunetv2_resunet.studies.runs import NnUNetFolders, build_runs
from nnunetv2_resunet.studies.sources import CONVERTERS
from nnunetv2_resunet.studies.study_file import StudyFileError, load_study

STUDIES = Path(__file__).resolve().parents[2] / "studies"
SHIPPED = sorted(STUDIES.glob("*.toml"))


@pytest.fixture
def nnunet_folders(tmp_path, monkeypatch) -> Path:
    """Empty nnU-Net folders, set in the environment (nnU-Net reads its variables when called)."""
    for variable, folder in (("nnUNet_raw", "raw"), ("nnUNet_preprocessed", "preprocessed"),
                             ("nnUNet_results", "results")):
        (tmp_path / folder).mkdir()
        monkeypatch.setenv(variable, str(tmp_path / folder))
    return tmp_path


def study_command(*argv: str, capsys) -> tuple[int, str, str]:
    """``nnUNetv2_resunet_study ARGV`` in this process: exit code, stdout, stderr."""
    code = cli.main(list(argv))  # run_command: the exit status, returned
    out, err = capsys.readouterr()
    return code, out, err


def fake_dataset(raw: Path, name: str, **extra) -> Path:
    """A dataset.json (all the checks and the status read of a dataset that has no cases yet)."""
    (raw / name).mkdir(parents=True)
    (raw / name / "dataset.json").write_text(json.dumps({"numTraining": 2, "file_ending": ".nii.gz", **extra}))
    return raw / name


def test_a_study_without_data_shows_its_table_and_each_datasets_converter_command(nnunet_folders, capsys):
    study = STUDIES / "thesis_ladder.toml"
    code, out, err = study_command("status", str(study), capsys=capsys)
    assert code == 2
    for name in ("Dataset801_Synapse", "Dataset812_ACDCTransUNet", "Dataset803_AVT"):
        assert f"preprocess  {name}" in out  # the table, with the names the conversion will give
    assert "train       Dataset812_ACDCTransUNet  ResUnetTrainer__nnUNetPlans__2d" in out
    assert "Dataset812_ACDCTransUNet  ResUnetTrainer__nnUNetPlans__2d          fold_1" not in out  # TransUNet: fold 0
    # Every missing dataset, with the converter and the options this study needs, and every other problem with them.
    assert "4 problems:" in err
    assert "dataset 801 is not in $nnUNet_raw" in err and "convert it first" in err
    assert "nnUNetv2_resunet_convert_synapse -i SOURCE -d 801 -n Synapse   (SOURCE: the raw BTCV release's" in err
    assert "nnUNetv2_resunet_convert_acdc -i SOURCE -d 812 -n ACDCTransUNet -split transunet   (SOURCE:" in err
    assert "nnUNetv2_resunet_convert_avt -i SOURCE -d 803 -n AVT   (SOURCE:" in err
    assert "weights: no such file" in err

    code, out, err = study_command("plan", str(study), "-device", "cpu", capsys=capsys)
    assert code == 2 and "4 problems:" in err
    assert ("$ nnUNetv2_resunet_convert_acdc -i SOURCE -d 812 -n ACDCTransUNet -split transunet && "
            "nnUNetv2_plan_and_preprocess -d 812") in out
    assert "predict Dataset812_ACDCTransUNet ResUnetTrainer__nnUNetPlans__2d predictions_imagesTs_folds_0" in out


def test_a_dataset_the_file_does_not_say_how_to_make_is_named_too(nnunet_folders, tmp_path):
    path = tmp_path / "bare.toml"
    path.write_text('name = "bare"\n[[datasets]]\nid = 977\n[[models]]\nconfiguration = "2d"\n'
                    'trainers = ["nnUNetTrainer"]\n')
    study = load_study(path)
    folders = NnUNetFolders.from_environment(study)
    runs = build_runs(study, folders)
    assert {r.dataset for r in runs} == {"Dataset977_?"}
    assert [r.stage for r in runs] == ["preprocess", *["train"] * 5, "report"]  # no test set known: no prediction
    (problem,) = study_problems(study, folders)
    assert problem.startswith("dataset 977 is not in $nnUNet_raw") and "add a [datasets.convert] table" in problem


@pytest.mark.parametrize("path", SHIPPED, ids=lambda p: p.stem)
def test_shipped_convert_commands_are_what_the_converters_accept(path, nnunet_folders, monkeypatch, capsys):
    """Each dataset's command, run through its converter's real command line: the flags exist and mean what the
    study file says (the conversion itself is replaced by a recorder)."""
    from nnunetv2_resunet.dataset_conversion import convert_acdc, convert_avt, convert_synapse

    modules = {"synapse": convert_synapse, "acdc": convert_acdc, "avt": convert_avt}
    for dataset in load_study(path).datasets:
        assert dataset.convert is not None, f"{path.name}: dataset {dataset.id} has no [datasets.convert]"
        spec = dataset.convert
        module = modules[spec.converter]
        calls = []
        function = f"convert_{spec.converter}"
        monkeypatch.setattr(module, function, lambda *args, calls=calls: calls.append(args) or Path("."))
        command = spec.command(dataset.id)
        assert command[0] == CONVERTERS[spec.converter].command
        assert module.main(command[1:]) == 0, capsys.readouterr().err
        (args,) = calls
        assert (str(args[0]), args[1], args[2]) == ("SOURCE", dataset.id, spec.name)
        if spec.converter == "acdc":
            assert args[3] == (spec.split or "nnunet")
        if dataset.id == 812:
            assert spec.split == "transunet"  # the papers' test set and their one fold


@pytest.mark.parametrize("path", SHIPPED, ids=lambda p: p.stem)
def test_shipped_headers_convert_as_their_tables_say(path):
    """The commands in a study file's header are its [datasets.convert] commands (only -i differs)."""
    header = [line[1:].split("  #")[0].strip() for line in path.read_text().splitlines() if line.startswith("#")]
    for dataset in load_study(path).datasets:
        expected = dataset.convert.command(dataset.id)
        written = [shlex.split(line) for line in header if line.startswith(expected[0])
                   and f" -d {dataset.id} " in f"{line} "]
        assert len(written) == 1, f"{path.name}: no header line converts dataset {dataset.id}"
        command = [t for t in written[0] if t not in ("-np", "2")]
        command[command.index("-i") + 1] = "SOURCE"
        assert command == expected


def test_a_dataset_converted_with_another_split_is_a_problem(nnunet_folders, tmp_path):
    fake_dataset(nnunet_folders / "raw", "Dataset812_ACDCTransUNet", split="nnunet")
    path = tmp_path / "acdc.toml"
    path.write_text('name = "acdc"\n[[datasets]]\nid = 812\n[datasets.convert]\nconverter = "acdc"\n'
                    'split = "transunet"\nname = "ACDCTransUNet"\n[[models]]\nconfiguration = "2d"\n'
                    'trainers = ["nnUNetTrainer"]\n')
    study = load_study(path)
    (problem,) = study_problems(study, NnUNetFolders.from_environment(study))
    assert "was converted with split 'nnunet', but the study names split 'transunet'" in problem
    assert problem.endswith("-d 812 -n ACDCTransUNet -split transunet   (SOURCE: ACDC's challenge release "
                            "(database/, real spacing) or the SSL4MIS/WSL4MIS h5 volumes (data/ACDC)) --overwrite")
    fake_dataset(nnunet_folders / "raw", "Dataset813_ACDC", split="transunet")
    path.write_text(path.read_text().replace("812", "813").replace("ACDCTransUNet", "ACDC"))
    study = load_study(path)
    assert study_problems(study, NnUNetFolders.from_environment(study)) == []


BROKEN = """
name = "broken"
[[datasets]]
id = 901
[[datasets]]
id = 902
planner = "resunet"
[[models]]
configuration = "2D"
trainers = ["nnUNetTrainer", "ResUnetTrainr"]
[[models]]
configuration = "3d_fullres"
trainers = ["ResUnetTrainer"]
[[models]]
configuration = "3d_fulres"
trainers = ["nnUNetTrainer"]
datasets = [901]
[[models]]
configuration = "2d"
trainers = ["ResUnetTrainer_v0_2"]
weights = "weights/absent.pth"
"""


@pytest.mark.parametrize("command", ["status", "plan", "run", "submit"])
def test_every_subcommand_names_every_problem_at_once(nnunet_folders, tmp_path, capsys, command):
    raw = nnunet_folders / "raw"
    fake_dataset(raw, "Dataset901_Tiny")
    fake_dataset(raw, "Dataset902_Tiny")
    plans = nnunet_folders / "preprocessed" / "Dataset901_Tiny"  # planned: its configurations are the plans'
    plans.mkdir()
    (plans / "nnUNetPlans.json").write_text(json.dumps({"configurations": {
        "2d": {"patch_size": [64, 64]}, "3d_fullres": {"patch_size": [8, 64, 64]},
        "3d_lowres": {"inherits_from": "3d_fullres"}}}))
    path = tmp_path / "broken.toml"
    path.write_text(BROKEN)
    code, out, err = study_command(command, str(path), capsys=capsys)
    assert code == 2
    problems = err.split("7 problems:\n")[1].splitlines()
    assert [p.split(": ")[0] for p in problems] == [
        "  - nnU-Net finds no trainer named ResUnetTrainr",
        "  - configuration '2D'",
        "  - ResUnetTrainer trains a 2D network, but configuration '3d_fullres' is 3D",
        "  - configuration '3d_fulres'",
        "  - configuration '2D'",
        "  - dataset 902",
        "  - weights",
    ], err
    assert "Dataset901_Tiny/nnUNetPlans.json has 2d, 3d_fullres, 3d_lowres (did you mean '2d'?)" in problems[1]
    assert "(did you mean '3d_fullres'?)" in problems[3]
    assert "nnU-Net's planner writes 2d, 3d_fullres, 3d_lowres, 3d_cascade_fullres (did you mean '2d'?)" in problems[4]
    assert "planner = \"resunet\" plans the 2d configuration only, but ResUnetTrainer trains 3d_fullres" in problems[5]
    if command in ("status", "plan"):
        assert "Dataset901_Tiny" in out and "Dataset902_Tiny" in out  # the table is still shown
    else:
        assert out == "" and not list(tmp_path.rglob("study_*.log"))  # nothing started


def test_the_checks_raise_one_error_naming_the_file(nnunet_folders, tmp_path):
    fake_dataset(nnunet_folders / "raw", "Dataset901_Tiny")
    path = tmp_path / "one.toml"
    path.write_text('name = "one"\nepochs = 7\n[[datasets]]\nid = 901\n[[models]]\nconfiguration = "2d"\n'
                    'trainers = ["nnUNetTrainer"]\n')
    study = load_study(path)
    with pytest.raises(StudyProblems) as error:
        check_study(study, NnUNetFolders.from_environment(study))
    assert isinstance(error.value, StudyFileError)
    assert str(error.value).startswith(f"{path}: nnU-Net finds no trainer named nnUNetTrainer_7epochs (epochs = 7: "
                                       f"the budgets nnU-Net and this plugin provide are 1, 5, 10")


def test_fold_all_goes_through_to_the_report(nnunet_folders, tmp_path):
    """``folds = ["all"]``: nnU-Net's fold_all is trained, predicted with and reported, and the report command that
    the study builds is one the report's own parser reads as fold ``all``."""
    from nnunetv2_resunet.evaluation.report.cli import build_parser
    from nnunetv2_resunet.studies.execute import Options, command_for
    from nnunetv2_resunet.studies.state import RunState, Status

    fake_dataset(nnunet_folders / "raw", "Dataset901_Tiny")
    (nnunet_folders / "raw" / "Dataset901_Tiny" / "imagesTs").mkdir()
    path = tmp_path / "all.toml"
    path.write_text('name = "all"\nfolds = ["all"]\n[[datasets]]\nid = 901\n[[models]]\nconfiguration = "2d"\n'
                    'trainers = ["nnUNetTrainer"]\n')
    study = load_study(path)
    folders = NnUNetFolders.from_environment(study)
    runs = build_runs(study, folders)
    assert [r.key for r in runs] == [
        "preprocess Dataset901_Tiny nnUNetPlans", "train Dataset901_Tiny nnUNetTrainer__nnUNetPlans__2d fold_all",
        "predict Dataset901_Tiny nnUNetTrainer__nnUNetPlans__2d predictions_imagesTs_folds_all",
        "report Dataset901_Tiny"]
    states = {r.key: RunState(Status.DONE if r.stage != "report" else Status.WAITING) for r in runs}
    commands = {r.stage: command_for(r, runs, states, folders, Options(device="cpu", num_processes=1)) for r in runs}
    assert commands["train"][:4] == ["nnUNetv2_train", "901", "2d", "all"]
    assert commands["predict"][commands["predict"].index("-f") + 1] == "all"
    assert build_parser().parse_args(commands["report"][1:]).folds == ["all"]


@pytest.mark.parametrize("np_arg, preprocessing, prediction, report", [
    ("3", "3", "3", "3"),
    ("0", "1", "0", "0"),  # nnU-Net's sequential prediction; its preprocessing needs a worker
])
def test_np_sets_nnunets_process_counts_and_0_means_no_workers(nnunet_folders, tmp_path, np_arg, preprocessing,
                                                               prediction, report):
    """``-np N`` (``run``, ``plan``, ``submit``) gives N to preprocessing (-np, -npfp), prediction (-npp, -nps) and the
    report (-np); ``-np 0`` runs prediction in nnU-Net's sequential mode and the report without workers, and
    preprocesses with one worker (nnU-Net's preprocessing has no sequential mode). A negative count is refused."""
    from nnunetv2_resunet.studies.execute import command_for
    from nnunetv2_resunet.studies.state import RunState, Status

    fake_dataset(nnunet_folders / "raw", "Dataset901_Tiny")
    (nnunet_folders / "raw" / "Dataset901_Tiny" / "imagesTs").mkdir()
    path = tmp_path / "np.toml"
    path.write_text('name = "np"\n[[datasets]]\nid = 901\n[[models]]\nconfiguration = "2d"\n'
                    'trainers = ["nnUNetTrainer"]\n')
    options = cli.options_from(cli.build_parser().parse_args(["run", str(path), "-device", "cpu", "-np", np_arg]))
    study = load_study(path)
    folders = NnUNetFolders.from_environment(study)
    runs = build_runs(study, folders)
    states = {r.key: RunState(Status.DONE if r.stage != "report" else Status.WAITING) for r in runs}
    commands = {r.stage: command_for(r, runs, states, folders, options) for r in runs}

    def value(stage: str, flag: str) -> str:
        return commands[stage][commands[stage].index(flag) + 1]

    assert commands["preprocess"][0] == "nnUNetv2_plan_and_preprocess"
    assert value("preprocess", "-np") == value("preprocess", "-npfp") == preprocessing
    assert value("predict", "-npp") == value("predict", "-nps") == prediction
    assert value("report", "-np") == report
    with pytest.raises(SystemExit) as refused:
        cli.build_parser().parse_args(["run", str(path), "-np", "-1"])
    assert refused.value.code == 2


def test_reports_go_beside_nnunets_results_and_a_chosen_folder_is_found_again(nnunet_folders, tmp_path, monkeypatch):
    """Without -o, reports go to $nnUNet_results/studies/<study>/ whatever the current folder; a run with -o DIR
    records DIR there, so a later status without -o finds the reports, until -o names the default again."""
    path = tmp_path / "where.toml"
    path.write_text('name = "where"\n[[datasets]]\nid = 901\n[[models]]\nconfiguration = "2d"\n'
                    'trainers = ["nnUNetTrainer"]\n')
    study = load_study(path)
    home = nnunet_folders / "results" / "studies" / "where"
    (tmp_path / "elsewhere").mkdir()
    monkeypatch.chdir(tmp_path / "elsewhere")
    assert NnUNetFolders.from_environment(study).reports == home
    NnUNetFolders.from_environment(study, "mine").remember_reports(study)  # relative: from the current folder
    monkeypatch.chdir(tmp_path)
    assert NnUNetFolders.from_environment(study).reports == tmp_path / "elsewhere" / "mine" / "where"
    before = (home / "reports_folder.json").stat().st_mtime_ns
    NnUNetFolders.from_environment(study).remember_reports(study)  # the same again: nothing written
    assert (home / "reports_folder.json").stat().st_mtime_ns == before
    NnUNetFolders.from_environment(study, home.parent).remember_reports(study)
    assert NnUNetFolders.from_environment(study).reports == home and not (home / "reports_folder.json").exists()
