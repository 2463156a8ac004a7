"""CLAP: the harmonic-mean ensemble, the KNN densities, and the whole path on a
photometry-only store from the command line."""

from __future__ import annotations

import json

import numpy as np
import pyarrow.parquet as pq
import torch

from surveyproc.catalog import read_catalog
from surveyproc.cli import main
from surveyproc.flags import Flag
from surveyproc.models.clap import harmonic_mean
from surveyproc.models.grid import Grid
from surveyproc.models.knn_pdf import adaptive_knn_densities, neighbours

from ..store.ingest.test_table import write_table


def test_harmonic_mean_matches_numpy():
    rng = np.random.default_rng(1)
    p = rng.dirichlet(np.ones(12), size=(4, 7))  # 4 members, 7 galaxies, 12 bins
    expected = len(p) / (1.0 / p).sum(axis=0)
    expected /= expected.sum(axis=1, keepdims=True)
    np.testing.assert_allclose(harmonic_mean(torch.from_numpy(p)).numpy(), expected,
                               rtol=1e-10)


def test_knn_density_is_the_brute_force_neighbour_count():
    rng = np.random.default_rng(2)
    reference = rng.normal(size=(300, 3))
    truth = rng.uniform(0, 1, 300)
    query = rng.normal(size=(20, 3))
    grid = Grid(low=0.0, high=1.0, n_bins=10)
    knn = adaptive_knn_densities(reference, truth, query, grid, k_max=5, recalibrate=False)
    distance = ((query[:, None, :] - reference[None, :, :]) ** 2).sum(-1)
    nearest = np.argsort(distance, axis=1)[:, :5]
    counts = np.stack([np.histogram(truth[row], 10, (0, 1))[0] for row in nearest])
    np.testing.assert_allclose(knn.pdf * grid.width, counts / 5)
    assert (knn.k == 5).all()
    # left-out self: a reference never counts itself among its neighbours
    own = neighbours(reference, reference, 4, exclude_self=True)
    assert not (own == np.arange(300)[:, None]).any()
    np.testing.assert_array_equal(own, np.argsort(
        ((reference[:, None] - reference[None]) ** 2).sum(-1), axis=1)[:, 1:5])


def test_a_calibration_set_undoes_the_over_confidence_of_an_in_sample_latent():
    """References whose latent knows them (their truth within 0.01) and new galaxies whose
    latent does not (0.05): the references' own PITs call the narrow densities calibrated;
    the calibration galaxies' PITs see that they are not, and widen them."""
    from surveyproc.catalog.pdf import covered, pit_values

    rng = np.random.default_rng(0)
    grid = Grid(low=0.0, high=1.0, n_bins=50)

    def sample(n, noise):
        z = rng.uniform(0.1, 0.9, n)
        return np.stack([z + rng.normal(0, noise, n), rng.normal(size=n)], 1), z

    (reference, truth), calibration, (query, query_truth) = (
        sample(3000, 0.01), sample(1000, 0.05), sample(1000, 0.05))
    coverage = {}
    for name, given in (("own", None), ("calibration", calibration)):
        knn = adaptive_knn_densities(reference, truth, query, grid, k_max=100,
                                     calibration=given)
        pit = pit_values(knn.pdf, query_truth, grid)
        coverage[name] = (covered(pit, 0.68).mean(), covered(pit, 0.95).mean())
    assert coverage["own"][0] < 0.45 and coverage["own"][1] < 0.65
    assert abs(coverage["calibration"][0] - 0.68) < 0.08
    assert abs(coverage["calibration"][1] - 0.95) < 0.08


def test_photometry_only_store_from_table_to_report(tmp_path, capsys, ray_session,
                                                    dask_session, monkeypatch):
    monkeypatch.chdir(tmp_path)
    table = write_table(tmp_path / "sdss.csv", n=900)
    assert main(["ingest", "table", "store.zarr", "--catalog", str(table),
                 "--id-from", "plate,mjd,fiberid", "--photometry", "u=u", "--photometry",
                 "g=g", "--photometry-error", "u=u_err", "--photometry-error", "g=g_err",
                 "--label", "redshift=redshift", "-q"]) == 0
    job = tmp_path / "job.yaml"
    job.write_text("""
name: photoz
store: {url: store.zarr}
output: {dir: out}
resources: {actors: 1, cpus_per_actor: 0.5, batch_size: 256}
models:
  - {name: clap, kind: clap, inputs: photometry, targets: [redshift], members: 2,
     mlp_hidden: 32, latent_dims: 4, extra_dims: 4, k_max: 40, refit_epochs: 2,
     grid: {low: 0.0, high: 0.4, n_bins: 40}}
  - {name: softmax, kind: binned_density, inputs: photometry, targets: [redshift],
     mlp_hidden: 32, grid: {low: 0.0, high: 0.4, n_bins: 40}}
targets:
  redshift: {relative_error: true, outliers: [0.05]}
train: {epochs: 2, batch_size: 64}
""")
    assert main(["run", str(job)]) == 0
    out = capsys.readouterr().out
    assert "report: " in out
    # CLAP and its baseline both estimate redshift: one catalog, each model's own columns
    catalog = pq.read_table(next((tmp_path / "out/catalog").glob("part-*.parquet")))
    assert catalog.num_rows > 0 and "redshift_pdf" not in catalog.column_names
    for model in ("clap", "softmax"):
        pdf = np.stack(catalog.column(f"{model}_redshift_pdf").to_numpy(zero_copy_only=False))
        np.testing.assert_allclose(pdf.sum(axis=1) * 0.01, 1.0, rtol=1e-4)
    assert not np.allclose(catalog.column("clap_redshift_q50").to_numpy(),
                           catalog.column("softmax_redshift_q50").to_numpy())
    # ... and the report's calibration shows them side by side
    summary = json.loads((tmp_path / "out/report/summary.json").read_text())
    compared = summary["comparison"]["redshift"]
    assert [row["model"] for row in compared] == ["clap", "softmax"]
    # every galaxy is judged: the labels join the catalog by their 63-bit hashed ids
    assert all(0 <= row["coverage_68"] <= 1 and row["n"] == 900 for row in compared)
    assert set(compared[0]) == {"model", "kind", "point", "n", "bias_median", "sigma_nmad",
                                "outlier_frac_0.05", "crps", "ks", "coverage_68",
                                "coverage_95"}
    assert set(summary["calibration"]) == {"clap_redshift", "softmax_redshift"}
    report = tmp_path / "out/report"
    assert (report / "pit_redshift_compared.png").exists()
    assert "redshift: the models side by side" in (report / "index.html").read_text()
    assert (report / "calibration_clap_redshift.csv").exists()
    from surveyproc.models import load_checkpoint

    checkpoint = load_checkpoint(str(tmp_path / "out/checkpoints/clap.pt"))
    members = checkpoint.metrics["readouts"]["members"]
    assert [m["member"] for m in members] == [0, 1]
    assert all(m["val_wasserstein_refit_knn"] >= 0 for m in members)
    assert checkpoint.image_size == [0, 0] and checkpoint.config["inputs"] == "photometry"
    # the training store's galaxies lie inside the models' photometric domain ...
    ood = int(Flag.OUT_OF_DISTRIBUTION)
    assert np.mean(catalog.column("flags").to_numpy() & ood != 0) < 0.05
    # ... and the same galaxies 8 magnitudes fainter in g (a deeper survey) do not
    rows = [line.split(",") for line in table.read_text().splitlines()]
    for row in rows[1:]:
        row[4] = f"{float(row[4]) + 8:.4f}"
    (tmp_path / "deep.csv").write_text("\n".join(",".join(r) for r in rows) + "\n")
    assert main(["ingest", "table", "deep.zarr", "--catalog", str(tmp_path / "deep.csv"),
                 "--id-from", "plate,mjd,fiberid", "--photometry", "u=u", "--photometry",
                 "g=g", "--photometry-error", "u=u_err", "--photometry-error", "g=g_err",
                 "--label", "redshift=redshift", "-q"]) == 0
    assert main(["infer", str(job), "--store", "deep.zarr", "--catalog", "out/deep"]) == 0
    deep = read_catalog(str(tmp_path / "out/deep"), columns=["flags"])
    assert deep.num_rows == 900
    assert np.all(deep.column("flags").to_numpy() & ood != 0)
