"""The synthetic survey is deterministic and carries the physics it was designed to carry.

Each designed relation is checked on data with known truth, with a tolerance
wide enough for sampling noise at the sizes used here and narrow enough to
fail if the relation were absent or had the wrong sign.
"""

from __future__ import annotations

from dataclasses import replace

import numpy as np
import pytest
from sklearn.neighbors import NearestNeighbors

from surveyproc.errors import InvalidParameterError
from surveyproc.store.synth import SynthConfig, draw_galaxies, generate
from surveyproc.store.synth.scene import draw_neighbours
from surveyproc.store.synth.settings import synth_config

BANDS = ("g", "r", "i", "z")


@pytest.fixture(scope="module")
def catalog():
    """20,000 galaxies without pixels: labels, photometry and the latents behind them."""
    config = SynthConfig(n=20000, size=32, bands=BANDS, seed=11)
    batch = generate(config, 0, config.n, images=False)
    return batch, draw_galaxies(config.seed, 0, config.n)


@pytest.fixture(scope="module")
def imaged():
    """800 galaxies with 32x32 pixels."""
    config = SynthConfig(n=800, size=32, bands=BANDS, seed=5)
    return generate(config, 0, config.n), draw_galaxies(config.seed, 0, config.n)


def _mags(batch):
    flux = np.stack([batch.photometry[b] for b in BANDS], axis=1).astype(float)
    return 22.5 - 2.5 * np.log10(np.clip(flux, 1e-2, None))


def test_same_seed_same_pixels_whatever_the_chunking():
    config = SynthConfig(n=60, size=16, bands=("g", "r"), seed=3)
    whole = generate(config, 0, 60)
    part = generate(config, 17, 41)
    np.testing.assert_array_equal(part.images, whole.images[17:41])
    np.testing.assert_array_equal(part.labels["redshift"], whole.labels["redshift"][17:41])
    np.testing.assert_array_equal(generate(config, 0, 60).images, whole.images)
    other = generate(SynthConfig(n=60, size=16, bands=("g", "r"), seed=4), 0, 60)
    assert not np.allclose(other.images, whole.images)


def test_ranges_are_physical(catalog):
    batch, _ = catalog
    z = batch.labels["redshift"]
    assert z.min() > 0.015 and z.max() <= 0.401
    metallicity = batch.labels["metallicity"]
    measured = metallicity[np.isfinite(metallicity)]
    assert measured.min() > 8.0 and measured.max() < 9.4
    assert 0.5 < np.isfinite(metallicity).mean() < 0.95  # NaN for AGN and weak lines
    r_mag = _mags(batch)[:, 1]
    assert np.median(r_mag) - 4 > 14.0 and np.median(r_mag) < 20.0


def test_metallicity_is_lower_for_edge_on_disks(catalog):
    """The fibre-aperture bias: at fixed mass, edge-on disks show lower metallicity."""
    batch, g = catalog
    ok = np.isfinite(batch.labels["metallicity"]) & (g.bulge_fraction < 0.3)
    z_gas, mass, cos_i = batch.labels["metallicity"][ok], g.log_mstar[ok], g.cos_inclination[ok]
    design = np.c_[np.ones(ok.sum()), mass, mass**2, cos_i]
    coef, *_ = np.linalg.lstsq(design, z_gas, rcond=None)
    assert 0.07 < coef[3] < 0.17  # designed: 0.15 (1 - q) (1 - B/T)
    edge_on, face_on = cos_i < 0.2, cos_i > 0.8
    assert np.median(z_gas[edge_on]) < np.median(z_gas[face_on]) - 0.03


def test_colour_redshift_degeneracy_makes_bimodal_posteriors(catalog):
    """Post-starbursts mimic older galaxies at lower redshift: colour-only p(z) splits in two."""
    batch, g = catalog
    mags = _mags(batch)
    features = np.c_[-np.diff(mags, axis=1), mags[:, 1]]
    features = (features - features.mean(0)) / features.std(0)
    z = batch.labels["redshift"]
    probe = np.flatnonzero(g.quiescent)[:1500]
    _, neighbours = NearestNeighbors(n_neighbors=101).fit(features).kneighbors(features[probe])
    edges = np.linspace(0.0, 0.4, 17)
    separations, bimodal = [], 0
    for row in z[neighbours[:, 1:]]:
        counts, _ = np.histogram(row, bins=edges)
        first = int(np.argmax(counts))
        away = np.abs(np.arange(16) - first) >= 3
        second = int(np.argmax(np.where(away, counts, -1)))
        lo, hi = sorted((first, second))
        if counts[second] >= 15 and counts[lo:hi + 1].min() < 0.5 * counts[second]:
            bimodal += 1
            separations.append((hi - lo) * 0.025 / (1 + edges[lo]))
    assert bimodal / len(probe) > 0.05
    # The two modes sit where the Balmer/4000 A break confusion puts them: dz/(1+z) ~ 0.096.
    assert 0.05 < np.median(separations) < 0.15


def test_colours_redden_and_sizes_shrink_with_redshift(catalog):
    batch, g = catalog
    g_minus_r = -np.diff(_mags(batch)[:, :2], axis=1)[:, 0]
    old = g.quiescent & ~g.post_starburst
    assert np.corrcoef(g_minus_r[old], g.redshift[old])[0, 1] > 0.5
    radius = batch.labels["half_light_radius"]
    assert np.corrcoef(np.log(radius), g.redshift)[0, 1] < -0.3


def test_noise_is_heteroscedastic(imaged, catalog):
    images, _ = imaged
    corners = np.concatenate([images.images[:, 1, :4, :4].reshape(len(images), -1),
                              images.images[:, 1, -4:, -4:].reshape(len(images), -1)], axis=1)
    sky = corners.std(axis=1)
    assert np.percentile(sky, 90) / np.percentile(sky, 10) > 1.5
    batch, _ = catalog
    relative = batch.labels["flux_halpha_err"] / np.abs(batch.labels["flux_halpha"])
    assert np.percentile(relative, 90) / np.percentile(relative, 10) > 5


def _moment_axis_ratio(image: np.ndarray) -> float:
    """Axis ratio from the second moments of the positive flux."""
    weights = np.clip(image, 0, None)
    y, x = np.indices(image.shape)
    total = weights.sum()
    cy, cx = (weights * y).sum() / total, (weights * x).sum() / total
    qyy = (weights * (y - cy) ** 2).sum() / total
    qxx = (weights * (x - cx) ** 2).sum() / total
    qxy = (weights * (x - cx) * (y - cy)).sum() / total
    root = np.sqrt(((qxx - qyy) / 2) ** 2 + qxy**2)
    mean = (qxx + qyy) / 2
    return float(np.sqrt((mean - root) / (mean + root)))


def test_images_carry_a_morphological_signal_photometry_lacks(imaged):
    """Inclination is visible in the pixels and explains metallicity beyond photometry.

    Measured on cutouts without neighbours, whose light would bias plain moments.
    """
    batch, g = imaged
    alone = draw_neighbours(5, 0, 8.4).count[:len(g)] == 0
    batch = replace(batch, images=batch.images[alone], object_id=batch.object_id[alone],
                    ra=batch.ra[alone], dec=batch.dec[alone], flags=batch.flags[alone],
                    labels={k: v[alone] for k, v in batch.labels.items()},
                    photometry={k: v[alone] for k, v in batch.photometry.items()})
    g = g.slice(alone)
    q_image = np.array([_moment_axis_ratio(im[1:3].sum(0)) for im in batch.images])
    disks = (g.bulge_fraction < 0.3) & (batch.labels["half_light_radius"] > 0.8)
    assert np.corrcoef(q_image[disks], g.disk_axis_ratio[disks])[0, 1] > 0.6
    ok = np.isfinite(batch.labels["metallicity"])
    mags = _mags(batch)[ok]
    design = np.c_[np.ones(ok.sum()), mags, -np.diff(mags, axis=1)]
    coef, *_ = np.linalg.lstsq(design, batch.labels["metallicity"][ok], rcond=None)
    residual = batch.labels["metallicity"][ok] - design @ coef
    assert np.corrcoef(residual, q_image[ok])[0, 1] > 0.2


def test_config_rejects_bad_values():
    with pytest.raises(InvalidParameterError, match=r"bands: .*no band"):
        synth_config(n=10, bands=("g", "w"))
    with pytest.raises(InvalidParameterError, match="size: Input should be greater than or "
                                                    "equal to 8"):
        synth_config(n=10, size=4)
    with pytest.raises(ValueError, match="z_max"):  # pydantic's own error, a ValueError
        SynthConfig(n=10, z_max=3.0)
    with pytest.raises(InvalidParameterError, match="outside the survey"):
        generate(SynthConfig(n=10), 5, 11)
