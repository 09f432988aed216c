"""The converters' splits are the papers' own: every case list in the converters equals the list file the paper
published with its code (copies in tests/data/published_splits, with their provenance). The round-trip tests of each
converter build their replica releases from the same files and check the written dataset and its nnU-Net folds."""

from __future__ import annotations

from conversion_helpers import (
    ACDC_TEST_PATIENTS,
    ACDC_TRAINING_PATIENTS,
    ACDC_VALIDATION_PATIENTS,
    AVT_TEST_CASES,
    AVT_TRAINING_CASES,
    SYNAPSE_TEST_CASES,
    SYNAPSE_TRAINING_CASES,
)
from nnunetv2_resunet.dataset_conversion import convert_acdc, convert_avt, convert_synapse


def test_synapse_lists_are_transunets():
    assert len(SYNAPSE_TEST_CASES) == 12 and len(SYNAPSE_TRAINING_CASES) == 18
    assert sorted(convert_synapse.TEST_CASES) == SYNAPSE_TEST_CASES
    assert sorted(convert_synapse.TRAINING_CASES) == SYNAPSE_TRAINING_CASES


def test_acdc_transunet_protocol_is_the_published_lists():
    assert (len(ACDC_TEST_PATIENTS), len(ACDC_VALIDATION_PATIENTS), len(ACDC_TRAINING_PATIENTS)) == (20, 10, 70)
    assert sorted(convert_acdc.TRANSUNET_TEST_PATIENTS) == ACDC_TEST_PATIENTS
    assert sorted(convert_acdc.TRANSUNET_VALIDATION_PATIENTS) == ACDC_VALIDATION_PATIENTS
    # The protocol's 100 patients are ACDC's training patients; the other 70 train.
    protocol = ACDC_TEST_PATIENTS + ACDC_VALIDATION_PATIENTS + ACDC_TRAINING_PATIENTS
    assert sorted(protocol) == sorted(convert_acdc.TRAINING_PATIENTS)


def test_avt_lists_are_paratranscnns():
    assert len(AVT_TEST_CASES) == 18 and len(AVT_TRAINING_CASES) == 38
    assert list(convert_avt.TEST_CASES) == AVT_TEST_CASES  # release names, in the list's order
    assert sorted(convert_avt.TRAINING_CASES) == AVT_TRAINING_CASES
    assert sorted(convert_avt.ALL_CASES) == sorted(AVT_TEST_CASES + AVT_TRAINING_CASES)
