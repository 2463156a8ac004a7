"""Local conditional-independence tests: the per-neighbourhood arithmetic against direct
NumPy, and the verdicts on a designed table whose dependences are known."""

from __future__ import annotations

import numpy as np
import pytest

from surveyproc.stats.local_tests import (
    local_correlation,
    neighbourhoods,
    permutation_pvalues,
    predictive_efficiency,
    quadratic_residual,
    run_local_tests,
)
from surveyproc.testing import local_dependence_table


def test_row_statistics_match_numpy():
    rng = np.random.default_rng(1)
    x = rng.normal(size=(5, 30))
    y = 0.3 * x ** 2 - x + rng.normal(size=(5, 30))
    for row in range(5):
        fit = np.polyval(np.polyfit(x[row], y[row], 2), x[row])
        np.testing.assert_allclose(quadratic_residual(y, x)[row], y[row] - fit, atol=1e-9)
        assert local_correlation(y, x)[row] == pytest.approx(np.corrcoef(y[row], x[row])[0, 1])
        explained = 1 - np.var(y[row] - fit) / np.var(y[row])
        assert predictive_efficiency(y, x)[row] == pytest.approx(explained)


def test_neighbours_are_the_nearest_by_brute_force():
    rng = np.random.default_rng(2)
    latent = rng.normal(size=(300, 3)) * [1.0, 5.0, 0.2]
    found = neighbourhoods(latent, np.array([0, 7, 42]), 10)
    scaled = (latent - latent.mean(axis=0)) / latent.std(axis=0)
    for row, query in enumerate((0, 7, 42)):
        distance = np.linalg.norm(scaled - scaled[query], axis=1)
        distance[query] = np.inf
        assert set(found[row]) == set(np.argsort(distance)[:10])


def test_permutation_pvalue_counts_shuffles_at_least_as_correlated():
    y = np.array([[1.0, 2.0, 3.0, 4.0]])
    x = np.array([[1.0, 2.0, 3.0, 4.0]])
    # only the identity (and its mirror for |r|) reaches |r| = 1: 2 of 24 orderings
    p, _ = permutation_pvalues(y, x, 4000, np.random.default_rng(0))
    assert p[0] == pytest.approx(2 / 24, abs=0.015)


@pytest.mark.parametrize("seed", [0, 1])
def test_designed_dependences_are_found_and_only_they(seed):
    latent, values = local_dependence_table(6000, seed)
    result = run_local_tests(latent, values, "y", ["q_direct", "q_confounded", "q_none"],
                             condition="c", k=100, neighbourhood_count=500,
                             permutations=100, seed=seed)
    assert result["galaxies"] == 6000 - 120
    tests = {t["query"]: t for t in result["tests"]}
    assert tests["q_direct"]["dependent"] and tests["q_direct"]["conditional"]["dependent"]
    assert tests["q_confounded"]["dependent"]  # through c ...
    assert not tests["q_confounded"]["conditional"]["dependent"]  # ... and only through c
    assert not tests["q_none"]["dependent"]
    assert not tests["q_none"]["conditional"]["dependent"]
    assert tests["q_direct"]["mean_correlation"] > 0.5
    assert abs(tests["q_none"]["mean_correlation"]) < 0.05
    assert tests["q_direct"]["mean_predictive_efficiency"] > 0.3


def test_too_few_known_rows_is_one_clear_error():
    latent, values = local_dependence_table(100)
    with pytest.raises(ValueError, match="need more than k=100"):
        run_local_tests(latent, values, "y", ["q_none"], k=100)


def test_a_sparse_model_latent_is_its_activations(small):
    """A sparse model's latent is its activations over all features, read from the catalog
    with the store's labels for the same objects."""
    from surveyproc.errors import InvalidParameterError
    from surveyproc.stats.local_tests import latent_model, latent_sample

    store, _, _, _, aggregates = small
    model = latent_model(aggregates.spec.models, None)
    assert model.name == "sparse"
    latent, values = latent_sample(aggregates.parts.urls, None, store, model,
                                   ["metallicity", "redshift"], 1000, aggregates.rows)
    assert latent.shape[1] == model.n_features and 700 < len(latent) < 1300
    assert ((latent > 0).sum(axis=1) == model.k).all()
    known = np.isfinite(values["metallicity"])
    np.testing.assert_allclose(latent[known, 0],
                               np.clip((values["metallicity"][known] - 8.2) * 4, 0.01, None),
                               rtol=1e-4)
    # the synthetic catalog's redshift does not depend on its metallicity
    result = run_local_tests(latent, values, "metallicity", ["redshift"], k=30,
                             neighbourhood_count=200, permutations=50)
    assert not result["tests"][0]["dependent"]
    with pytest.raises(InvalidParameterError, match="no latent"):
        latent_model(aggregates.spec.models, "zpoint")
    with pytest.raises(InvalidParameterError, match="not a label of the store"):
        latent_sample(aggregates.parts.urls, None, store, model, ["log_mstar"], 1000,
                      aggregates.rows)
