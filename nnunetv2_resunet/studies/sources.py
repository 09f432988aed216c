"""Where a study's datasets come from: our three converters as data (command, default name, what ``-i`` points at,
the options a study may set), and the command that makes a dataset the way its study file says
(``[datasets.convert]``, read in :mod:`.study_file`).

``status`` and ``plan`` print that command for every dataset not yet in ``$nnUNet_raw``, and the checks
(:mod:`.checks`) compare a converted dataset's ``dataset.json`` with it (ACDC's converter records its split there), so
a study never silently trains on another split than its file names. The flags here are the converters' own
(``dataset_conversion/``); a test parses each shipped study's commands with the converters' real parsers.
"""

from __future__ import annotations

import shlex
from dataclasses import dataclass


@dataclass(frozen=True)
class Converter:
    """One of our converters: its command, its default dataset name, what ``-i`` points at, and the keys of
    ``[datasets.convert]`` it takes (besides ``converter``, ``name`` and ``source``)."""

    command: str
    default_name: str
    source: str
    options: tuple[str, ...]


CONVERTERS: dict[str, Converter] = {
    "synapse": Converter(
        "nnUNetv2_resunet_convert_synapse", "Synapse",
        "the raw BTCV release's RawData/ folder (each case keeps its real spacing) or TransUNet's "
        "train_npz/test_vol_h5 release (which stores no spacing: set spacing)", ("spacing",)),
    "acdc": Converter(
        "nnUNetv2_resunet_convert_acdc", "ACDC",
        "ACDC's challenge release (database/, real spacing) or the SSL4MIS/WSL4MIS h5 volumes (data/ACDC)",
        ("split", "spacing")),
    "avt": Converter(
        "nnUNetv2_resunet_convert_avt", "AVT",
        "the figshare release (KiTS/, Rider/, Dongyang/) or ParaTransCNN's 2D layout", ("spacing", "hu_shift")),
}
# The choices of the options that have a fixed set, as the converters' argparse ``choices`` spell them.
CHOICES: dict[str, tuple[str, ...]] = {"split": ("nnunet", "transunet"), "hu_shift": ("auto", "none")}
FLAGS: dict[str, str] = {"split": "-split", "spacing": "-spacing", "hu_shift": "-hu_shift"}
SOURCE_PLACEHOLDER = "SOURCE"


@dataclass(frozen=True)
class DatasetSource:
    """How a dataset of a study is made: ``[datasets.convert]`` of its study file."""

    converter: str  # a key of CONVERTERS
    name: str  # the dataset's name, DatasetXXX_<name>
    source: str = SOURCE_PLACEHOLDER  # what -i gets in the printed command
    split: str | None = None  # ACDC: nnunet (the converter's default) or transunet
    spacing: tuple[float, float, float] | None = None  # for releases that store none
    hu_shift: str | None = None  # AVT's figshare release: auto (default) or none

    def command(self, dataset_id: int) -> list[str]:
        """The converter's command line that writes this dataset as ``DatasetXXX_<name>``."""
        command = [CONVERTERS[self.converter].command, "-i", self.source, "-d", str(dataset_id), "-n", self.name]
        if self.split is not None:
            command += [FLAGS["split"], self.split]
        if self.spacing is not None:
            command += [FLAGS["spacing"], *(f"{s:g}" for s in self.spacing)]
        if self.hu_shift is not None:
            command += [FLAGS["hu_shift"], self.hu_shift]
        return command

    def hint(self, dataset_id: int) -> str:
        """The command as one shell line, and what its ``-i`` points at when the study file does not say."""
        line = shlex.join(self.command(dataset_id))
        if self.source == SOURCE_PLACEHOLDER:
            line += f"   ({SOURCE_PLACEHOLDER}: {CONVERTERS[self.converter].source})"
        return line

    @property
    def writes_test_set(self) -> bool:
        """Whether the converter always writes imagesTs/labelsTs for this source (ACDC's nnU-Net split only does
        for the challenge release)."""
        return self.converter != "acdc" or self.split == "transunet"
