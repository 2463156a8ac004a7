"""A translated survey is an ordinary store: survey A's galaxies laid out like survey B,
valid, read by inference with a model trained on B, unchanged."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from surveyproc.catalog import read_catalog
from surveyproc.infer import run_inference
from surveyproc.jobs import JobSpec
from surveyproc.models import save_checkpoint
from surveyproc.models.translation import Stretch, UNet, emulate_noise
from surveyproc.store import open_store
from surveyproc.store.synth import SynthConfig, synthesize
from surveyproc.store.translated import write_translated
from surveyproc.testing import seeded_checkpoint

BANDS = ("g", "r", "i")
A = SynthConfig(n=120, seed=5, bands=BANDS, size=8, pixel_scale=0.8, seeing=1.4,
                noise_scale=2.0, noise_seed=1, chunk=50)
B = SynthConfig(n=120, seed=5, bands=BANDS, size=16, pixel_scale=0.4, seeing=0.7,
                noise_scale=0.6, noise_seed=2, chunk=40)
GRID = {"low": 0.0, "high": 0.4, "n_bins": 40}


@pytest.fixture(scope="module")
def surveys():
    a = synthesize("memory://translated/a.zarr", A, parallel=False)
    b = synthesize("memory://translated/b.zarr", B, parallel=False)
    return a, b


def _translator(a, b):
    torch.manual_seed(0)
    net = UNet(len(BANDS), len(BANDS), width=8, depth=1, upscale=2).eval()
    stretch_a = Stretch(list(a.attrs["calibration"]["noise"].values()))
    noise = [float(v) for v in b.attrs["calibration"]["noise"].values()]
    stretch_b = Stretch(noise)

    def translate(images: np.ndarray, start: int) -> np.ndarray:
        with torch.inference_mode():
            flux = stretch_b.inverse(net(stretch_a(torch.from_numpy(images)))).numpy()
        return emulate_noise(flux, noise, seed=0, first=start)

    return translate


def test_a_translated_survey_is_a_store_laid_out_like_the_target(surveys):
    a, b = surveys
    store = write_translated(a, "memory://translated/t.zarr", _translator(a, b), like=b)
    again = open_store(store.url)  # validated on opening
    assert again.n_objects == a.n_objects and tuple(again.bands) == BANDS
    assert (again.layout.height, again.layout.width) == (16, 16)
    assert again.attrs["pixel_scale"] == pytest.approx(0.4)
    assert again.attrs["calibration"]["psf_fwhm"] == b.attrs["calibration"]["psf_fwhm"]
    np.testing.assert_array_equal(again.read_column("object_id"), a.read_column("object_id"))
    np.testing.assert_array_equal(again.read_column("labels/redshift"),
                                  a.read_column("labels/redshift"))
    assert again.layout.has_pixel_measures  # kept by the store writer, as for any survey
    assert np.isfinite(again.read(0, 10).images).all()


def test_inference_reads_a_translated_survey_unchanged(surveys):
    a, b = surveys
    store = write_translated(a, "memory://translated/infer.zarr", _translator(a, b), like=b)
    save_checkpoint(seeded_checkpoint(b, "binned_density", ["redshift"], grid=GRID, width=8),
                    "memory://translated-out/checkpoints/photoz.pt")
    job = JobSpec.model_validate({
        "name": "t", "store": {"url": store.url}, "output": {"dir": "memory://translated-out"},
        "models": [{"name": "photoz", "kind": "binned_density", "targets": ["redshift"],
                    "width": 8, "grid": GRID}], "metrics": {"enabled": False}})
    result = run_inference(job, store)
    table = read_catalog("memory://translated-out/catalog")
    assert result.complete and table.num_rows == a.n_objects
    assert np.isfinite(np.asarray(table.column("redshift_q50"))).all()


def test_a_translation_of_the_wrong_shape_is_refused(surveys):
    a, b = surveys
    with pytest.raises(ValueError, match=r"shape \(3, 8, 8\) do not fit store .*, whose "
                                         r"cutouts are \(3, 16, 16\)"):
        write_translated(a, "memory://translated/bad.zarr", lambda images, start: images,
                         like=b)
