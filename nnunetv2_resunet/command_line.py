"""What every console command of the plugin shares: nnU-Net's spelling of flags, and one line for every mistake.

Spelling, as nnU-Net's own commands have it (``nnUNetv2_train``, ``nnUNetv2_predict``,
``nnUNetv2_plan_and_preprocess``): an option that takes a value has one dash (``-d``, ``-c``, ``-tr``, ``-p``,
``-f``, ``-o``, ``-np``, ``-device``, ``-gpu_memory_target``), a switch has two (``--verbose``, ``--overwrite``,
``--no_pp``), and words are joined by underscores. :func:`add_option` registers an option under that spelling; the
spellings the plugin used before stay accepted and print a one-line note naming the new one. :class:`CommandParser`
takes nothing by abbreviation: argparse reads an unknown ``-device`` as ``-d evice`` when ``-d`` exists, and
``-dev`` as ``-device``; both are refused here with what to write instead.

Errors: :func:`run_command` runs a command's body. A :class:`UserError` (or one of the command's own error classes)
and nnU-Net's known complaints (an unset ``nnUNet_raw``, an unknown dataset id or trainer) become one line on
stderr, ``PROG: error: ...``, and a non-zero exit status; any other exception is a bug and keeps its traceback.
``--debug`` (every command has it) or ``nnUNet_resunet_debug=1`` shows the traceback of a user error too. Output
piped into ``head`` ends quietly.

The checks every command makes at its edge are here too: :func:`nnunet_folder`, :func:`dataset_name`,
:func:`existing_folder`, :func:`existing_file`, :func:`output_folder`, :func:`trainer_class`,
:func:`torch_device`.
"""

from __future__ import annotations

import argparse
import os
import re
import sys
import traceback
import warnings
from collections.abc import Callable, Sequence

DEBUG_VARIABLE = "nnUNet_resunet_debug"
DEBUG_FLAG = "--debug"
NNUNET_FOLDERS = ("nnUNet_raw", "nnUNet_preprocessed", "nnUNet_results")


class UserError(ValueError):
    """A mistake in a command's input; the message names the input and what to do. Shown as one line, no
    traceback. A ValueError, so code that catches those keeps working."""


# ----------------------------------------------------------------------------------------------------------------------
# Parsing
# ----------------------------------------------------------------------------------------------------------------------


class CommandParser(argparse.ArgumentParser):
    """``argparse.ArgumentParser`` for our commands: no abbreviations, old spellings noted, ``--debug``, and
    argparse's own complaints on one line (``PROG: error: ... (see PROG -h)``)."""

    def __init__(self, *args, **kwargs):
        kwargs.setdefault("allow_abbrev", False)
        super().__init__(*args, **kwargs)
        self.add_argument(DEBUG_FLAG, action="store_true",
                          help=f"show the full traceback of an error (or set {DEBUG_VARIABLE}=1)")

    def parse_known_args(self, args=None, namespace=None):
        args = list(sys.argv[1:] if args is None else args)
        self._check_spellings(args)
        return super().parse_known_args(args, namespace)

    def error(self, message: str):
        self.exit(2, f"{self.prog}: error: {one_line(message)} (see {self.prog} -h)\n")

    def _check_spellings(self, args: Sequence[str]) -> None:
        """Note each old spelling; refuse a token argparse would read as another option with a glued value or as
        an abbreviation (``-device`` where only ``-d`` exists, ``-dev`` for ``-device``)."""
        # argparse keeps every option string (also those of argument groups) in this one mapping.
        known = self._option_string_actions
        for token in args:
            if token == "--":
                break
            name = token.split("=", 1)[0]
            if name in known:
                new = getattr(known[name], "renamed_from", {}).get(name)
                if new:
                    print(f"{self.prog}: note: {name} is spelled {new} now, as in nnU-Net (the old spelling still "
                          f"works)", file=sys.stderr)
                continue
            if len(token) < 3 or token[0] != "-" or not token[1].isalpha():
                continue
            longer = sorted(o for o in known if o.startswith(name))
            if longer:
                self.error(f"unrecognized option {name}: options are spelled out in full; did you mean "
                           f"{' or '.join(longer)}?")
            glued = known.get(token[:2])
            if glued is not None and glued.nargs != 0 and token[2].isalpha():
                self.error(f"unrecognized option {token} (it would be read as {token[:2]} {token[2:]}): write "
                           f"{token[:2]} VALUE with a space, or check the option's name")


def add_option(container, *names: str, old: Sequence[str] = (), **kwargs) -> argparse.Action:
    """Add an option spelled ``names`` (nnU-Net's way) to a parser or an argument group; each of ``old`` still
    works and prints a note naming ``names[0]``. Help, usage and error messages show only ``names``.

    ``dest`` comes from the first long spelling among ``old`` and ``names`` (argparse's rule), so the attribute a
    command reads stays the same when its flag is renamed; pass ``dest`` to choose it.
    """
    action = container.add_argument(*names, *old, **kwargs)
    if old:
        action.option_strings = list(names)  # the parser still maps every old spelling to this action
        action.renamed_from = {spelling: names[0] for spelling in old}
    return action


def command_parser(prog: str, description: str, **kwargs) -> CommandParser:
    """The parser of the console command ``prog``."""
    return CommandParser(prog=prog, description=description, **kwargs)


# ----------------------------------------------------------------------------------------------------------------------
# Running
# ----------------------------------------------------------------------------------------------------------------------


def one_line(message: object) -> str:
    """``message`` on one line: its lines joined (after a colon by a space, else by ``; ``)."""
    lines = [line.strip() for line in str(message).splitlines() if line.strip()]
    text = lines[0] if lines else ""
    for line in lines[1:]:
        text += (" " if text.endswith(":") else "; ") + line
    return text


def debugging(argv: Sequence[str]) -> bool:
    """Whether the user asked for tracebacks: ``--debug`` on the command line or ``nnUNet_resunet_debug`` set to
    something other than 0/false/empty."""
    before_separator = argv[:argv.index("--")] if "--" in argv else argv
    return DEBUG_FLAG in before_separator or os.environ.get(DEBUG_VARIABLE, "").lower() not in ("", "0", "false")


# nnU-Net's complaints about a user's set-up or input (nnunetv2.paths, dataset_name_id_conversion, find_objects),
# raised from deep inside its functions: what each means, said in one line.
NNUNET_COMPLAINTS: tuple[tuple[type[BaseException], re.Pattern, Callable[[re.Match], str]], ...] = (
    (RuntimeError, re.compile(r"(nnUNet_\w+) is not defined\."),
     lambda m: f"{m[1]} is not set: export {m[1]}=/path/to/{m[1]} (nnU-Net's documentation/setting_up_paths.md)"),
    (RuntimeError, re.compile(r"Could not find a dataset with the ID (\d+)\."),
     lambda m: f"dataset {m[1]}: no Dataset{int(m[1]):03d}_* folder in {folder_values()}: convert it first, or "
               f"check the id and nnU-Net's variables"),
    (RuntimeError, re.compile(r"More than one dataset name found for dataset id (\d+)\."),
     lambda m: f"dataset {m[1]}: several Dataset{int(m[1]):03d}_* folders in {folder_values()}: give the full "
               f"name, or remove the extra one"),
    (ValueError, re.compile(r"dataset_name_or_id was a string .* Your input: (.*)", re.S),
     lambda m: f"dataset {m[1]!r}: give a dataset id (e.g. 801) or a full name (e.g. Dataset801_Synapse)"),
    (RuntimeError, re.compile(r"Could not find requested nnunet trainer (\S+) "),
     lambda m: f"nnU-Net finds no trainer {m[1]} (in nnunetv2 or the nnUNet_extTrainer folders): check its "
               f"spelling"),
)


def folder_values() -> str:
    """nnU-Net's three folders as set now, e.g. ``nnUNet_raw=/data/raw, nnUNet_preprocessed=(unset), ...``."""
    return ", ".join(f"{name}={os.environ.get(name, '(unset)')}" for name in NNUNET_FOLDERS)


def nnunet_complaint(error: BaseException) -> str | None:
    """One line for one of nnU-Net's known complaints, else None (then it is a bug)."""
    for error_type, pattern, say in NNUNET_COMPLAINTS:
        match = pattern.match(str(error)) if isinstance(error, error_type) else None
        if match:
            return say(match)
    return None


def run_command(body: Callable[[list[str]], int | None], argv: Sequence[str] | None, prog: str,
                user_errors: tuple[type[BaseException], ...] = (), error_status: int = 1) -> int:
    """Run a console command's ``body(argv)`` and return its exit status (console scripts ``sys.exit`` it).

    Args:
        body: parses ``argv`` (argparse's own errors exit with status 2) and does the work; returns the status.
        argv: the arguments, default ``sys.argv[1:]``.
        prog: the command's name, the prefix of its error line.
        user_errors: the command's own error classes for mistakes in its input, besides :class:`UserError`.
        error_status: the exit status of a user error.

    Returns:
        ``body``'s status (None counts as 0); ``error_status`` after a user error or a known nnU-Net complaint,
        printed as one line (with its traceback under ``--debug``); 1 when stdout was closed early (``| head``).
    """
    argv = list(sys.argv[1:] if argv is None else argv)
    # timm 1.0's hrnet calls torch.jit.interface at import, which recent torch releases deprecate: two lines on
    # every start that a user can do nothing about, and that would bury the one line an error gets.
    warnings.filterwarnings("ignore", message="`torch.jit.interface` is deprecated", category=FutureWarning)
    try:
        try:
            return body(argv) or 0
        finally:  # a closed pipe shows here, where it is caught, rather than at interpreter exit (also after -h)
            sys.stdout.flush()
    except BrokenPipeError:
        # CPython's recipe (signal module docs, "Note on SIGPIPE"): send the rest of the output to devnull.
        try:
            devnull = os.open(os.devnull, os.O_WRONLY)
            os.dup2(devnull, sys.stdout.fileno())
        except (OSError, ValueError):  # stdout without a file descriptor (e.g. captured in-process)
            pass
        return 1
    except (UserError, *user_errors) as error:
        # One line, except an error that lists several problems (a line each, after one naming the input).
        message = str(error) if getattr(error, "one_problem_per_line", False) else one_line(error)
        caught = error
    except (RuntimeError, ValueError) as error:
        message = nnunet_complaint(error)
        if message is None:
            raise
        caught = error
    if debugging(argv):
        traceback.print_exception(caught)
    print(f"{prog}: error: {message}", file=sys.stderr)
    return error_status


# ----------------------------------------------------------------------------------------------------------------------
# Checks at the edge
# ----------------------------------------------------------------------------------------------------------------------


def existing_folder(path: str | os.PathLike, what: str) -> str:
    """``path`` if it is a folder; else a UserError naming ``what`` (e.g. ``"-pred"``) and the problem."""
    path = os.fspath(path)
    if os.path.isdir(path):
        return path
    if os.path.exists(path):
        raise UserError(f"{what} {path} is a file, not a folder: give the folder")
    raise UserError(f"{what} {path} does not exist: give an existing folder")


def existing_file(path: str | os.PathLike, what: str, hint: str = "") -> str:
    """``path`` if it is a file with content; else a UserError naming ``what``, the problem and ``hint``."""
    path = os.fspath(path)
    suffix = f" ({hint})" if hint else ""
    if os.path.isdir(path):
        raise UserError(f"{what} {path} is a folder, not a file{suffix}")
    if not os.path.isfile(path):
        raise UserError(f"{what} {path} does not exist{suffix}")
    if os.path.getsize(path) == 0:
        raise UserError(f"{what} {path} is empty (0 bytes): an interrupted download or copy? Fetch it again"
                        f"{suffix}")
    return path


def output_folder(path: str | os.PathLike, what: str) -> str:
    """``path`` if it is a folder or can be made one (checked before the work, made by the caller after it); a
    UserError naming ``what`` when a file is in the way."""
    path = os.fspath(path)
    existing = os.path.abspath(path)
    while not os.path.exists(existing):
        existing = os.path.dirname(existing)
    if not os.path.isdir(existing):
        raise UserError(f"{what} {path}: {existing} is a file, not a folder; give another output folder")
    return path


def nnunet_folder(variable: str, must_exist: bool = True) -> str:
    """The folder nnU-Net's environment variable ``variable`` (``nnUNet_raw`` ...) names; a UserError when it is
    unset or a file, or missing while ``must_exist`` (nnU-Net creates nnUNet_preprocessed and nnUNet_results)."""
    import nnunetv2.paths

    value = getattr(nnunetv2.paths, variable)  # nnU-Net's own reading of the variable (its _EnvPath, or a str)
    value = value.get() if hasattr(value, "get") else value
    if not value:
        raise UserError(f"{variable} is not set: export {variable}=/path/to/{variable} (nnU-Net's "
                        f"documentation/setting_up_paths.md)")
    return existing_folder(value, variable) if must_exist else output_folder(value, variable)


def dataset_name(dataset: str | int) -> str:
    """nnU-Net's ``DatasetXXX_Name`` for an id or a name, as its commands resolve it; a UserError when the id has
    no folder (or several) in nnU-Net's folders, or ``dataset`` is neither an id nor a name."""
    from nnunetv2.utilities.dataset_name_id_conversion import maybe_convert_to_dataset_name

    try:
        return maybe_convert_to_dataset_name(str(dataset))
    except (RuntimeError, ValueError) as error:
        message = nnunet_complaint(error)
        if message is None:
            raise
        raise UserError(message) from error


def trainer_class(name: str) -> type:
    """The trainer class nnU-Net's own lookup finds for ``name`` (as ``nnUNetv2_train -tr`` will), without its
    search messages; a UserError when there is none."""
    import contextlib
    import io

    from nnunetv2.utilities.find_objects import recursive_find_trainer_class_by_name

    with contextlib.redirect_stdout(io.StringIO()):
        try:
            return recursive_find_trainer_class_by_name(name)
        except (RuntimeError, AssertionError) as error:
            raise UserError(nnunet_complaint(error) or f"-tr {name}: {one_line(error)}") from error


def torch_device(spec: str, option: str = "-device"):
    """``torch.device(spec)``; a UserError for a malformed spec or a CUDA device this machine does not have."""
    import torch

    try:
        device = torch.device(spec)
    except RuntimeError as error:
        raise UserError(f"{option} {spec}: not a device torch knows ({one_line(error)}); use cuda, cuda:N or "
                        f"cpu") from error
    if device.type == "cuda" and not torch.cuda.is_available():
        raise UserError(f"{option} {spec}: no CUDA GPU is visible here; use {option} cpu")
    if device.type == "cuda" and device.index is not None and device.index >= torch.cuda.device_count():
        raise UserError(f"{option} {spec}: this machine has {torch.cuda.device_count()} CUDA device(s); use "
                        f"cuda:0 to cuda:{torch.cuda.device_count() - 1}")
    return device
