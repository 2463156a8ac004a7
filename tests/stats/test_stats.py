"""Statistics of a catalog against plain NumPy/pandas, qp's metrics, and known calibration."""

from __future__ import annotations

import warnings

import numpy as np
import pytest
import scipy.stats as st

from surveyproc.errors import CatalogMismatchError
from surveyproc.jobs import TargetSettings
from surveyproc.models import Grid
from surveyproc.stats import aggregate_catalog, crps, pit_values
from surveyproc.stats.report import write_report
from surveyproc.testing import synthetic_catalog
from tests.support.catalogs import F, K, N, uncommit

pytestmark = pytest.mark.slow
GRID = Grid(low=0.0, high=0.4, n_bins=180)


def _dense(table):
    x = np.zeros((len(table), F))
    for row, (idx, val) in enumerate(zip(table["act_idx"], table["act_val"], strict=True)):
        x[row, np.asarray(idx)] = val
    return x


def test_feature_statistics_equal_numpy(small):
    _, _, table, labels, aggregates = small
    stats = aggregates.features["sparse"]
    x = _dense(table)
    per = stats.per_feature.set_index("feature")
    np.testing.assert_allclose(per["frequency"], (x != 0).mean(axis=0))
    np.testing.assert_allclose(per["max_activation"], x.max(axis=0), rtol=1e-6)
    active_mean = np.array([x[x[:, f] != 0, f].mean() for f in range(F)])
    np.testing.assert_allclose(per["mean_activation"], active_mean, rtol=1e-6)
    np.testing.assert_allclose(stats.feature_corr, np.corrcoef(x.T), atol=1e-9)
    for j, name in enumerate(labels.columns):
        known = labels[name].notna().to_numpy()
        expected = [np.corrcoef(x[known, f], labels[name][known])[0, 1] for f in range(F)]
        np.testing.assert_allclose(stats.label_corr[:, j], expected, atol=1e-9)
    # variance explained by the top-m features: ordinary least squares with an intercept
    order = np.argsort(-(x != 0).mean(axis=0), kind="stable")
    y = labels["metallicity"].to_numpy()
    known = np.isfinite(y)
    for _, row in stats.explained.iterrows():
        design = np.column_stack([np.ones(known.sum()), x[known][:, order[: int(row.m)]]])
        beta = np.linalg.lstsq(design, y[known], rcond=None)[0]
        r2 = 1 - np.var(y[known] - design @ beta) / np.var(y[known])
        assert row.explained_variance == pytest.approx(r2, abs=1e-8)
    assert stats.explained["explained_variance"].iloc[0] > 0.5  # feature 0 tracks Z
    # exemplars are the largest activations of each feature
    for feature, ids in stats.exemplars.items():
        expected = np.argsort(-x[:, feature], kind="stable")[: len(ids)]
        assert sorted(x[ids, feature]) == pytest.approx(sorted(x[expected, feature]))


def test_calibration_statistics_equal_numpy_scipy_and_qp(small):
    _, _, table, labels, aggregates = small
    z = labels["redshift"].to_numpy()
    pdf = np.stack(table["redshift_pdf"].to_numpy())
    pit = pit_values(pdf, z, GRID)
    row = aggregates.calibration["redshift"].set_index("group").loc["all"]
    assert row["ks"] == pytest.approx(st.kstest(pit, "uniform").statistic, abs=2e-4)
    assert row["cvm"] == pytest.approx(st.cramervonmises(pit, "uniform").statistic, rel=1e-3)
    assert row["coverage_68"] == pytest.approx(np.mean((pit >= 0.16) & (pit <= 0.84)))
    assert row["coverage_95"] == pytest.approx(np.mean((pit >= 0.025) & (pit <= 0.975)))
    dz = (table["redshift_mean"].to_numpy() - z) / (1 + z)
    assert row["bias_mean"] == pytest.approx(dz.mean(), abs=1e-7)
    assert row["bias_median"] == pytest.approx(np.median(dz), abs=1e-4)
    nmad = 1.4826 * np.median(np.abs(dz - np.median(dz)))
    assert row["sigma_nmad"] == pytest.approx(nmad, abs=2e-4)
    assert row["outlier_frac_0.05"] == pytest.approx(np.mean(np.abs(dz) > 0.05))
    # CRPS against a brute-force integral of (F - H)^2 on a fine grid
    fine = np.linspace(0.0, 0.4, 20001)
    width = 0.4 / pdf.shape[1]
    cdf = np.cumsum(pdf * width, axis=1)
    cdf_fine = np.array([np.interp(fine, np.linspace(width, 0.4, pdf.shape[1]), c, left=0)
                         for c in cdf[:200]])
    brute = np.trapezoid((cdf_fine - (fine[None] >= z[:200, None])) ** 2, fine, axis=1)
    np.testing.assert_allclose(crps(pdf[:200], z[:200], GRID), brute, atol=2e-5)
    assert row["crps"] == pytest.approx(crps(pdf, z, GRID).mean(), rel=1e-9)
    # by magnitude: the groups partition the galaxies with a magnitude
    by_mag = aggregates.calibration["redshift"].query("group.str.startswith('r ')")
    assert by_mag["n"].sum() == N

    qp = pytest.importorskip("qp")
    ensemble = qp.Ensemble(qp.interp, data={"xvals": GRID.centres_array(), "yvals": pdf})
    pit_qp = qp.metrics.PIT(ensemble, z)
    # qp reads the PDF as linear between bin centres, surveyproc as constant within bins
    assert row["ks"] == pytest.approx(pit_qp.evaluate_PIT_KS().statistic, abs=5e-3)
    assert row["cvm"] == pytest.approx(pit_qp.evaluate_PIT_CvM().statistic, rel=0.1, abs=0.05)
    with warnings.catch_warnings():  # qp calls scipy's anderson_ksamp the deprecated way
        warnings.simplefilter("ignore", UserWarning)
        ad_qp = pit_qp.evaluate_PIT_anderson_ksamp().statistic
    assert row["ad"] == pytest.approx(ad_qp, rel=0.1, abs=0.3)


def test_point_metrics_of_a_regression_target(small):
    _, _, table, labels, aggregates = small
    row = aggregates.calibration["metallicity"].iloc[0]
    y = labels["metallicity"].to_numpy()
    known = np.isfinite(y)
    err = table["metallicity_mean"].to_numpy()[known] - y[known]
    assert row["n"] == known.sum()
    assert row["bias_mean"] == pytest.approx(err.mean(), abs=1e-6)
    assert row["sigma_nmad"] == pytest.approx(
        1.4826 * np.median(np.abs(err - np.median(err))), abs=2e-4)
    assert "ks" not in aggregates.calibration["metallicity"]
    # outlier thresholds belong to a target's settings: none were set for metallicity
    assert not [c for c in aggregates.calibration["metallicity"] if c.startswith("outlier")]


def test_outlier_thresholds_and_relative_errors_follow_the_target_settings(small):
    store, root, table, labels, _ = small
    settings = {"metallicity": TargetSettings(outliers=[0.3]),
                "redshift": TargetSettings(point="mode")}
    calibration = aggregate_catalog(str(root / "cat"), store, targets=settings).calibration
    metallicity = calibration["metallicity"].iloc[0]
    y = labels["metallicity"].to_numpy()
    known = np.isfinite(y)
    err = table["metallicity_mean"].to_numpy()[known] - y[known]
    assert metallicity["outlier_frac_0.3"] == pytest.approx(np.mean(np.abs(err) > 0.3))
    assert "outlier_frac_0.15" not in calibration["metallicity"]
    # redshift judged by its mode, in absolute (not relative) units, as its settings say
    z = labels["redshift"].to_numpy()
    error = table["redshift_mode"].to_numpy() - z
    assert calibration["redshift"].iloc[0]["bias_mean"] == pytest.approx(error.mean(), abs=1e-7)


@pytest.mark.parametrize("where", ["below", "inside", "above"])
def test_crps_and_pit_count_the_mass_outside_the_grid(where):
    """CRPS = integral over the whole line of (F - step at truth)^2, F = 0 below the grid and
    1 above it; compared with a brute-force integral that extends past the grid."""
    grid = Grid(low=0.1, high=0.5, n_bins=40)
    rng = np.random.default_rng(3)
    pdf = rng.random((5, grid.n_bins))
    pdf /= pdf.sum(axis=1, keepdims=True) * grid.width
    truth = {"below": np.full(5, 0.02), "inside": rng.uniform(0.1, 0.5, 5),
             "above": np.full(5, 0.73)}[where]
    x = np.linspace(-0.2, 1.0, 240_001)
    cdf_edges = np.concatenate([np.zeros((5, 1)), np.cumsum(pdf * grid.width, axis=1)], axis=1)
    cdf = np.array([np.interp(x, grid.edges(), c, left=0.0, right=1.0) for c in cdf_edges])
    brute = np.trapezoid((cdf - (x[None] >= truth[:, None])) ** 2, x, axis=1)
    np.testing.assert_allclose(crps(pdf, truth, grid), brute, atol=2e-5)
    pit = pit_values(pdf, truth, grid)
    expected = {"below": 0.0, "above": 1.0}.get(where)
    if expected is not None:
        np.testing.assert_array_equal(pit, expected)


def test_objects_with_truth_outside_the_grid_are_counted(small, tmp_path):
    store = small.store
    synthetic_catalog(str(tmp_path / "cat"), store, rows_per_part=1500, n_features=F, k=K,
                      n_bins=60, seed=2)
    narrow = {"redshift": TargetSettings()}
    aggregates = aggregate_catalog(str(tmp_path / "cat"), store, targets=narrow)
    row = aggregates.calibration["redshift"].iloc[0]
    # the synthetic catalog's grid is [0, 0.4]; label_store draws z in [0.02, 0.38]: none
    assert row["outside_grid"] == 0
    z = store.read_column("labels/redshift")
    assert row["n"] == np.isfinite(z).sum()


def test_anderson_darling_memory_does_not_grow_with_rows():
    import tracemalloc

    from surveyproc.stats.calibration import PIT_BINS, anderson_ksamp_binned

    peaks = []
    for n in (10**6, 10**7):
        hist = np.random.default_rng(0).multinomial(n, np.full(PIT_BINS, 1 / PIT_BINS))
        tracemalloc.start()
        anderson_ksamp_binned(hist)
        peaks.append(tracemalloc.get_traced_memory()[1])
        tracemalloc.stop()
    # a length-2n array would take 16 MB at 10^6 and 160 MB at 10^7 rows
    assert peaks[1] < 1.5 * peaks[0] + 2**20 and peaks[1] < 40 * 2**20, peaks


def test_an_unfinished_catalog_is_refused_unless_partial_is_allowed(small, tmp_path):
    store = small.store
    url = tmp_path / "cat"
    synthetic_catalog(str(url), store, rows_per_part=1000, n_features=F, k=K, seed=4)
    uncommit(str(url), 1)  # its part stays: a crashed commit
    with pytest.raises(CatalogMismatchError, match="unfinished: 2 of 3 shards committed"):
        aggregate_catalog(str(url), store)
    partial = aggregate_catalog(str(url), store, allow_partial=True)
    assert partial.rows == 2000 and not partial.parts.complete
    page = write_report(partial, store, tmp_path / "report", {}, str(url), "partial")
    assert "partial: 2 of 3 shards" in page.read_text()


@pytest.mark.parametrize("scale", [1.0, 0.5, 2.0])
def test_calibration_separates_calibrated_over_and_under_confident(scale, tmp_path, small):
    store = small.store
    synthetic_catalog(str(tmp_path / "cat"), store, rows_per_part=1500, n_features=F, k=K,
                      pdf_scale=scale, seed=5)
    row = aggregate_catalog(str(tmp_path / "cat"), store).calibration["redshift"].iloc[0]
    if scale == 1.0:  # calibrated: flat PIT, nominal coverage
        assert row["ks"] < 0.04 and abs(row["coverage_68"] - 0.68) < 0.04
        assert abs(row["coverage_95"] - 0.95) < 0.03
    elif scale < 1:  # over-confident: too narrow, truth too often in the tails
        assert row["ks"] > 0.1 and row["coverage_68"] < 0.5 and row["coverage_95"] < 0.8
    else:  # under-confident: too wide, truth too often near the middle
        assert row["ks"] > 0.1 and row["coverage_68"] > 0.9 and row["coverage_95"] > 0.99


def test_surveyproc_aggregate_on_an_unfinished_catalog_exits_2_unless_partial(small, tmp_path,
                                                                               capsys):
    from surveyproc.cli import main

    store = small.store
    url = tmp_path / "cat"
    synthetic_catalog(str(url), store, rows_per_part=1000, n_features=F, k=K, seed=4)
    uncommit(str(url), 2)
    job = tmp_path / "job.yaml"
    job.write_text(f"name: partial\nstore: {{url: {store.url}}}\n"
                   f"output: {{dir: {tmp_path / 'out'}}}\ninfer: {{catalog: {url}}}\n")
    assert main(["aggregate", str(job)]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "unfinished: 2 of 3 shards committed" in err[0], err
    assert main(["aggregate", str(job), "--set", "aggregate.allow_partial=true"]) == 0
    report = (tmp_path / "out" / "report" / "index.html").read_text()
    assert "partial: 2 of 3 shards" in report
