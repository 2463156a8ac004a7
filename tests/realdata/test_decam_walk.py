"""The README's DECam walk on the real field: calibrated ingest, a g,r,z photo-z model trained
on a synthetic survey made like the field (``synth --like``), inference on the field.

Before calibrated ingest and domain checks, this walk wrote a "complete" catalog in which
nearly every galaxy had the same PDF: the field's raw counts with the sky left in lay far
outside anything the model had seen, and nothing said so.
"""

from __future__ import annotations

import numpy as np
import pytest

from surveyproc.catalog import read_catalog
from surveyproc.cli import main
from surveyproc.flags import Flag
from surveyproc.store import open_store

pytestmark = [pytest.mark.realdata, pytest.mark.slow, pytest.mark.timeout(400)]


def test_decam_walk_gives_distinct_pdfs_and_flags_what_lies_outside(shared_data, tmp_path,
                                                                     capsys, ray_session):
    decam = shared_data / "decam_grz"
    field, train = str(tmp_path / "field.zarr"), str(tmp_path / "train.zarr")
    assert main(["ingest", "images", field, *(f"--image={b}={decam / f'img_{b}.fits'}"
                                              for b in "grz"),
                 "--detect", "--size", "48", "--zero-point", "30"]) == 0
    calibration = open_store(field).attrs["calibration"]
    assert calibration["sky_subtracted"] and 0.003 < calibration["noise"]["r"] < 0.03
    assert main(["synth", train, "--like", field, "--n", "1536", "--chunk", "256"]) == 0
    made = open_store(train)
    assert made.attrs["pixel_scale"] == pytest.approx(open_store(field).attrs["pixel_scale"])
    assert made.attrs["calibration"]["noise"] == pytest.approx(calibration["noise"])
    job = tmp_path / "decam.yaml"
    job.write_text(f"""
name: decam
store: {{url: {train}}}
output: {{dir: {tmp_path / 'out'}}}
resources: {{actors: 1, cpus_per_actor: 0.5, batch_size: 128}}
models:
  - {{name: photoz, kind: binned_density, width: 8, targets: [redshift],
     grid: {{low: 0.0, high: 0.4, n_bins: 90}}}}
train: {{epochs: 3, batch_size: 64, lr: 0.003}}
metrics: {{enabled: false}}
""")
    assert main(["train", str(job)]) == 0
    capsys.readouterr()
    catalog = str(tmp_path / "field-catalog")
    assert main(["infer", str(job), "--store", field, "--catalog", catalog]) == 0
    out = capsys.readouterr().out
    table = read_catalog(catalog).to_pandas()
    assert len(table) == open_store(field).n_objects
    pdf = np.stack(table["redshift_pdf"].to_numpy())
    pdf = pdf / pdf.sum(axis=1, keepdims=True)
    pairs = np.abs(pdf[:, None] - pdf[None]).sum(axis=-1)[np.triu_indices(len(pdf), 1)]
    assert np.median(pairs) > 0.05  # galaxies get their own PDFs, not one shared shape
    assert table["redshift_mean"].std() > 0.005
    flags = table["flags"].to_numpy()
    flagged = (flags & Flag.OUT_OF_DISTRIBUTION) != 0
    assert 0 < flagged.sum() < 0.5 * len(table)  # some sources lie outside, most do not
    assert f"warning: {int(flagged.sum())} of {len(table)} objects" in out
    assert ((flags & Flag.STAR_LIKE) != 0).any()  # the field's stars carry their flag
