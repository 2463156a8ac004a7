"""Sky level, noise and central flux of cutouts, measured the same way at ingest and inference.

The sky is read from the cutout's outer ring (pixels farther than 40 % of the
side from the centre), where a centred galaxy contributes little; neighbours
and the galaxy's wings are removed by one 3-sigma clip around the median, as
SExtractor-style local backgrounds do.  Noise is measured on differences of
horizontally adjacent ring pixels (clipped MAD standard deviation / sqrt 2),
so the smooth wings of a large galaxy, which widen the ring's own spread,
do not count as noise.  Everything is vectorised over (objects, bands)
with NaN-aware sorted medians (four sorts of the ring per batch: about 80 ms
for 256 cutouts of 3 x 48 x 48 on one core, as long as a width-16 network's
forward pass); ingest subtracts this sky, and a checkpoint's training domain
(:mod:`surveyproc.models.domain`) compares these numbers.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

__all__ = ["CutoutBackground", "aperture_mask", "measure_background", "ring_mask"]

RING_RADIUS = 0.4  # fraction of the side: pixels beyond it are sky
APERTURE_RADIUS = 0.125  # fraction of the side: the central aperture (8 px at 64)
CLIP_SIGMA = 3.0
MAD_TO_SIGMA = 1.4826


def _radius(height: int, width: int) -> np.ndarray:
    yy, xx = np.mgrid[:height, :width]
    return np.hypot(yy - (height - 1) / 2, xx - (width - 1) / 2)


def ring_mask(height: int, width: int) -> np.ndarray:
    """True for the sky pixels of a ``height x width`` cutout."""
    return _radius(height, width) > RING_RADIUS * min(height, width)


def aperture_mask(height: int, width: int) -> np.ndarray:
    """True for the central-aperture pixels of a ``height x width`` cutout."""
    return _radius(height, width) <= max(1.0, APERTURE_RADIUS * min(height, width))


def _nanmedian_sorted(values: np.ndarray) -> np.ndarray:
    """Median along the last axis ignoring NaN (NaN where a row has none), via one sort."""
    ordered = np.sort(values, axis=-1)  # NaN sort last
    finite = np.isfinite(values).sum(axis=-1)
    low = np.clip((finite - 1) // 2, 0, None)
    high = np.clip(finite // 2, 0, None)
    lo = np.take_along_axis(ordered, low[..., None], axis=-1)[..., 0]
    hi = np.take_along_axis(ordered, high[..., None], axis=-1)[..., 0]
    return np.where(finite > 0, (lo + hi) / 2, np.nan)


def _median_and_sigma(values: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    median = _nanmedian_sorted(values)
    sigma = MAD_TO_SIGMA * _nanmedian_sorted(np.abs(values - median[..., None]))
    return median, sigma


def _clipped(values: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Median and MAD sigma along the last axis after one 3-sigma clip."""
    median, sigma = _median_and_sigma(values)
    outliers = np.abs(values - median[..., None]) > CLIP_SIGMA * sigma[..., None]
    return _median_and_sigma(np.where(outliers & (sigma[..., None] > 0), np.nan, values))


@dataclass(frozen=True)
class CutoutBackground:
    """Per (object, band): local sky, noise per pixel, and central-aperture flux above the sky."""

    sky: np.ndarray
    noise: np.ndarray
    flux: np.ndarray
    aperture_pixels: int


def measure_background(images: np.ndarray) -> CutoutBackground:
    """Sky, noise and aperture flux of ``images`` (n, bands, h, w), in the pixels' unit.

    Rows without a finite sky pixel get NaN.

    Examples
    --------
    >>> rng = np.random.default_rng(0)
    >>> images = rng.normal(5.0, 0.1, (2, 1, 32, 32))
    >>> images[:, :, 14:18, 14:18] += 10.0  # a source in the centre
    >>> b = measure_background(images)
    >>> np.round(b.sky, 1).tolist(), np.round(b.noise, 1).tolist()
    ([[5.0], [5.0]], [[0.1], [0.1]])
    """
    height, width = images.shape[-2:]
    pixels = np.asarray(images, dtype=np.float32)
    mask = ring_mask(height, width)
    sky, _ = _clipped(pixels[:, :, mask])
    pairs = mask[:, 1:] & mask[:, :-1]
    steps = (pixels[:, :, :, 1:] - pixels[:, :, :, :-1])[:, :, pairs]
    _, step_sigma = _clipped(steps)
    noise = step_sigma / np.sqrt(2.0)
    aperture = aperture_mask(height, width)
    central = pixels[:, :, aperture]
    flux = np.nansum(central - sky[..., None], axis=-1)
    flux = np.where(np.isfinite(central).any(axis=-1), flux, np.nan)
    return CutoutBackground(sky.astype(np.float64), noise.astype(np.float64),
                            flux.astype(np.float64), int(aperture.sum()))
