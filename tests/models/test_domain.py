"""The training domain: held-out galaxies pass, raw counts and other noise are flagged, and a
store in other units, with the sky in, or at another pixel scale is refused."""

from __future__ import annotations

import numpy as np
import pytest

from surveyproc.errors import CheckpointMismatchError
from surveyproc.models.domain import TrainingDomain
from surveyproc.store.synth import SynthConfig, synthesize

N_TRAIN, N_HELD_OUT = 900, 600


@pytest.fixture(scope="module")
def synthetic():
    store = synthesize("memory://domain/s.zarr", SynthConfig(n=N_TRAIN + N_HELD_OUT, size=24,
                                                              bands=("g", "r", "z"), seed=5),
                       parallel=False)
    images = store.read(0, store.n_objects, labels=False, photometry=False).images
    domain = TrainingDomain.fit(images[:N_TRAIN], store.bands, store.attrs)
    return store, images[N_TRAIN:], domain


def test_held_out_galaxies_of_the_same_survey_are_rarely_flagged(synthetic):
    _, held_out, domain = synthetic
    flagged, _ = domain.outside(held_out)
    assert flagged.mean() < 0.03


def test_raw_counts_with_the_sky_left_in_are_flagged(synthetic):
    _, held_out, domain = synthetic
    counts = held_out * 1000.0 + 60.0  # zero point 30 counts on a 60-count sky
    flagged, reasons = domain.outside(counts)
    assert flagged.mean() > 0.99
    assert {"noise g", "sky g"} <= set(reasons)


def test_ten_times_the_noise_is_flagged_and_a_fifth_of_it_in_sky_is_not(synthetic):
    # the synthetic survey's depth varies by 0.6 dex (2.6 sigma) between galaxies: a
    # factor 10 lies beyond it
    _, held_out, domain = synthetic
    noise = np.asarray(domain.noise)[None, :, None, None]
    rng = np.random.default_rng(0)
    noisier = held_out + rng.normal(0.0, 1.0, held_out.shape) * noise * np.sqrt(99.0)
    assert domain.outside(noisier)[0].mean() > 0.9
    assert domain.outside(held_out + 0.2 * noise)[0].mean() < 0.05


def test_a_store_in_other_units_with_the_sky_in_or_another_pixel_scale_is_refused(synthetic):
    store, _, domain = synthetic
    attrs = dict(store.attrs)
    assert domain.check_store(attrs, "store s", "m", 0.02) == []
    with pytest.raises(CheckpointMismatchError, match="holds pixels in 'count' but model m"):
        domain.check_store({**attrs, "flux_unit": "count"}, "store s", "m", 0.02)
    with pytest.raises(CheckpointMismatchError, match=r"0\.35 arcsec/pixel but model m was "
                       r"trained at 0\.7"):
        domain.check_store({**attrs, "pixel_scale": 0.35}, "store s", "m", 0.02)
    assert domain.check_store({**attrs, "pixel_scale": attrs["pixel_scale"] * 1.01},
                              "store s", "m", 0.02) == []
    with pytest.raises(CheckpointMismatchError, match="still holds the sky"):
        domain.check_store({**attrs, "calibration": {**attrs["calibration"],
                                                     "sky_subtracted": False}},
                           "store s", "m", 0.02)
    noisy = {**attrs["calibration"], "noise": {b: 3 * v for b, v in
                                               attrs["calibration"]["noise"].items()}}
    warnings = domain.check_store({**attrs, "calibration": noisy}, "store s", "m", 0.02)
    assert len(warnings) == 3 and "g-band noise" in warnings[0]
    assert "no calibration record" in domain.check_store(
        {k: v for k, v in attrs.items() if k != "calibration"}, "store s", "m", 0.02)[0]


def test_the_domain_survives_a_round_trip_through_a_dict(synthetic):
    _, held_out, domain = synthetic
    again = TrainingDomain.from_dict(domain.to_dict())
    np.testing.assert_array_equal(again.outside(held_out * 5)[0], domain.outside(held_out * 5)[0])


@pytest.fixture(scope="module")
def photometric(synthetic):
    store, _, _ = synthetic
    photometry = store.read(0, store.n_objects, labels=False, images=False).photometry
    fluxes = np.stack([photometry[b] for b in store.bands], axis=1)
    domain = TrainingDomain.of_photometry(store.bands, store.attrs, fluxes[:N_TRAIN])
    held_out = {b: fluxes[N_TRAIN:, j] for j, b in enumerate(store.bands)}
    return domain, held_out


def test_a_photometry_model_flags_magnitudes_and_colours_it_never_saw(photometric):
    domain, held_out = photometric
    flagged, _ = domain.outside_photometry(held_out)
    assert flagged.mean() < 0.03
    # the same galaxies 8 magnitudes fainter (the training sample spans about 13-21.5 mag):
    # fainter than any in training
    flagged, reasons = domain.outside_photometry({b: f / 10 ** 3.2 for b, f in held_out.items()})
    assert flagged.mean() > 0.95 and "magnitude r" in reasons
    # 2.5 magnitudes bluer in g alone: the colour g-r leaves the domain
    bluer = {**held_out, "g": held_out["g"] * 10.0}
    flagged, reasons = domain.outside_photometry(bluer)
    assert flagged.mean() > 0.9 and "colour g-r" in reasons and "colour r-z" not in reasons
    # a band without a flux is not judged
    missing = {**held_out, "g": np.full_like(held_out["g"], np.nan)}
    assert domain.outside_photometry(missing)[0].mean() < 0.03
    # the domain round-trips through the checkpoint's dict
    again = TrainingDomain.from_dict(domain.to_dict())
    np.testing.assert_array_equal(again.outside_photometry(bluer)[0], flagged)


def test_the_models_zero_point_is_the_stores():
    from surveyproc.models.inputs import ZERO_POINT
    from surveyproc.store.layout import ZERO_POINT as STORE_ZERO_POINT

    assert ZERO_POINT == STORE_ZERO_POINT
