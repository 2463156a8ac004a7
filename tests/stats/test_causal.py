"""Causal discovery: the synthetic survey's graph over visible variables, and PC with
bootstrap frequencies on Dask recovering it from the survey's catalog-level quantities."""

from __future__ import annotations

import numpy as np
import pytest

from surveyproc.store.synth import graph as synth_graph


def test_latent_forks_and_chains_join_and_colliders_do_not(monkeypatch):
    monkeypatch.setattr(synth_graph, "EDGES", (("L", "a"), ("L", "b"), ("c", "M"),
                                               ("M", "d"), ("a", "K"), ("d", "K"),
                                               ("a", "e")))
    monkeypatch.setattr(synth_graph, "LATENT", ("L", "M", "K"))
    found = synth_graph.visible_adjacencies(["a", "b", "c", "d", "e"])
    assert found == {frozenset("ab"), frozenset("cd"), frozenset("ae")}


def test_pc_recovers_the_survey_graph_with_bootstrap_on_dask(dask_session):
    from surveyproc.stats.causal import bootstrap_graphs, edge_scores, photometry_variables
    from surveyproc.store.synth import SynthConfig, generate

    n = 4000
    batch = generate(SynthConfig(n=n, size=16, seed=7, bands=("g", "r", "z")), 0, n,
                     images=False)
    names = ["redshift", "log_mstar", "log_sfr", "bulge_fraction", "log_mbh", "dust_av",
             "cos_inclination", "half_light_radius"]
    data = {k: np.asarray(batch.labels[k], dtype=np.float64) for k in names}
    data.update(photometry_variables(batch.photometry, ("g", "r", "z"), {}, "r"))
    matrix = np.column_stack(list(data.values()))
    graph = bootstrap_graphs(matrix, list(data), resamples=6, seed=1)
    scores = edge_scores(graph.adjacent, synth_graph.visible_adjacencies(list(data)))
    # measured 0.9-1.0 precision, about 0.4 recall (latent causes make the true graph dense)
    assert scores["precision"] >= 0.8 and scores["recall"] >= 0.3, scores
    assert frozenset(("bulge_fraction", "log_mbh")) in graph.adjacent
    assert all(0 < f <= 1 for f in graph.frequency.values())
    strong = [p for p in graph.adjacent if graph.frequency.get(p, 0) >= 0.5]
    assert len(strong) >= 0.8 * len(graph.adjacent)  # the graph is stable under resampling
    assert graph.to_dict()["variables"] == list(data)


def test_edge_scores_count_hits():
    from surveyproc.stats.causal import edge_scores

    truth = {frozenset("ab"), frozenset("bc")}
    assert edge_scores({frozenset("ab"), frozenset("ac")}, truth)["precision"] == \
        pytest.approx(0.5)


def test_sparse_activations_join_the_causal_variables(small):
    """The synthetic catalog's feature 0 is always active and grows linearly with
    metallicity: read from the catalog beside the store's labels, it lines up object by
    object, and as an exact linear function of a variable before it PC leaves it out with a
    reason instead of failing on a singular correlation matrix."""
    from surveyproc.errors import InvalidParameterError
    from surveyproc.jobs import CausalSection
    from surveyproc.stats.causal import bootstrap_graphs
    from surveyproc.stats.job import causal_variables

    store, _, _, _, aggregates = small
    settings = CausalSection(enabled=True, rows=1500, features=3,
                             labels=["redshift", "metallicity"])
    variables = causal_variables(settings, aggregates, store, None)
    assert list(variables)[:3] == ["redshift", "metallicity", "mag_r"]
    assert "sparse_f0" in variables and len(variables) == 6
    assert 1300 < len(variables["redshift"]) < 1700  # a sample of the 3,000 rows
    metallicity, f0 = variables["metallicity"], variables["sparse_f0"]
    known = np.isfinite(metallicity)
    np.testing.assert_allclose(f0[known], np.clip((metallicity[known] - 8.2) * 4, 0.01, None),
                               rtol=1e-4)
    graph = bootstrap_graphs(np.column_stack(list(variables.values())), list(variables),
                             resamples=3)
    assert graph.dropped == {"sparse_f0": "a linear function of redshift, metallicity, mag_r"}
    assert "sparse_f0" not in graph.names and len(graph.names) == 5
    assert graph.to_dict()["dropped"] == graph.dropped

    with pytest.raises(InvalidParameterError, match="no sparse feature columns"):
        causal_variables(CausalSection(features=2, feature_model="zpoint"), aggregates,
                         store, None)
