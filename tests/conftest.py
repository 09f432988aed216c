"""Fixtures and options shared by every test folder; the helpers behind them are in ``nnunet_workspace.py``."""

from __future__ import annotations

import pytest
from nnunet_workspace import SYNTHETIC_ID, NnUNetWorkspace, write_synthetic_dataset


def pytest_addoption(parser):
    parser.addoption("--update-signatures", action="store_true",
                     help="rewrite tests/architectures/state_dict_signatures.json from the code (a deliberate act: "
                          "review the diff)")


@pytest.fixture(scope="session")
def nnunet_workspace(tmp_path_factory) -> NnUNetWorkspace:
    """A workspace with Dataset901_Synthetic planned and preprocessed for 2d by nnU-Net's own CLI."""
    workspace = NnUNetWorkspace(tmp_path_factory.mktemp("nnunet"))
    write_synthetic_dataset(workspace.raw)
    workspace.run("nnUNetv2_plan_and_preprocess", "-d", SYNTHETIC_ID, "-c", "2d", "-np", "1", "-npfp", "1",
                  "--verify_dataset_integrity")
    return workspace


@pytest.fixture(scope="session")
def published_file(tmp_path_factory):
    """``published_file(kind)``: the synthetic file of a released format (``published_files.py``), written once."""
    from published_files import write_published_file

    folder = tmp_path_factory.mktemp("published")
    written = {}

    def get(kind: str):
        if kind not in written:
            written[kind] = write_published_file(kind, folder)
        return written[kind]

    return get
