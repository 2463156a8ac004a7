"""Kind ``mi_decomposition`` through the command line on a store with a designed information
structure: one target each carried by an image-only feature, by a feature images and
photometry share, and by the product of an image-only and a photometry-only feature."""

from __future__ import annotations

import json

import numpy as np
import pytest

from surveyproc.errors import JobSpecError
from surveyproc.jobs import load_job

TERMS4 = ("redundant", "unique_1", "unique_2", "synergy")


def designed_store(url: str, n: int, seed: int = 0):
    """Two bands of 16x16 Gaussian blobs.  Band g: flux set by ``shared``, width by
    ``morphology``; band r: flux set by ``colour``.  Input 1 (g images) sees shared and
    morphology; input 2 (g and r aperture photometry) sees shared and colour, not the width
    (the aperture holds nearly all the flux whatever the width).  ``colour`` is a label too:
the local tests ask whether it matters once input 1 is known."""
    from surveyproc.store import CutoutBatch, StoreSpec, StoreWriter, create_store, open_store

    rng = np.random.default_rng(seed)
    shared, morphology, colour = rng.uniform(-1, 1, (3, n))
    labels = {"y_unique": morphology + 0.05 * rng.standard_normal(n),
              "y_shared": shared + 0.05 * rng.standard_normal(n),
              "y_synergy": np.sign(morphology) * np.sign(colour) + 0.1 * rng.standard_normal(n),
              "colour": colour}
    labels["y_shared"][::10] = np.nan  # unknown truths: their terms must be NaN
    yy, xx = np.mgrid[:16, :16] - 7.5
    r2 = (xx ** 2 + yy ** 2)[None]
    width = (1.2 + 0.5 * morphology)[:, None, None]
    g = 10 ** (1.0 + 0.5 * shared)[:, None, None] * np.exp(-r2 / (2 * width ** 2)) \
        / (2 * np.pi * width ** 2)
    r = 10 ** (1.0 + 0.5 * colour)[:, None, None] * np.exp(-r2 / 2.0) / (2 * np.pi)
    images = np.stack([g, r], axis=1) + 0.02 * rng.standard_normal((n, 2, 16, 16))
    spec = StoreSpec(n_objects=n, bands=("g", "r"), height=16, width=16,
                     labels=tuple(labels), chunk_objects=500, survey="designed")
    create_store(url, spec, provenance={"generator": "designed information"})
    writer = StoreWriter(url)
    for start in range(0, n, spec.write_unit):
        rows = slice(start, min(start + spec.write_unit, n))
        index = np.arange(n)[rows]
        writer.write(CutoutBatch(start=start, object_id=index.astype(np.int64),
                                 ra=np.zeros(len(index)), dec=np.zeros(len(index)),
                                 images=images[rows].astype(np.float32),
                                 labels={k: v[rows].astype(np.float32)
                                         for k, v in labels.items()}))
    writer.finalize()
    return open_store(url)


def test_inputs_must_be_two_and_bands_known(tmp_path):
    job = tmp_path / "job.yaml"
    job.write_text("""
name: m
store: {url: s.zarr}
output: {dir: out}
models:
  - {name: m, kind: mi_decomposition, targets: [redshift], inputs: [images]}
""")
    with pytest.raises(JobSpecError, match="inputs"):
        load_job(str(job))


@pytest.mark.slow
def test_designed_information_is_ranked_as_designed(tmp_path, ray_session, dask_session,
                                                     capsys):
    from surveyproc.catalog import read_catalog
    from surveyproc.cli import main

    url = str(tmp_path / "designed.zarr")
    designed_store(url, 4000)
    job = tmp_path / "job.yaml"
    job.write_text(f"""
name: information
store: {{url: {url}}}
output: {{dir: {tmp_path / 'out'}}}
models:
  - name: info
    kind: mi_decomposition
    width: 8
    hidden: 32
    pdf_bins: 16
    targets: [y_unique, y_shared, y_synergy]
    inputs:
      - {{source: images, bands: [g]}}
      - {{source: photometry, bands: [g, r]}}
train: {{epochs: 8, batch_size: 128, lr: 0.003, val_fraction: 0.1,
        test_fraction: 0.1}}
resources: {{actors: 1, cpus_per_actor: 0.5, batch_size: 256}}
infer: {{objects_per_shard: 1000}}
aggregate:
  causal: {{enabled: true, rows: 1000, resamples: 4, labels: [y_shared, y_synergy, y_unique]}}
  local_tests: {{enabled: true, target: y_synergy, queries: [colour, y_shared],
                condition: y_unique, k: 50, neighbourhoods: 500, permutations: 100}}
metrics: {{enabled: false}}
""")
    for command in ("train", "infer", "aggregate"):
        assert main([command, str(job)]) == 0, capsys.readouterr().err
    printed = capsys.readouterr().err

    table = read_catalog(str(tmp_path / "out/catalog"))
    assert table.num_rows == 4000
    shared_terms = table.column("y_shared_mi_redundant").to_numpy()
    assert np.isnan(shared_terms[::10]).all()  # no truth, no terms
    assert np.isfinite(np.delete(shared_terms, np.s_[::10])).all()

    summary = json.loads((tmp_path / "out/report/summary.json").read_text())
    information = summary["models"]["info"]["information"]
    largest = {target: max(TERMS4, key=lambda t: information[target]["population"][t])
               for target in ("y_unique", "y_shared", "y_synergy")}
    assert largest == {"y_unique": "unique_1", "y_shared": "redundant",
                       "y_synergy": "synergy"}, {t: information[t]["population"]
                                                 for t in largest}
    # the catalog's own terms give the summary's means
    mean = np.nanmean(table.column("y_synergy_mi_synergy").to_numpy())
    assert information["y_synergy"]["mean"]["synergy"] == pytest.approx(mean, abs=1e-4)
    assert information["y_shared"]["n"] == 3600
    html = (tmp_path / "out/report/index.html").read_text()
    assert "Information decomposition (bits)" in html
    # the causal section over the store's labels: the synergy target depends on the sign of
    # the morphology that y_unique measures, not on y_shared
    causal = summary["causal"]
    assert causal["variables"] == ["y_shared", "y_synergy", "y_unique"]
    assert "Causal discovery" in html and (tmp_path / "out/report/causal_graph.png").exists()

    # local tests in input 1's latent (g images: it knows the morphology and the shared
    # feature, not the colour): the synergy target still depends on the colour there, not
    # on the shared feature, also given the morphology
    local = summary["local_tests"]
    assert local["latent"] == "info's estimator on images (g)"
    verdicts = {t["query"]: (t["dependent"], t["conditional"]["dependent"])
                for t in local["tests"]}
    assert verdicts == {"colour": (True, True), "y_shared": (False, False)}, local["tests"]
    assert "Local independence tests" in html and (tmp_path / "out/report/local_tests.png").exists()
    assert len(table.column("info_latent")[0]) == 16
    # every column of the information, causal and local-tests tables says what it means
    assert "without a meaning" not in printed, printed
