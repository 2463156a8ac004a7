from __future__ import annotations

import numpy as np
import pytest

from surveyproc.models import TargetInfo
from surveyproc.models.readouts import (
    activation_frequency,
    agn_classifier,
    dense_activations,
    head_equations,
)


def test_frequency_and_dense_matrix_match_a_direct_count():
    rng = np.random.default_rng(0)
    idx = np.stack([rng.choice(32, 3, replace=False) for _ in range(500)])
    val = rng.random((500, 3)) + 0.1
    val[:10, 0] = 0.0  # a kept but zero activation is not "active"
    dense = dense_activations(idx, val, 32)
    np.testing.assert_allclose(activation_frequency(idx, val, 32), (dense > 0).mean(axis=0))
    assert dense.shape == (500, 32) and ((dense > 0).sum(axis=1) <= 3).all()


def test_head_equations_are_in_target_units():
    weight = np.array([[0.5, -1.0, 0.0]])
    equations = head_equations(weight, np.array([0.2]), [TargetInfo("z", "dex", 8.7, 0.1)])
    eq = equations[0]
    assert eq.intercept == pytest.approx(8.7 + 0.2 * 0.1)
    np.testing.assert_allclose(eq.weights, [0.05, -0.1, 0.0])
    assert eq.terms(np.array([0, 1])) == [(1, pytest.approx(-0.1)), (0, pytest.approx(0.05))]


def test_agn_classifier_finds_a_feature_that_separates_classes():
    rng = np.random.default_rng(1)
    n = 2000
    is_agn = rng.random(n) < 0.3
    idx = np.stack([rng.choice(np.arange(1, 16), 2, replace=False) for _ in range(n)])
    idx[:, 0] = 0  # feature 0 fires on everyone: most frequent
    val = rng.random((n, 2))
    val[:, 0] = np.where(is_agn, 2.0, 0.5) + rng.normal(0, 0.1, n)
    readout = agn_classifier(idx, val, is_agn, 16, top_m=4)
    assert readout.features[0] == 0
    assert readout.accuracy > 0.95 > readout.baseline_accuracy
