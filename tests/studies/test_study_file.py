"""Study files: what they mean, one clear error per problem naming the file and the key, and the study files we
ship (parsed, every trainer found by nnU-Net's own lookup, the papers' splits)."""

import contextlib
import io
from pathlib import Path

import pytest

from nnunetv2_resunet.studies.study_file import DEFAULT_FOLDS, StudyFileError, load_study
from nnunetv2_resunet.training import EPOCH_BUDGETS, budget_suffix

SHIPPED = sorted((Path(__file__).resolve().parents[2] / "studies").glob("*.toml"))

MINIMAL = """
name = "tiny"
[[datasets]]
id = 901
[[models]]
configuration = "2d"
trainers = ["nnUNetTrainer", "ResUnetTrainer"]
"""


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "study.toml"
    path.write_text(text)
    return path


def test_defaults(tmp_path):
    study = load_study(write(tmp_path, MINIMAL))
    assert study.name == "tiny" and study.epochs is None
    (dataset,) = study.datasets
    assert (dataset.id, dataset.plans, dataset.folds, dataset.planner) == (901, "nnUNetPlans", DEFAULT_FOLDS, "nnunet")
    assert (dataset.test_images, dataset.test_labels, dataset.test_images_explicit) == ("imagesTs", "labelsTs", False)
    assert [(m.configuration, m.trainer) for m in study.models] == [("2d", "nnUNetTrainer"), ("2d", "ResUnetTrainer")]


@pytest.mark.parametrize("epochs", EPOCH_BUDGETS)
def test_epochs_name_nnunets_budget_variants(tmp_path, epochs):
    study = load_study(write(tmp_path, f"epochs = {epochs}\n" + MINIMAL))
    assert [m.trainer for m in study.models] == [f"nnUNetTrainer{budget_suffix(epochs)}",
                                                 f"ResUnetTrainer{budget_suffix(epochs)}"]


def test_a_study_spanning_datasets_and_configurations(tmp_path):
    study = load_study(write(tmp_path, """
name = "two"
folds = [0, 1]
[[datasets]]
id = 801
[[datasets]]
id = 812
folds = [0]
gpu_memory_target = 24
plans = "nnUNetPlans_24GB"
test_images = ""
[[models]]
configuration = "2d"
trainers = ["ResUnetTrainer"]
[[models]]
configuration = "3d_fullres"
trainers = ["nnUNetTrainer"]
datasets = [801]
[slurm]
partition = "gpu"
time = "2-00:00:00"
[slurm.preprocess]
cpus = 32
"""))
    first, second = study.datasets
    assert first.folds == (0, 1) and second.folds == (0,)
    assert (second.plans, second.gpu_memory_target, second.test_images) == ("nnUNetPlans_24GB", 24, None)
    assert [m.trainer for m in study.models_for(first)] == ["ResUnetTrainer", "nnUNetTrainer"]
    assert [m.trainer for m in study.models_for(second)] == ["ResUnetTrainer"]
    assert study.slurm == {"partition": "gpu", "time": "2-00:00:00", "preprocess": {"cpus": 32}}


@pytest.mark.parametrize("text, problem", [
    ("name = 'x'\n", "datasets: is required"),
    (MINIMAL.replace('name = "tiny"', 'name = "a b"'), "name: 'a b' must be a folder name"),
    ("colour = 1\n" + MINIMAL, "the top level: unknown key(s) ['colour']"),
    (MINIMAL.replace("id = 901", "id = 'ACDC'"), "datasets[0].id: must be int"),
    (MINIMAL.replace("id = 901", "id = 901\nfolds = [0, 0]"), "datasets[0].folds: a fold is listed twice"),
    (MINIMAL.replace("id = 901", "id = 901\nplanner = 'mine'"), "datasets[0].planner: must be one of"),
    (MINIMAL.replace("id = 901", "id = 901\ngpu_memory_target = 4"), "datasets[0].plans: with gpu_memory_target"),
    (MINIMAL.replace('"ResUnetTrainer"]', '"ResUnetTrainer_5epochs"]').replace("name", "epochs = 5\nname"),
     "ResUnetTrainer_5epochs already names a budget"),
    (MINIMAL.replace('trainers = ["nnUNetTrainer", "ResUnetTrainer"]', "trainers = []"),
     "models[0].trainers: must be a non-empty list"),
    (MINIMAL + "[[models]]\nconfiguration = '2d'\ntrainers = ['nnUNetTrainer']\n", "nnUNetTrainer 2d is listed twice"),
    (MINIMAL + "[slurm]\ngpu = 1\n", "slurm.gpu: unknown key"),
    (MINIMAL + "[slurm.train]\ngpus = 'one'\n", "slurm.train.gpus: must be int"),
    ("name = [\n", "not a valid TOML file"),
])
def test_problems_are_named_with_file_and_key(tmp_path, text, problem):
    path = write(tmp_path, text)
    with pytest.raises(StudyFileError) as error:
        load_study(path)
    assert str(error.value).startswith(f"{path}: ")
    assert problem in str(error.value)


def test_missing_file(tmp_path):
    with pytest.raises(StudyFileError, match="no such study file"):
        load_study(tmp_path / "absent.toml")


def test_we_ship_the_thesis_studies():
    names = {p.stem for p in SHIPPED}
    assert {"thesis_ladder", "thesis_comparisons", "thesis_transformers", "acdc_1epoch"} <= names
    # Each thesis study puts nnU-Net's default and its ResEnc M and L presets, 2d and 3d_fullres, beside ResUnet.
    for path in (p for p in SHIPPED if p.stem.startswith("thesis_")):
        study = load_study(path)
        models = {(m.trainer, m.configuration, m.plans_for(study.datasets[0]).plans) for m in study.models}
        nnunet = {("nnUNetTrainer", c, p) for c in ("2d", "3d_fullres")
                  for p in ("nnUNetPlans", "nnUNetResEncUNetMPlans", "nnUNetResEncUNetLPlans")}
        assert nnunet <= models and ("ResUnetTrainer", "2d", "nnUNetPlans") in models, path.name


@pytest.mark.parametrize("path", SHIPPED, ids=lambda p: p.name)
def test_shipped_study_is_valid_and_every_trainer_is_found_by_nnunet(path):
    from nnunetv2.utilities.find_objects import recursive_find_trainer_class_by_name

    study = load_study(path)
    assert study.name == path.stem  # results/<name>/ matches the file
    for trainer in {m.trainer for m in study.models}:
        with contextlib.redirect_stdout(io.StringIO()):
            assert recursive_find_trainer_class_by_name(trainer).__name__ == trainer
    # The papers' splits: ACDC with TransUNet's protocol (one fold), Synapse and AVT with their test sets held out.
    for dataset in study.datasets:
        if dataset.id == 812:
            assert dataset.folds == (0,)


def test_weights_are_resolved_beside_the_study_file(tmp_path):
    text = MINIMAL + '\n[[models]]\nconfiguration = "2d"\ntrainers = ["ResUnetTrainer_v0_2"]\n' \
                     'weights = "weights/resnet34-b627a593.pth"\n'
    study = load_study(write(tmp_path, text))
    assert {m.trainer: m.weights for m in study.models} == {
        "nnUNetTrainer": None, "ResUnetTrainer": None,
        "ResUnetTrainer_v0_2": tmp_path / "weights" / "resnet34-b627a593.pth"}
    with pytest.raises(StudyFileError, match=r"study.toml: models\[1\].weights: must name a file"):
        load_study(write(tmp_path, text.replace('"weights/resnet34-b627a593.pth"', '""')))


def test_shipped_studies_start_each_trainer_from_the_same_weights():
    """The studies share nnU-Net's folders, so a trainer must start from the same weights in all of them (else a fold
    one study trained is a mismatch in the other); a trainer defined by its ImageNet start (v0.2) must have them."""
    from nnunetv2_resunet.training import ALL_TRAINERS

    files: dict[str, set] = {}
    for path in SHIPPED:
        for model in load_study(path).models:
            files.setdefault(model.trainer, set()).add(model.weights.name if model.weights else None)
    assert {trainer: names for trainer, names in files.items() if len(names) > 1} == {}
    imagenet = [t.__name__ for t in ALL_TRAINERS if getattr(t.resunet_config, "imagenet_init", False)]
    assert imagenet and all(files.get(t, {"set"}) != {None} for t in imagenet)


def test_a_model_names_its_planner_and_plans(tmp_path):
    """nnU-Net's default and its ResEnc presets in one study: each model block may name its own planner and plans;
    one plans name is made one way only."""
    from nnunetv2_resunet.studies.study_file import PLANNERS, PlansSpec

    text = MINIMAL + '\n[[models]]\nconfiguration = "2d"\ntrainers = ["nnUNetTrainer"]\nplanner = "resenc_m"\n' \
                     '\n[[models]]\nconfiguration = "3d_fullres"\ntrainers = ["nnUNetTrainer"]\nplanner = "resenc_l"\n'
    study = load_study(write(tmp_path, text))
    (dataset,) = study.datasets
    assert [(m.trainer, m.configuration, m.plans_for(dataset).plans) for m in study.models] == [
        ("nnUNetTrainer", "2d", "nnUNetPlans"), ("ResUnetTrainer", "2d", "nnUNetPlans"),
        ("nnUNetTrainer", "2d", "nnUNetResEncUNetMPlans"), ("nnUNetTrainer", "3d_fullres", "nnUNetResEncUNetLPlans")]
    assert study.models[2].plans_spec == PlansSpec("resenc_m", "nnUNetResEncUNetMPlans")
    assert PLANNERS["resenc_l"] == ("nnUNetPlannerResEncL", "nnUNetResEncUNetLPlans")
    for bad, problem in [
        ('planner = "resenc_m"\ngpu_memory_target = 80', "models[1].plans: with gpu_memory_target, name the plans "
                                                         "(e.g. \"nnUNetResEncUNetMPlans_4GB\")"),
        ('planner = "resenc_s"', "models[1].planner: must be one of ['nnunet', 'resenc_m', 'resenc_l', 'resenc_xl', "
                                 "'resunet']"),
        ('planner = "resunet"\nconfiguration = "3d_fullres"', "models[1].planner: resunet plans the 2d configuration "
                                                              "only"),
        ('planner = "resenc_l"\nplans = "nnUNetPlans"', "dataset 901: plans nnUNetPlans are made two ways"),
    ]:
        block = '\n[[models]]\ntrainers = ["nnUNetTrainer"]\n' + bad + '\n'
        if "configuration" not in bad:
            block += 'configuration = "2d"\n'
        with pytest.raises(StudyFileError) as error:
            load_study(write(tmp_path, MINIMAL + block))
        assert problem in str(error.value)


def test_repeats_name_seeded_trainer_variants(tmp_path):
    """repeats = N trains every trainer N times as <trainer>_seed0 .. _seed<N-1> (after any budget); a model block
    may set its own."""
    text = "epochs = 5\nrepeats = 2\n" + MINIMAL + \
           '\n[[models]]\nconfiguration = "3d_fullres"\ntrainers = ["nnUNetTrainer"]\nrepeats = 3\n'
    study = load_study(write(tmp_path, text))
    assert [(m.trainer, m.configuration) for m in study.models] == [
        ("nnUNetTrainer_5epochs_seed0", "2d"), ("nnUNetTrainer_5epochs_seed1", "2d"),
        ("ResUnetTrainer_5epochs_seed0", "2d"), ("ResUnetTrainer_5epochs_seed1", "2d"),
        ("nnUNetTrainer_5epochs_seed0", "3d_fullres"), ("nnUNetTrainer_5epochs_seed1", "3d_fullres"),
        ("nnUNetTrainer_5epochs_seed2", "3d_fullres")]
    for bad, problem in [("repeats = 0\n", "repeats: must be a positive number of trainings, got 0"),
                         ("repeats = 2\n" + MINIMAL.replace('"ResUnetTrainer"', '"ResUnetTrainer_seed4"'),
                          "ResUnetTrainer_seed4 already names a seeded repeat")]:
        with pytest.raises(StudyFileError, match=problem):
            load_study(write(tmp_path, bad + (MINIMAL if "name" not in bad else "")))
