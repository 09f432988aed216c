"""CT intensity scales: telling Hounsfield units from images stored as HU + 1024 by their air value, and undoing
the shift. The AVT converter uses it per case (``-hu_shift``); see dataset_conversion/README.md for what is known
about the shift in AVT's KiTS and Rider collections."""

from __future__ import annotations

from typing import Any

import numpy as np

HU_SHIFT_MODES = ("auto", "none")
#: Stored value = HU + 1024 in the shifted scans, so air (about -1000 HU) is stored as about 0.
HU_OFFSET = 1024
AIR_HU_MAX = -800.0
AIR_SHIFTED_RANGE = (-60.0, 120.0)
HU_SHIFT_RULE = (
    "per case, the air/background level (lowest 20-unit intensity bin holding at least 1% of the voxels, after "
    f"dropping a constant fill outside the field of view): <= {AIR_HU_MAX:g} is Hounsfield units, kept as stored; "
    f"{AIR_SHIFTED_RANGE[0]:g}..{AIR_SHIFTED_RANGE[1]:g} is HU + {HU_OFFSET}, so {HU_OFFSET} is subtracted; anything "
    "else is refused"
)
HU_SHIFT_SOURCE = (
    "AortaExplorer's notes on AVT (github.com/RasmusRPaulsen/AortaExplorer, AO-AVT.MD) report that the KiTS and Rider "
    "scans 'seem to be shifted with an offset of 1024'; the dataset's own description does not say so"
)


def air_value(image: np.ndarray) -> float:
    """The air/background level of a CT: the lowest 20-unit intensity bin in -2000..2000 holding >= 1% of the voxels.

    A constant that fills >= 1% of the voxels at the very bottom (the scanner's fill outside the field of view) is
    not air and is dropped first. NaN when no bin qualifies.
    """
    values = image.ravel()
    if values.size > 2_000_000:
        values = values[:: values.size // 2_000_000]
    values = values.astype(np.float64)
    lowest = values.min()
    fill = values == lowest
    if np.count_nonzero(fill) >= 0.01 * values.size and not fill.all():
        values = values[~fill]
    counts, edges = np.histogram(values, bins=np.arange(-2000.0, 2000.0 + 20.0, 20.0))
    enough = np.flatnonzero(counts >= max(2.0, 0.01 * values.size))
    return float((edges[enough[0]] + edges[enough[0] + 1]) / 2) if enough.size else float("nan")


def is_hounsfield(air: float) -> bool:
    return air <= AIR_HU_MAX


def is_shifted(air: float) -> bool:
    return AIR_SHIFTED_RANGE[0] <= air <= AIR_SHIFTED_RANGE[1]


def subtract_offset(image: np.ndarray) -> np.ndarray:
    """``image - 1024`` in the image's own dtype where the values fit (int16 for unsigned images), else wider."""
    if not np.issubdtype(image.dtype, np.integer):
        return (image - HU_OFFSET).astype(image.dtype)
    shifted = image.astype(np.int64) - HU_OFFSET
    for dtype in (image.dtype, np.int16, np.int32):
        info = np.iinfo(dtype)
        if info.min <= shifted.min() and shifted.max() <= info.max:
            return shifted.astype(dtype)
    return shifted


def mixed_scales(notes: dict[str, dict[str, Any]]) -> list[str]:
    """With ``-hu_shift none``: a warning when some cases look like HU and others like HU + 1024."""
    intensity = notes.get("case_intensity", {})
    shifted = sorted(c for c, n in intensity.items() if n["subtracted"] == 0 and is_shifted(n["air_value"]))
    hounsfield = sorted(c for c, n in intensity.items() if is_hounsfield(n["air_value"]))
    if shifted and hounsfield:
        return [
            f"the images hold two intensity scales: {shifted} have air at about 0 (HU + {HU_OFFSET}), "
            f"{len(hounsfield)} others at about -1000 (HU); nnU-Net's CT normalisation uses one global scale for all. "
            "-hu_shift auto would subtract 1024 from the first"
        ]
    return []
