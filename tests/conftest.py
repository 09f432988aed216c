"""Fixtures and options shared by every test folder; the helpers behind them are in ``nnunet_workspace.py``."""

from __future__ import annotations

import os
from pathlib import Path

# The two pytest workers and the processes they start (nnU-Net's CLI, its workers, the DDP ranks) share CI's 2 cores.
# OpenMP threads busy-wait between parallel regions by default, burning a core another process needs: measured on a
# short nnUNetv2_train beside one busy process, 18 % less CPU and 14 % less time with passive waiting. Set before any
# test imports torch (OpenMP reads it once), so the workers' torch and every subprocess have it; a value set outside
# the suite is kept.
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

import pytest
from nnunet_workspace import SYNTHETIC_ID, NnUNetWorkspace, write_synthetic_dataset

# Fixtures that run nnU-Net's CLI (planning, training, a whole study): a test that asks for one is an integration test.
INTEGRATION_FIXTURES = {"nnunet_workspace", "study_workspace", "local_study", "trained_models"}
INTEGRATION_FOLDER = Path(__file__).parent / "integration"
TESTS = Path(__file__).parent
# Session fixtures whose tests share one pytest-xdist worker (each worker would otherwise build its own copy): the
# trained models, the study workspace with its local study, the DDP ranks. Every other test is grouped by its file.
SHARED_FIXTURE_GROUPS = ("study_workspace", "trained_models", "ddp_ranks")
# The longest groups first, so that two workers finish together (a group's tests run in order on one worker).
LONGEST_FIRST = ("study_workspace", "trained_models", "integration/test_transformer_training.py", "ddp_ranks",
                 "integration/test_demo.py", "integration/test_family_training.py", "benchmarking/test_check.py",
                 "training/test_fp16_training.py", "dataset_conversion/test_conversion_safety.py")


def pytest_addoption(parser):
    parser.addoption("--update-signatures", action="store_true",
                     help="rewrite tests/architectures/state_dict_signatures.json from the code (a deliberate act: "
                          "review the diff)")


@pytest.hookimpl(tryfirst=True)  # before pytest-xdist's, which reads the xdist_group marks set here
def pytest_collection_modifyitems(config, items):
    """Mark as ``integration`` every test in tests/integration/ and every test that uses a fixture running nnU-Net's
    CLI (directly or through another fixture), so ``-m "not integration"`` leaves them all out; other tests that run
    pipelines of subprocesses carry the mark themselves.

    Each test also gets its ``xdist_group`` (README's ``python -m pytest`` runs on two workers, ``--dist loadgroup``
    in pyproject.toml): the shared fixture it needs, else its file; the longest groups are put first."""
    for item in items:
        if INTEGRATION_FOLDER in Path(item.fspath).parents or INTEGRATION_FIXTURES & set(item.fixturenames):
            item.add_marker(pytest.mark.integration)
    groups = {}
    for item in items:
        shared = [f for f in SHARED_FIXTURE_GROUPS if f in item.fixturenames]
        groups[item.nodeid] = shared[0] if shared else Path(item.fspath).relative_to(TESTS).as_posix()
        item.add_marker(pytest.mark.xdist_group(groups[item.nodeid]))
    rank = {group: i for i, group in enumerate(LONGEST_FIRST)}
    order = {item.nodeid: i for i, item in enumerate(items)}
    first_seen = {}
    for item in items:
        first_seen.setdefault(groups[item.nodeid], order[item.nodeid])
    items.sort(key=lambda item: (rank.get(groups[item.nodeid], len(rank)), first_seen[groups[item.nodeid]],
                                 order[item.nodeid]))


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
