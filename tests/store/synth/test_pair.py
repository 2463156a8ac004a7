"""Two synthetic surveys of the same galaxies (the pair an image-translation model learns
from): one seed, different instruments.  What must hold: the same galaxies and labels
whatever the bands and pixels, independent noise, and the seeing and depth each survey
was given, measured on its pixels."""

from __future__ import annotations

import numpy as np
import pytest

from surveyproc.errors import InvalidParameterError
from surveyproc.models.background import aperture_mask, measure_background
from surveyproc.store import open_store
from surveyproc.store.synth import SynthConfig, generate, synthesize
from surveyproc.store.synth.settings import synth_config

N = 96
#: SDSS-like: five bands, coarse pixels, broad PSF, shallow; 12.8" field
SHALLOW = SynthConfig(n=N, seed=7, bands=("u", "g", "r", "i", "z"), size=16, pixel_scale=0.8,
                      seeing=1.4, noise_scale=2.5, noise_seed=101)
#: CFHTLS-like: the same field in four bands, pixels half the size, sharp, deep
DEEP = SynthConfig(n=N, seed=7, bands=("g", "r", "i", "z"), size=32, pixel_scale=0.4,
                   seeing=0.7, noise_scale=0.6, noise_seed=102)


@pytest.fixture(scope="module")
def pair():
    return generate(SHALLOW, 0, N), generate(DEEP, 0, N)


def test_both_surveys_hold_the_same_galaxies_and_labels(pair):
    shallow, deep = pair
    np.testing.assert_array_equal(shallow.object_id, deep.object_id)
    np.testing.assert_array_equal(shallow.ra, deep.ra)
    for name in ("redshift", "log_mstar", "log_sfr", "metallicity", "agn", "flux_halpha"):
        np.testing.assert_array_equal(shallow.labels[name], deep.labels[name], err_msg=name)


def test_pixel_noise_follows_each_surveys_depth_and_pixel_size(pair):
    """Sky noise per pixel grows with the pixel side and with ``noise_scale``: the shallow
    survey's is (2.5 / 0.6) x (0.8 / 0.4) = 8.3 times the deep one's in a shared band."""
    shallow, deep = pair
    ratio = (measure_background(shallow.images).noise[:, 2]
             / measure_background(deep.images).noise[:, 1])  # r in both
    assert np.median(ratio) == pytest.approx(2.5 / 0.6 * 2.0, rel=0.1)


def test_noise_seeds_give_independent_noise_on_the_same_pixels():
    a = generate(DEEP, 0, 32)
    b = generate(DEEP.model_copy(update={"noise_seed": 103}), 0, 32)
    np.testing.assert_array_equal(a.labels["redshift"], b.labels["redshift"])
    # same galaxies, so the difference is noise only: two independent draws of it
    # differ by sqrt(2) of one; the same draw would cancel
    difference = (a.images - b.images)[:, :, :4, :].std()
    single = measure_background(a.images).noise.mean()
    assert difference == pytest.approx(np.sqrt(2.0) * single, rel=0.15)
    assert not np.array_equal(a.photometry["r"], b.photometry["r"])


def test_sharper_seeing_concentrates_each_galaxys_light():
    """Same galaxies, pixels and noise draw, only the seeing differs: the central pixels
    hold a larger share of the aperture light under the sharper PSF for nearly every
    galaxy."""
    sharp = generate(DEEP.model_copy(update={"noise_scale": 0.2}), 0, N).images[:, 1]
    broad = generate(DEEP.model_copy(update={"noise_scale": 0.2, "seeing": 1.6}), 0, N
                     ).images[:, 1]
    centre = np.zeros((32, 32), bool)
    centre[15:17, 15:17] = True
    aperture = aperture_mask(32, 32)

    def concentration(images):
        return images[:, centre].sum(axis=1) / images[:, aperture].sum(axis=1)

    assert np.mean(concentration(sharp) > concentration(broad)) > 0.9


def test_the_store_records_each_surveys_seeing_and_noise(tmp_path):
    store = synthesize(str(tmp_path / "shallow.zarr"), SHALLOW.model_copy(update={"n": 8}),
                       parallel=False)
    calibration = open_store(store.url).attrs["calibration"]
    assert calibration["psf_fwhm"] == dict.fromkeys(SHALLOW.bands, 1.4)
    noise = SHALLOW.sky_sigma() * 2.5
    assert [calibration["noise"][b] for b in SHALLOW.bands] == pytest.approx(noise.tolist())


def test_observing_settings_are_checked():
    for values, field in (({"seeing": 0}, "seeing"), ({"noise_scale": -1}, "noise_scale")):
        with pytest.raises(InvalidParameterError, match=field):
            synth_config(**values)
