"""Both ways researchers install the plugin make ``-tr ResUnetTrainer`` work with nothing to export.

``pip install .`` and ``pip install -e .`` (for those who mean to change the code) each go into a fresh virtual
environment of their own. It sees the dependencies the tests run with (torch, nnunetv2, ...) through a folder of
links that leaves out this project and every ``.pth`` start-up hook (so the copy installed for the test run cannot
register anything), and pip runs offline (``--no-index``, no build isolation). nnU-Net's own trainer lookup then
has to find our trainers in the new environment through the ``.pth`` file the install shipped.
"""

from __future__ import annotations

import os
import shutil
import site
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

# Each test installs the project into a fresh virtual environment with pip, then runs nnU-Net's lookup there.
pytestmark = pytest.mark.integration

ROOT = Path(__file__).resolve().parents[1]
PROJECT_FILES = ("setup.py", "pyproject.toml", "README.md", "nnunetv2_resunet.pth", "nnunetv2_resunet",
                 "dataset_conversion")
LOOKUP = textwrap.dedent("""\
    import os, sys
    from nnunetv2.utilities.find_objects import recursive_find_trainer_class_by_name as find
    print("EXT", os.environ.get("nnUNet_extTrainer"))
    for name in ("ResUnetTrainer", "ResUnetTrainer_Edited"):
        try:
            found = find(name)
        except RuntimeError:
            print("MISSING", name)
            continue
        # nnU-Net drops the bare-named modules of an extTrainer folder after its search: then name the module.
        module = sys.modules.get(found.__module__)
        print("FOUND", name, getattr(module, "__file__", None) or found.__module__)
""")


@pytest.fixture(scope="module")
def dependencies(tmp_path_factory) -> Path:
    """Links to everything the running interpreter's site-packages hold, except this project and .pth hooks."""
    folder = tmp_path_factory.mktemp("dependencies")
    for site_packages in site.getsitepackages():
        for entry in sorted(Path(site_packages).iterdir()):
            skip = entry.name.startswith(("nnunetv2_resunet", "__editable__")) or entry.suffix == ".pth"
            if not skip and not (folder / entry.name).exists():
                (folder / entry.name).symlink_to(entry)
    return folder


def install(tmp_path: Path, dependencies: Path, editable: bool) -> tuple[Path, Path]:
    """A copy of the project installed into a fresh venv; returns the venv's python and the copy."""
    project = tmp_path / "project"
    for name in PROJECT_FILES:
        source = ROOT / name
        if source.is_dir():
            shutil.copytree(source, project / name, ignore=shutil.ignore_patterns("__pycache__", "*.egg-info"))
        else:
            project.mkdir(exist_ok=True)
            shutil.copy2(source, project / name)
    venv = tmp_path / "venv"
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(venv)], check=True, timeout=120)
    python = venv / "bin" / "python"
    purelib = subprocess.run([str(python), "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
                             capture_output=True, text=True, check=True, timeout=120).stdout.strip()
    # A plain path line: its folder joins sys.path, but .pth files inside it are not run.
    Path(purelib, "zz_dependencies.pth").write_text(f"{dependencies}\n")
    command = [str(python), "-m", "pip", "install", "--no-deps", "--no-build-isolation", "--no-index", "-q",
               *(["-e"] if editable else []), str(project)]
    completed = subprocess.run(command, capture_output=True, text=True, cwd=tmp_path, env=clean_env(), timeout=300)
    assert completed.returncode == 0, completed.stdout[-3000:] + completed.stderr[-3000:]
    return python, project


def clean_env() -> dict[str, str]:
    return {k: v for k, v in os.environ.items() if k not in ("nnUNet_extTrainer", "PYTHONPATH")}


def lookup(python: Path, cwd: Path) -> dict[str, str]:
    completed = subprocess.run([str(python), "-c", LOOKUP], capture_output=True, text=True, cwd=cwd,
                               env=clean_env(), timeout=300)
    assert completed.returncode == 0, completed.stdout[-3000:] + completed.stderr[-3000:]
    found = {}
    for line in completed.stdout.splitlines():
        kind, *rest = line.split()
        if kind in ("FOUND", "MISSING"):
            found[rest[0]] = rest[1] if kind == "FOUND" else None
        elif kind == "EXT":
            found["nnUNet_extTrainer"] = rest[0]
    return found


def add_user_edit(project: Path) -> None:
    """What a researcher with an editable install does: add a trainer in the source tree, no re-install."""
    (project / "nnunetv2_resunet" / "ext_trainers" / "edited.py").write_text(
        "from nnunetv2_resunet.training import ResUnetTrainer\n\n\n"
        "class ResUnetTrainer_Edited(ResUnetTrainer):\n    pass\n")


def test_regular_install_registers_the_installed_trainers(tmp_path, dependencies):
    python, project = install(tmp_path, dependencies, editable=False)
    add_user_edit(project)
    found = lookup(python, tmp_path)
    installed = found["ResUnetTrainer"]
    assert installed is not None and Path(installed).is_relative_to(tmp_path / "venv")
    assert found["ResUnetTrainer_Edited"] is None  # a regular install is a copy: the source tree is not used
    # The demo's sample is package data: the installed copy carries it, whole (nnUNetv2_resunet_demo reads it there).
    sample = Path(installed).parents[1] / "demo" / "acdc_sample"
    source = project / "nnunetv2_resunet" / "demo" / "acdc_sample"
    assert sorted(p.name for p in sample.iterdir()) == sorted(p.name for p in source.iterdir())
    assert all((sample / p.name).read_bytes() == p.read_bytes() for p in source.glob("*.h5"))


def test_editable_install_registers_the_source_tree(tmp_path, dependencies):
    python, project = install(tmp_path, dependencies, editable=True)
    add_user_edit(project)
    found = lookup(python, tmp_path)
    assert found["nnUNet_extTrainer"] == str(project / "nnunetv2_resunet" / "ext_trainers")
    assert found["ResUnetTrainer"] == str(project / "nnunetv2_resunet" / "training" / "resunet_trainer.py")
    assert found["ResUnetTrainer_Edited"] == "edited"  # the module added to the source tree after installing
