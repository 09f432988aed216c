"""The folder tree is the architecture: imports point only the ways the subpackages' docstrings say.

Every ``import`` of every module is parsed (also those inside functions, relative ones resolved), and each import
of another part of the project must be one that ``MAY_IMPORT`` allows. A new subpackage fails here until it is
given a row: where it sits is a decision, not an accident. Modules stay readable on a few screens.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
PACKAGE = "nnunetv2_resunet"

# Which other parts of the project each part may import (a part may always import itself).
MAY_IMPORT: dict[str, set[str]] = {
    "architectures": set(),  # networks know nothing of training, reports, planning or costs
    "training": {"architectures", "command_line"},
    "ext_trainers": {"training"},  # what nnU-Net imports by bare name: re-exports only
    "evaluation": {"command_line"},  # reads predictions on disk, never a network
    "experiment_planning": {"architectures", "command_line"},  # plans for a network's memory
    "benchmarking": {"architectures", "training", "experiment_planning", "command_line"},
    "dataset_conversion": {"command_line"},
    # drives nnU-Net and our commands as subprocesses; reads only the budget names of training
    "studies": {"training", "command_line"},
    # runs the converter and a study as their commands, on shipped data
    "demo": {"dataset_conversion", "studies", "command_line"},
    # what every console command shares (flag spelling, one line per mistake): argparse and nnU-Net only
    "command_line": set(),
    "_ext_trainer": set(),  # the .pth hook: runs in every Python process
    "__init__": set(),
}
# Outside packages a part must not import (beyond the project's own parts).
MUST_NOT_IMPORT: dict[str, set[str]] = {
    "architectures": {"nnunetv2"},  # plain torch modules, usable outside nnU-Net like dynamic-network-architectures
    "_ext_trainer": {"torch", "nnunetv2", "numpy"},  # only os: it runs at every interpreter start
    "__init__": {"torch", "nnunetv2", "numpy"},
}
MAX_LINES = 400
# Modules allowed above MAX_LINES, each one cohesive thing with a name.
LONG_MODULES: dict[str, str] = {
    "dataset_conversion/transaction.py": "the transaction that lands dataset and split together: work folders, "
                                         "the run's lock, signals, and recovery of a killed run's leftovers",
}


def source_files() -> dict[Path, str]:
    """Every module of the project and the part it belongs to (dataset_conversion/ installs inside the package)."""
    files = {}
    for path in sorted((ROOT / PACKAGE).rglob("*.py")):
        relative = path.relative_to(ROOT / PACKAGE)
        files[path] = relative.parts[0] if len(relative.parts) > 1 else relative.stem
    for path in sorted((ROOT / "dataset_conversion").rglob("*.py")):
        files[path] = "dataset_conversion"
    return files


def module_name(path: Path) -> str:
    """The dotted name a file is imported as."""
    relative = path.relative_to(ROOT)
    parts = list(relative.with_suffix("").parts)
    if parts[0] == "dataset_conversion":
        parts = [PACKAGE, *parts]
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def imported_modules(source: str, importer: str, is_package: bool) -> set[str]:
    """Dotted names of every module ``source`` imports, anywhere in it; ``from X import y`` yields X and X.y
    (y may be a submodule). ``importer`` is the module's own name, for relative imports."""
    modules = set()
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Import):
            modules.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = importer.split(".")
                anchor = anchor if is_package else anchor[:-1]
                anchor = anchor[:len(anchor) - (node.level - 1)]
                base = ".".join(anchor + ([base] if base else []))
            modules.add(base)
            modules.update(f"{base}.{alias.name}" for alias in node.names)
    return modules


def part_of(module: str) -> str | None:
    """The project part a dotted module name belongs to, or None for an outside package."""
    parts = module.split(".")
    if parts[0] != PACKAGE:
        return None
    return parts[1] if len(parts) > 1 else "__init__"


def test_imported_modules_resolves_relative_and_nested_imports():
    source = ("from .cases import Run\nfrom ...training import ResUnetTrainer\n"
              "def f():\n    import nnunetv2_resunet.architectures.registry\n")
    modules = imported_modules(source, "nnunetv2_resunet.evaluation.report.cli", is_package=False)
    assert {"nnunetv2_resunet.evaluation.report.cases", "nnunetv2_resunet.training.ResUnetTrainer",
            "nnunetv2_resunet.architectures.registry"} <= modules
    # Both would break the rule for evaluation, relative or inside a function.
    assert {part_of(m) for m in modules} == {"evaluation", "training", "architectures"}
    package = imported_modules("from . import plots\n", "nnunetv2_resunet.evaluation", is_package=True)
    assert "nnunetv2_resunet.evaluation.plots" in package


def test_every_part_has_a_rule():
    parts = set(source_files().values())
    assert parts <= set(MAY_IMPORT), f"parts without an import rule in MAY_IMPORT: {sorted(parts - set(MAY_IMPORT))}"


@pytest.mark.parametrize("path", sorted(source_files()), ids=lambda p: str(p.relative_to(ROOT)))
def test_imports_point_the_allowed_way(path):
    part = source_files()[path]
    modules = imported_modules(path.read_text(encoding="utf-8"), module_name(path), path.name == "__init__.py")
    allowed = MAY_IMPORT.get(part, set()) | {part}
    wrong = sorted(m for m in modules if part_of(m) is not None and part_of(m) not in allowed)
    assert not wrong, f"{part} may import {sorted(allowed)} of this project, but imports {wrong}"
    forbidden = sorted(m for m in modules if m.split(".")[0] in MUST_NOT_IMPORT.get(part, set()))
    assert not forbidden, f"{part} must not import {sorted(MUST_NOT_IMPORT[part])}, but imports {forbidden}"


@pytest.mark.parametrize("path", sorted(source_files()), ids=lambda p: str(p.relative_to(ROOT)))
def test_modules_stay_readable(path):
    relative = str(path.relative_to(ROOT))
    lines = len(path.read_text(encoding="utf-8").splitlines())
    if relative in LONG_MODULES:
        return
    assert lines <= MAX_LINES, f"{relative} has {lines} lines: split it along its seams (or name why it is one thing)"


# ----------------------------------------------------------------------------------------------------------------------
# Tests cannot hang CI: every subprocess a test starts has a time limit
# ----------------------------------------------------------------------------------------------------------------------

SUBPROCESS_FUNCTIONS = {"run", "call", "check_call", "check_output"}
WAITING_METHODS = {"communicate", "wait"}


def calls_without_timeout(source: str) -> list[int]:
    """Line numbers of ``subprocess.run/call/check_call/check_output(...)`` without ``timeout=``, and of
    ``.communicate()`` / ``.wait()`` with no time limit (keyword or positional) in ``source``, including Python
    source that a test writes out as a string constant and runs (a stand-in command, a driver)."""
    lines = []
    trees = [ast.parse(source)]
    for node in ast.walk(trees[0]):
        if isinstance(node, ast.Constant) and isinstance(node.value, str) and "subprocess." in node.value:
            try:
                trees.append(ast.parse(node.value))
            except SyntaxError:
                continue
    for tree in trees:
        for node in ast.walk(tree):
            if not (isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute)):
                continue
            name, owner = node.func.attr, node.func.value
            keywords = {k.arg for k in node.keywords}
            if name in SUBPROCESS_FUNCTIONS and isinstance(owner, ast.Name) and owner.id == "subprocess":
                if "timeout" not in keywords:
                    lines.append(node.lineno)
            elif name in WAITING_METHODS and "timeout" not in keywords and not node.args:
                lines.append(node.lineno)
    return lines


def test_calls_without_timeout_finds_each_kind():
    source = ("import subprocess\nsubprocess.run(['x'])\nsubprocess.run(['x'], timeout=5)\np.communicate()\n"
              "p.wait(10)\nCODE = '''\nimport subprocess\nsubprocess.call(['y'])\n'''\n")
    assert calls_without_timeout(source) == [2, 4, 3]  # the last: line 3 of the embedded source


@pytest.mark.parametrize("path", sorted(p for p in (ROOT / "tests").rglob("*.py") if p != Path(__file__).resolve()),
                         ids=lambda p: str(p.relative_to(ROOT)))  # (this file's examples lack timeouts on purpose)
def test_every_subprocess_of_the_tests_has_a_timeout(path):
    missing = calls_without_timeout(path.read_text(encoding="utf-8"))
    assert not missing, f"{path.relative_to(ROOT)}: subprocess calls without a timeout at lines {missing}"
