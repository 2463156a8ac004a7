"""The background measurement (sky, noise, aperture flux) against its definition written
plainly with NumPy's NaN-aware medians: the one-sort algorithm must give the same numbers."""

from __future__ import annotations

import numpy as np

from surveyproc.models.background import (
    CLIP_SIGMA,
    MAD_TO_SIGMA,
    aperture_mask,
    measure_background,
    ring_mask,
)


def _clipped_by_definition(values: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Median and MAD sigma after one 3-sigma clip, NaN and infinities ignored."""
    values = np.where(np.isfinite(values), values, np.nan)

    def median_and_sigma(v):
        with np.errstate(all="ignore"):
            import warnings

            with warnings.catch_warnings():
                warnings.simplefilter("ignore", RuntimeWarning)  # all-NaN rows
                median = np.nanmedian(v, axis=-1)
                sigma = MAD_TO_SIGMA * np.nanmedian(np.abs(v - median[..., None]), axis=-1)
        return median, sigma

    median, sigma = median_and_sigma(values)
    with np.errstate(invalid="ignore"):
        outliers = (np.abs(values - median[..., None]) > CLIP_SIGMA * sigma[..., None]) & (
            sigma[..., None] > 0)
    return median_and_sigma(np.where(outliers, np.nan, values))


def _images() -> np.ndarray:
    rng = np.random.default_rng(7)
    images = rng.normal(2.0, 0.1, (120, 3, 24, 24)).astype(np.float32)
    images[:, :, 8:16, 8:16] += rng.exponential(2.0, (120, 3, 8, 8)).astype(np.float32)
    images[10:30, :, :, :5] = np.nan          # off the image edge
    images[30:35] = np.nan                    # no data at all
    images[35:40] = 0.0                       # flat: sigma 0, nothing clipped
    images[40:50, 1, :3, :] += 30.0           # a bright neighbour on the ring
    images[50:55, 2, 0, 0] = np.inf           # infinities count as missing
    images[55:60, 0, -1, -1] = -np.inf
    images[60:70, :, ::2, ::2] = 2.0          # many ties at one value
    return images


def test_sky_noise_and_flux_match_the_definition():
    images = _images()
    got = measure_background(images)
    flat = images.reshape(len(images), 3, -1)
    ring = ring_mask(24, 24).ravel()
    sky, _ = _clipped_by_definition(flat[:, :, ring])
    pairs = (ring_mask(24, 24)[:, 1:] & ring_mask(24, 24)[:, :-1])
    steps = (images[..., 1:] - images[..., :-1])[:, :, pairs]
    _, step_sigma = _clipped_by_definition(steps)
    central = flat[:, :, aperture_mask(24, 24).ravel()]
    with np.errstate(invalid="ignore"):
        flux = np.where(np.isfinite(central).any(axis=-1) & np.isfinite(sky),
                        np.nansum(central - sky[..., None], axis=-1), np.nan)
    np.testing.assert_allclose(got.sky, sky, rtol=1e-6, atol=1e-7)
    np.testing.assert_allclose(got.noise, step_sigma / np.sqrt(2.0), rtol=1e-6, atol=1e-7)
    np.testing.assert_allclose(got.flux, flux, rtol=1e-5, atol=1e-5)
    assert np.isnan(got.sky[30:35]).all() and (got.noise[35:40] == 0).all()
    assert np.isfinite(got.sky[50:60]).all()  # one infinite pixel does not spoil the sky


def test_cutouts_too_small_for_a_sky_ring_measure_nan_without_failing():
    """1x1 and 2x2 cutouts (label-only stores) have no ring pixels: their sky and noise
    are unknown, and the flux above an unknown sky is too."""
    for size in (1, 2):
        images = np.ones((4, 2, size, size), np.float32)
        got = measure_background(images)
        assert got.sky.shape == (4, 2) and np.isnan(got.sky).all()
        assert np.isnan(got.noise).all() and np.isnan(got.flux).all()
