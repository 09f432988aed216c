"""Published figures that the report shows beside our own results (data, not logic).

Each entry is the mean over classes as printed in its source: Dice in percent and HD95 where the source gives one.
They were obtained by the authors under the protocol of TransUNet (the ``transunet`` convention of
:mod:`nnunetv2_resunet.evaluation.conventions`), not by this code, and the report labels them that way.

The three baselines that are also trainers here (``TransUNetTrainer``, ``SwinUnetTrainer``, ``EMCADTrainer``) carry
their papers' own figures: TransUNet's Synapse table (mean DSC and "HD", which its code computes as medpy's HD95)
and ACDC table; Swin-Unet's Synapse table (DSC, HD95) and ACDC table; EMCAD's Synapse table (PVT-EMCAD-B2, DSC and
HD95, the mean of five runs) and ACDC table. Values checked for issue 10 against independent copies of those tables.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

#: Full citation for each method name used in :data:`PUBLISHED`.
SOURCES: dict[str, str] = {
    "ResUnet": "Master's thesis (ResUnet)",
    "PVT-EMCAD-B2": "Rahman et al., EMCAD, CVPR 2024 (arXiv:2405.06880), Synapse and ACDC tables",
    "DAE-Former": "Azad et al., 2023",
    "MISSFormer": "Huang et al., 2022",
    "Swin-Unet": "Cao et al., Swin-Unet, ECCV Workshops 2022 (arXiv:2105.05537), Synapse and ACDC tables",
    "TransUNet": "Chen et al., TransUNet, arXiv:2102.04306 (2021), Synapse and ACDC tables",
}

#: Dataset keys understood by ``-published`` and their display names.
DATASET_NAMES: dict[str, str] = {"synapse": "Synapse (BTCV multi-organ)", "acdc": "ACDC", "avt": "AVT"}


@dataclass(frozen=True)
class PublishedResult:
    """One published mean result.

    Attributes:
        dataset: key in :data:`DATASET_NAMES`.
        method: key in :data:`SOURCES`.
        dice: mean Dice in percent.
        hd95: mean HD95 as published, or ``None`` where the source reports none.
    """

    dataset: str
    method: str
    dice: float
    hd95: float | None

    @property
    def source(self) -> str:
        return SOURCES[self.method]


PUBLISHED: tuple[PublishedResult, ...] = (
    PublishedResult("synapse", "ResUnet", 84.42, 13.03),
    PublishedResult("synapse", "PVT-EMCAD-B2", 83.63, 15.68),
    PublishedResult("synapse", "DAE-Former", 82.43, 17.46),
    PublishedResult("synapse", "MISSFormer", 81.96, 18.20),
    PublishedResult("synapse", "Swin-Unet", 79.13, 21.55),
    PublishedResult("synapse", "TransUNet", 77.48, 31.69),
    PublishedResult("acdc", "ResUnet", 92.17, None),
    PublishedResult("acdc", "PVT-EMCAD-B2", 92.12, None),
    PublishedResult("acdc", "Swin-Unet", 90.00, None),
    PublishedResult("acdc", "TransUNet", 89.71, None),
    PublishedResult("avt", "ResUnet", 87.11, 4.44),
    PublishedResult("avt", "DAE-Former", 85.02, None),
)

# Words in a dataset name that identify a published benchmark; matched against whole words of the name.
_NAME_KEYWORDS: dict[str, str] = {"synapse": "synapse", "btcv": "synapse", "acdc": "acdc", "avt": "avt"}


def published_for(dataset: str) -> list[PublishedResult]:
    """The published results for one dataset key, in table order.

    Raises:
        ValueError: for a key not in :data:`DATASET_NAMES`.
    """
    if dataset not in DATASET_NAMES:
        raise ValueError(f"no published figures for {dataset!r}; known: {sorted(DATASET_NAMES)}")
    return [p for p in PUBLISHED if p.dataset == dataset]


def detect_published_dataset(dataset_name: str | None) -> str | None:
    """Guess the published benchmark from a dataset name such as ``Dataset002_Synapse`` or ``Dataset027_ACDC``.

    Returns:
        A key of :data:`DATASET_NAMES`, or ``None`` when no word of the name identifies one.
    """
    if not dataset_name:
        return None
    words = re.split(r"[^a-z0-9]+|(?<=[a-z])(?=[0-9])|(?<=[0-9])(?=[a-z])", dataset_name.lower())
    for word in words:
        if word in _NAME_KEYWORDS:
            return _NAME_KEYWORDS[word]
    return None
