"""Fixtures and options shared by every test folder; the helpers behind them are in ``nnunet_workspace.py``."""

from __future__ import annotations

from pathlib import Path

import pytest
from nnunet_workspace import SYNTHETIC_ID, NnUNetWorkspace, write_synthetic_dataset

# Fixtures that run nnU-Net's CLI (planning, training, a whole study): a test that asks for one is an integration test.
INTEGRATION_FIXTURES = {"nnunet_workspace", "study_workspace", "local_study", "trained_models"}
INTEGRATION_FOLDER = Path(__file__).parent / "integration"


def pytest_addoption(parser):
    parser.addoption("--update-signatures", action="store_true",
                     help="rewrite tests/architectures/state_dict_signatures.json from the code (a deliberate act: "
                          "review the diff)")


def pytest_collection_modifyitems(config, items):
    """Mark as ``integration`` every test in tests/integration/ and every test that uses a fixture running nnU-Net's
    CLI (directly or through another fixture), so ``-m "not integration"`` leaves them all out; other tests that run
    pipelines of subprocesses carry the mark themselves."""
    for item in items:
        if INTEGRATION_FOLDER in Path(item.fspath).parents or INTEGRATION_FIXTURES & set(item.fixturenames):
            item.add_marker(pytest.mark.integration)


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


@pytest.fixture(scope="session")
def trained_models(nnunet_workspace) -> dict:
    """ResUnet v1.0 and nnU-Net's default (short-run subclasses of ResUnetTrainer and nnUNetTrainer) trained on fold
    0 by nnUNetv2_train, two independent runs at once; each test that needs a trained model asks for this, so which
    tests train does not depend on the order they run in. Values: the fold folder, or the exception of a failed run
    (``nnunet_workspace.result_of``)."""
    return nnunet_workspace.train_concurrently(["ResUnetTrainer", "nnUNetTrainer"])
