"""Docs that cannot go stale: every command, flag, trainer, module path, file and study file that README.md, docs/
and dataset_conversion/README.md name exists, as named.

What counts as a name is read from the code the docs show (fenced blocks and inline code): a command is an
``nnUNetv2_*`` console script of ours or of nnU-Net; a flag after a command must be one that command's parser
accepts (asked through ``--help``, the way a user would); ``-tr X`` and any ``...Trainer...`` name must be a
trainer nnU-Net's own lookup finds; a dotted ``nnunetv2_resunet.`` or ``nnunetv2.`` path must import (and its last
parts be attributes); a path under one of the repository's top-level folders must exist (a glob must match).
Placeholders (``<...>``, ``$VAR``, ``X``) are not names.
"""

from __future__ import annotations

import contextlib
import importlib
import io
import re
import shlex
import sys
from functools import cache
from importlib.metadata import distribution
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
DOCS = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md")), ROOT / "dataset_conversion" / "README.md"]
# Top-level folders of the repository: a path starting with one of them claims to be a file of this repository.
REPOSITORY_FOLDERS = {p.name for p in ROOT.iterdir() if p.is_dir() and not p.name.startswith(".")} - {"build"}
PLACEHOLDER = re.compile(r"[<>$*{}]|\.\.\.|\bX+\b|XXX|\bNAME\b|/data/|/my/|/path/")
# Folders each user fills (README says so); .gitignore keeps them out of the repository.
USER_FOLDERS = {line.strip().strip("/") + "/" for line in (ROOT / ".gitignore").read_text().splitlines()
                if line.startswith("/")}


def document_code(path: Path) -> list[str]:
    """The code a document shows: each fenced block's logical lines (continuations joined) and each inline span."""
    text = path.read_text(encoding="utf-8")
    pieces = []
    for block in re.findall(r"```[a-z]*\n(.*?)```", text, flags=re.S):
        pieces += block.replace("\\\n", " ").splitlines()
    without_blocks = re.sub(r"```.*?```", "", text, flags=re.S)
    pieces += re.findall(r"`([^`\n]+)`", without_blocks)
    return [p.strip() for p in pieces if p.strip()]


def all_code() -> list[tuple[str, str]]:
    return [(path.relative_to(ROOT).as_posix(), piece) for path in DOCS for piece in document_code(path)]


def console_scripts(distribution_name: str) -> dict[str, str]:
    return {e.name: e.value for e in distribution(distribution_name).entry_points if e.group == "console_scripts"}


COMMANDS = {**console_scripts("nnunetv2"), **console_scripts("nnunetv2-resunet")}


@cache
def help_text(command: str, subcommand: str | None = None) -> str:
    """A command's ``--help``, as a user would see it."""
    module, function = COMMANDS[command].split(":")
    argv = [command, *([subcommand] if subcommand else []), "--help"]
    out = io.StringIO()
    saved = sys.argv
    sys.argv = argv
    try:
        with contextlib.redirect_stdout(out), contextlib.redirect_stderr(io.StringIO()), \
                contextlib.suppress(SystemExit):
            entry = getattr(importlib.import_module(module), function)
            try:
                entry(argv[1:])
            except TypeError:  # nnU-Net's entry points read sys.argv
                entry()
    finally:
        sys.argv = saved
    return out.getvalue()


def accepted_flags(command: str, subcommand: str | None = None) -> frozenset[str]:
    """The option strings a command's ``--help`` lists (its parser's)."""
    return frozenset(re.findall(r"(?<![\w-])(--?[A-Za-z][\w-]*)", help_text(command, subcommand)))


def command_lines() -> list[tuple[str, list[str]]]:
    """(document, tokens) of every shown command line that starts with one of the console scripts."""
    lines = []
    for document, piece in all_code():
        for part in re.split(r"&&|\|", piece.split(" #")[0]):
            try:
                tokens = shlex.split(part)
            except ValueError:
                continue
            while tokens and "=" in tokens[0] and not tokens[0].startswith("-"):  # VAR=value before a command
                tokens = tokens[1:]
            if tokens and tokens[0] in COMMANDS:
                lines.append((document, tokens))
    return lines


SUBCOMMANDS = {"nnUNetv2_resunet_study": ("status", "plan", "run", "submit")}


def test_every_command_named_is_installed():
    named = {(document, name) for document, piece in all_code()
             for name in re.findall(r"\bnnUNetv2_\w+", piece) if not PLACEHOLDER.search(name)}
    unknown = sorted(f"{document}: {name}" for document, name in named if name not in COMMANDS)
    assert not unknown, "commands that are not console scripts of ours or nnU-Net's:\n" + "\n".join(unknown)


def test_every_flag_shown_is_accepted_by_its_command():
    wrong = []
    for document, tokens in command_lines():
        command, arguments = tokens[0], tokens[1:]
        subcommand = arguments[0] if arguments and arguments[0] in SUBCOMMANDS.get(command, ()) else None
        flags = accepted_flags(command, subcommand)
        for token in arguments:
            flag = token.split("=")[0]
            if re.fullmatch(r"--?[A-Za-z][\w-]*", flag) and flag not in flags:
                wrong.append(f"{document}: {' '.join(tokens)}  ({flag} is not an option of "
                             f"{command}{' ' + subcommand if subcommand else ''})")
    assert not wrong, "flags the commands do not accept:\n" + "\n".join(sorted(set(wrong)))


def defined_in_docs() -> set[str]:
    """Classes the docs define themselves (a user's own trainer, as an example)."""
    return {name for _, piece in all_code() for name in re.findall(r"^class (\w+)\(", piece)}


def test_every_trainer_named_is_found_by_nnunet():
    """Trainer names, also as the first part of nnU-Net's TRAINER__PLANS__CONFIGURATION; a base class that is not a
    trainer of its own (TransformerRecipeTrainer) must at least be importable from nnunetv2_resunet.training."""
    from nnunetv2.utilities.find_objects import recursive_find_trainer_class_by_name

    import nnunetv2_resunet.training as training

    examples = defined_in_docs()
    named = set()
    for document, piece in all_code():
        for name in re.findall(r"(?<![\w<])[A-Za-z]\w*Trainer\w*(?![\w>])", piece):
            name = name.split("__")[0]
            if PLACEHOLDER.search(name) or name.endswith("_") or name in examples or name == "Trainer" \
                    or name.startswith(("test_", "nnunetv2_", "nnUNet_")):
                continue
            named.add((document, name))
    found = {}
    for name in {name for _, name in named} - set(vars(training)):
        with contextlib.redirect_stdout(io.StringIO()):
            try:
                found[name] = recursive_find_trainer_class_by_name(name)
            except (RuntimeError, AssertionError):
                pass
    unknown = sorted(f"{document}: {name}" for document, name in named if name not in found and
                     name not in vars(training))
    assert not unknown, "trainer names nnU-Net does not find:\n" + "\n".join(unknown)


def resolves(dotted: str) -> bool:
    parts = dotted.split(".")
    for cut in range(len(parts), 0, -1):
        try:
            target = importlib.import_module(".".join(parts[:cut]))
        except ImportError:
            continue
        try:
            for attribute in parts[cut:]:
                target = getattr(target, attribute)
        except AttributeError:
            return False
        return True
    return False


def test_every_module_path_named_imports():
    named = {(document, m.rstrip(".")) for document, piece in all_code()
             for m in re.findall(r"\b(?:nnunetv2_resunet|nnunetv2)(?:\.\w+)+", piece)
             if not re.search(r"\.(pth|py|json|toml|md)$", m)}  # a file name, not a module
    broken = sorted(f"{document}: {name}" for document, name in named if not resolves(name))
    assert not broken, "module paths that do not import:\n" + "\n".join(broken)


def missing_repository_paths(text: str) -> list[str]:
    """Paths in ``text`` under one of the repository's folders that do not exist (a glob must match something)."""
    missing = []
    for token in re.findall(r"[\w.$<>*{}/-]+/[\w.$<>*{}/-]*", text):
        token = token.rstrip(".,:;")
        if token.split("/")[0] not in REPOSITORY_FOLDERS or token in USER_FOLDERS or \
                re.search(r"[<>${}]|\.\.\.|\bNAME\b", token):
            continue
        if not (list(ROOT.glob(token)) if "*" in token else (ROOT / token).exists()):
            missing.append(token)
    return sorted(set(missing))


@pytest.mark.parametrize("document", DOCS, ids=lambda p: p.relative_to(ROOT).as_posix())
def test_every_repository_path_named_exists(document):
    missing = [token for piece in document_code(document) for token in missing_repository_paths(piece)]
    assert not missing, f"{document.name} names paths that do not exist:\n" + "\n".join(sorted(set(missing)))


def test_every_path_in_our_commands_help_exists():
    ours = sorted(console_scripts("nnunetv2-resunet"))
    helps = {f"{c} {s or ''}".strip(): help_text(c, s) for c in ours for s in (None, *SUBCOMMANDS.get(c, ()))}
    assert all(helps.values()), [name for name, text in helps.items() if not text]  # every --help was read
    missing = {name: missing_repository_paths(text) for name, text in helps.items()}
    missing = {name: paths for name, paths in missing.items() if paths}
    assert not missing, f"--help names paths that do not exist: {missing}"
