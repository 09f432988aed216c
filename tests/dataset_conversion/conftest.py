"""Fixtures of the converter tests (their helpers are in ``conversion_helpers.py``)."""

from __future__ import annotations

from pathlib import Path

import pytest
from conversion_helpers import NnunetDirs, make_nnunet_dirs


@pytest.fixture
def conversion_nnunet_dirs(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> NnunetDirs:
    """Empty nnU-Net folders under ``tmp_path``, exported as nnU-Net's environment variables."""
    return make_nnunet_dirs(tmp_path, monkeypatch)
