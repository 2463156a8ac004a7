"""Kind ``vae_flow`` through the command line: train -> infer -> aggregate on a store whose
labels are partly missing, with every target's PDF on its own grid in the catalog."""

from __future__ import annotations

import json

import numpy as np
import pytest

from surveyproc.errors import JobSpecError
from surveyproc.jobs import load_job


def test_grids_must_name_targets(tmp_path):
    job = tmp_path / "job.yaml"
    job.write_text("""
name: v
store: {url: s.zarr}
output: {dir: out}
models:
  - name: v
    kind: vae_flow
    targets: [log_mstar]
    grids: {redshift: {low: 0, high: 1, n_bins: 10}}
""")
    with pytest.raises(JobSpecError, match="grids given for redshift"):
        load_job(str(job))


@pytest.mark.slow
def test_vae_flow_runs_through_train_infer_and_aggregate(tmp_path, ray_session, dask_session,
                                                         capsys):
    import zarr

    from surveyproc.catalog import catalog_schema, read_catalog
    from surveyproc.cli import main
    from surveyproc.models import load_checkpoint
    from surveyproc.store.synth import SynthConfig, synthesize

    url = str(tmp_path / "survey.zarr")
    synthesize(url, SynthConfig(n=600, size=16, seed=5), chunk_objects=100, parallel=False)
    mbh = zarr.open_array(f"{url}/labels/log_mbh", mode="r+")
    values = mbh[:]
    values[np.arange(len(values)) % 4 != 0] = np.nan  # black-hole masses for a quarter
    mbh[:] = values
    job = tmp_path / "job.yaml"  # no dask address: the session's Dask client is used
    job.write_text(f"""
name: vaenf
store: {{url: {url}}}
output: {{dir: {tmp_path / 'out'}}}
models:
  - name: posterior
    kind: vae_flow
    width: 8
    latent: 8
    samples: 64
    targets: [log_mstar, log_sfr, log_mbh, log_flux_halpha]
    grids: {{log_mstar: {{low: 7, high: 13, n_bins: 60}}}}
train: {{epochs: 2, batch_size: 64, val_fraction: 0.2}}
resources: {{actors: 1, cpus_per_actor: 0.5, batch_size: 64}}
infer: {{objects_per_shard: 200}}
metrics: {{enabled: false}}
""")
    for command in ("train", "infer", "aggregate"):
        assert main([command, str(job)]) == 0, capsys.readouterr().err

    checkpoint = load_checkpoint(str(tmp_path / "out/checkpoints/posterior.pt"))
    assert checkpoint.config["flow_groups"] == [[0, 1, 2], [3]]
    assert np.isfinite(checkpoint.metrics["val"]["coverage68_log_mbh"])
    # recalibrated on the validation split where it has enough truths (about 120 masses,
    # about 30 black-hole masses: those keep the identity map)
    knots, maps = checkpoint.state_dict["knots"], checkpoint.state_dict["recalibration"]
    assert not np.allclose(maps[0].numpy(), knots.numpy())
    np.testing.assert_array_equal(maps[2].numpy(), knots.numpy())

    table = read_catalog(str(tmp_path / "out/catalog"))
    assert table.num_rows == 600  # nobody dropped, with or without a black-hole mass
    schema = catalog_schema(str(tmp_path / "out/catalog"))
    grids = schema.models[0].pdf_grids
    assert (grids["log_mstar"].low, grids["log_mstar"].n_bins) == (7, 60)
    assert grids["log_sfr"].n_bins == 100
    for target, grid in grids.items():
        pdf = np.stack(table.column(f"{target}_pdf").to_numpy(zero_copy_only=False))
        assert pdf.shape == (600, grid.n_bins)
        # densities on the target's own grid: each row integrates to about 1
        np.testing.assert_allclose(np.median(pdf.sum(axis=1) * grid.width), 1.0, atol=0.02)
        q16, q50, q84 = (table.column(f"{target}_{q}").to_numpy() for q in ("q16", "q50",
                                                                          "q84"))
        assert np.all(q16 <= q50) and np.all(q50 <= q84)
    corr = np.stack(table.column("posterior_corr").to_numpy(zero_copy_only=False))
    assert corr.shape == (600, 3) and np.all(np.abs(corr) <= 1.0 + 1e-5)
    assert schema.models[0].extra["correlation"]["pairs"][0] == ["log_mstar", "log_sfr"]

    summary = json.loads((tmp_path / "out/report/summary.json").read_text())
    assert {"log_mstar", "log_mbh", "log_flux_halpha"} <= set(summary["calibration"])
    pairs = summary["models"]["posterior"]["posterior_correlations"]
    assert [p["pair"] for p in pairs] == [["log_mstar", "log_sfr"], ["log_mstar", "log_mbh"],
                                          ["log_sfr", "log_mbh"]]
    assert pairs[0]["mean_posterior"] == pytest.approx(float(corr[:, 0].mean()), abs=1e-5)
    assert pairs[0]["with_truth"] == 600 and pairs[1]["with_truth"] == 150
    html = (tmp_path / "out/report/index.html").read_text()
    assert "Posterior correlations of the physical parameters" in html


def test_the_correlation_aggregator_matches_numpy():
    import pandas as pd
    import pyarrow as pa

    from surveyproc.kinds.vae_flow import CorrelationAggregator

    rng = np.random.default_rng(3)
    n = 500
    truth = rng.multivariate_normal([10, 0], [[1.0, 0.6], [0.6, 1.0]], size=n)
    median = truth + rng.multivariate_normal([0, 0], [[0.1, -0.05], [-0.05, 0.1]], size=n)
    truth[::7, 1] = np.nan  # unknown for some galaxies
    corr = rng.uniform(-1, 1, size=(n, 1)).astype(np.float32)
    frame = pd.DataFrame({"p_corr": pd.arrays.ArrowExtensionArray(
                              pa.array(list(corr), type=pa.list_(pa.float32()))),
                          "m_a_q50": median[:, 0], "m_b_q50": median[:, 1]})
    # medians named as in a catalog where other models estimate a and b too
    aggregator = CorrelationAggregator("p_corr", ["a", "b"], [(0, 1)], ["m_a_q50", "m_b_q50"])
    labels = {"a": truth[:, 0], "b": truth[:, 1]}
    halves = [aggregator.partial(frame.iloc[s], {k: v[s] for k, v in labels.items()})
              for s in (slice(0, 200), slice(200, n))]
    total = {k: halves[0][k] + halves[1][k] for k in halves[0]}
    (row,) = aggregator.finish(total)
    known = np.isfinite(truth[:, 1])
    errors = truth[known] - median[known]
    assert row["with_truth"] == known.sum()
    assert row["mean_posterior"] == pytest.approx(corr.mean(), rel=1e-5)
    assert row["errors"] == pytest.approx(np.corrcoef(errors.T)[0, 1], rel=1e-9)
    assert row["truths"] == pytest.approx(np.corrcoef(truth[known].T)[0, 1], rel=1e-9)
