"""The command line every converter shares: arguments, spacing, and one clear line per error."""

from __future__ import annotations

import argparse
import signal
import sys
from collections.abc import Callable, Sequence
from pathlib import Path

import numpy as np
from nnunetv2.configuration import default_num_processes

from nnunetv2_resunet.command_line import add_option, command_parser, run_command

from .common import ConversionError, Geometry
from .transaction import (
    Interrupted,
    interrupts_raise,
)


def build_parser(prog: str, description: str, default_id: int, default_name: str) -> argparse.ArgumentParser:
    """Argument parser with the flags every converter has: -i, -d, -n, -np, --overwrite."""
    parser = command_parser(prog, description)
    add_option(parser, "-i", old=["--input"], required=True, type=Path, help="folder of the downloaded release")
    add_option(parser, "-d", old=["--dataset_id"], type=int, default=default_id,
               help=f"nnU-Net dataset ID (default: {default_id})")
    add_option(parser, "-n", old=["--name"], default=default_name,
               help=f"dataset name, DatasetXXX_NAME (default: {default_name})")
    add_option(parser, "-np", old=["--num_processes"], type=int, default=default_num_processes,
               help=f"worker processes, one case each (default: {default_num_processes}, nnU-Net's default)")
    parser.add_argument("--overwrite", action="store_true", help="replace an existing dataset of the same ID and name")
    return parser


def add_spacing_argument(parser: argparse.ArgumentParser, what: str) -> None:
    """Add ``-spacing X Y Z`` for releases that carry no voxel spacing."""
    add_option(
        parser,
        "-spacing",
        old=["--spacing"],
        type=float,
        nargs=3,
        metavar=("X", "Y", "Z"),
        default=None,
        help=f"voxel spacing in mm (x, y in-plane, z between slices) for {what}, which store none (default: 1 1 1)",
    )


def spacing_geometry(spacing: Sequence[float] | None) -> Geometry:
    """Geometry for a release without spacing: the user's spacing or 1x1x1, origin 0, identity direction."""
    if spacing is None:
        return Geometry()
    if len(spacing) != 3 or any(not np.isfinite(s) or s <= 0 for s in spacing):
        raise ConversionError(f"-spacing needs three positive numbers (x y z), got {list(spacing)}")
    return Geometry(spacing=(float(spacing[0]), float(spacing[1]), float(spacing[2])))


def run_cli(parser: argparse.ArgumentParser, argv: Sequence[str] | None,
            convert: Callable[[argparse.Namespace], Path]) -> int:
    """Parse ``argv`` and run ``convert(args)`` through :func:`~nnunetv2_resunet.command_line.run_command`: a
    ConversionError is one line, an interrupt says what became of the dataset.

    Returns:
        The exit code: 0, 1 on a ConversionError, 128 + the signal number on SIGINT/SIGTERM.
    """
    def body(arguments: list[str]) -> int:
        args = parser.parse_args(arguments)
        try:
            with interrupts_raise():
                target = convert(args)
        except KeyboardInterrupt as e:
            signum = e.signum if isinstance(e, Interrupted) else signal.SIGINT
            if isinstance(e, Interrupted) and e.completed:
                print(f"interrupted by {signal.Signals(signum).name} after the dataset was put in place; it is "
                      "complete", file=sys.stderr)
            else:
                print(f"interrupted by {signal.Signals(signum).name}: nothing was changed in nnUNet_raw or "
                      "nnUNet_preprocessed", file=sys.stderr)
            return 128 + signum
        print(f"Done: {target}")
        return 0

    return run_command(body, argv, parser.prog, user_errors=(ConversionError,))
