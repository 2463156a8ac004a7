"""CLAP: the harmonic-mean ensemble, the KNN densities, and the whole path on a
photometry-only store from the command line."""

from __future__ import annotations

import json

import numpy as np
import pyarrow.parquet as pq
import torch

from surveyproc.cli import main
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
targets:
  redshift: {relative_error: true, outliers: [0.05]}
train: {epochs: 2, batch_size: 64}
""")
    assert main(["run", str(job)]) == 0
    out = capsys.readouterr().out
    assert "report: " in out
    catalog = pq.read_table(next((tmp_path / "out/catalog").glob("part-*.parquet")))
    assert catalog.num_rows > 0 and "redshift_pdf" in catalog.column_names
    pdf = np.stack(catalog.column("redshift_pdf").to_numpy(zero_copy_only=False))
    np.testing.assert_allclose(pdf.sum(axis=1) * 0.01, 1.0, rtol=1e-4)
    summary = json.loads((tmp_path / "out/report/summary.json").read_text())
    assert "clap" in json.dumps(summary)
    assert (tmp_path / "out/report/calibration_redshift.csv").exists()
    from surveyproc.models import load_checkpoint

    checkpoint = load_checkpoint(str(tmp_path / "out/checkpoints/clap.pt"))
    members = checkpoint.metrics["readouts"]["members"]
    assert [m["member"] for m in members] == [0, 1]
    assert all(m["val_wasserstein_refit_knn"] >= 0 for m in members)
    assert checkpoint.image_size == [0, 0] and checkpoint.config["inputs"] == "photometry"
