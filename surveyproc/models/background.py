"""Sky level, noise and central flux of cutouts, measured the same way at ingest and inference.

The sky is read from the cutout's outer ring (pixels farther than 40 % of the
side from the centre), where a centred galaxy contributes little; neighbours
and the galaxy's wings are removed by one 3-sigma clip around the median, as
SExtractor-style local backgrounds do.  Noise is measured on differences of
horizontally adjacent ring pixels (clipped MAD standard deviation / sqrt 2),
so the smooth wings of a large galaxy, which widen the ring's own spread,
do not count as noise.  Everything is vectorised over (objects, bands)
with one sort of the ring per quantity (see :func:`_clipped`); ingest
subtracts this sky, and a checkpoint's training domain
(:mod:`surveyproc.models.domain`) compares these numbers.

Measuring costs more than a small network's forward pass (one sort of the
ring per quantity, about 0.2 ms per 4 x 64 x 64 cutout), so a store keeps
each cutout's measures beside its pixels, written once with them
(:data:`MEASURES`, :meth:`CutoutBackground.as_array`), and inference reads
them instead of measuring on every run.  :data:`METHOD` names this way of
measuring: stored measures of another method are not used.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

__all__ = ["MEASURES", "METHOD", "CutoutBackground", "aperture_mask", "measure_background",
           "ring_mask"]

RING_RADIUS = 0.4  # fraction of the side: pixels beyond it are sky
APERTURE_RADIUS = 0.125  # fraction of the side: the central aperture (8 px at 64)
CLIP_SIGMA = 3.0
MAD_TO_SIGMA = 1.4826
#: The measures a store keeps per (object, band), in this order along their second axis
MEASURES = ("sky", "noise", "flux")
#: Names this way of measuring in the stores that keep its measures; change it with any
#: change to the numbers :func:`measure_background` returns
METHOD = f"ring>{RING_RADIUS} clip{CLIP_SIGMA:g} aperture<={APERTURE_RADIUS} v1"


def _radius(height: int, width: int) -> np.ndarray:
    yy, xx = np.mgrid[:height, :width]
    return np.hypot(yy - (height - 1) / 2, xx - (width - 1) / 2)


def ring_mask(height: int, width: int) -> np.ndarray:
    """True for the sky pixels of a ``height x width`` cutout."""
    return _radius(height, width) > RING_RADIUS * min(height, width)


def aperture_mask(height: int, width: int) -> np.ndarray:
    """True for the central-aperture pixels of a ``height x width`` cutout."""
    return _radius(height, width) <= max(1.0, APERTURE_RADIUS * min(height, width))


def _take(ordered: np.ndarray, index: np.ndarray) -> np.ndarray:
    """``ordered[..., index]`` per row, indices clipped into range (their rows unused)."""
    index = np.clip(index, 0, ordered.shape[-1] - 1)
    return np.take_along_axis(ordered, index[..., None], axis=-1)[..., 0]


def _bisect(lo: np.ndarray, hi: np.ndarray,
            passes: Callable[[np.ndarray], np.ndarray]) -> np.ndarray:
    """Per row, the first index in ``[lo, hi)`` that ``passes`` (``hi`` if none), for a
    test that fails and then passes as the index grows: a vectorised binary search."""
    lo, hi = lo.copy(), hi.copy()
    while (active := lo < hi).any():
        mid = (lo + hi) // 2
        ok = passes(mid)
        hi = np.where(active & ok, mid, hi)
        lo = np.where(active & ~ok, mid + 1, lo)
    return lo


def _first(ordered: np.ndarray, lo: np.ndarray, hi: np.ndarray,
           test: Callable[[np.ndarray], np.ndarray]) -> np.ndarray:
    """Per row, the first index in ``[lo, hi)`` whose value passes ``test`` (``hi`` if none),
    for a ``test`` that fails and then passes along the sorted row: log2(pixels) gathers
    instead of a pass over every pixel."""
    return _bisect(lo, hi, lambda mid: test(_take(ordered, mid)))


def _middle(ordered: np.ndarray, start: np.ndarray, count: np.ndarray) -> np.ndarray:
    """Median of ``ordered[..., start:start + count]`` per row (NaN where count is 0)."""
    lo = _take(ordered, start + np.clip((count - 1) // 2, 0, None))
    hi = _take(ordered, start + count // 2)
    return np.where(count > 0, (lo + hi) / 2, np.nan)


def _kth_deviation(ordered: np.ndarray, split: np.ndarray, start: np.ndarray,
                   stop: np.ndarray, centre: np.ndarray, k: np.ndarray) -> np.ndarray:
    """The ``k``-th smallest (0-based) ``|ordered[..., start:stop] - centre|`` per row, where
    ``split`` is the first index of the slice not below ``centre``.

    The deviations of a sorted slice from a point inside it are two sorted runs (below
    the centre, read backwards; above it, forwards), so the k-th smallest is found by a
    binary search over how many come from the run below: about log2(pixels) vectorised
    steps instead of sorting the deviations.
    """
    below, above = split - start, stop - split

    def enough_below(i: np.ndarray) -> np.ndarray:  # the i-th below is not the next smallest
        return ~((centre - _take(ordered, split - 1 - i))
                 < (_take(ordered, split + k - i) - centre))

    lo = _bisect(np.maximum(0, k + 1 - above), np.minimum(k + 1, below), enough_below)
    j = k + 1 - lo
    last_below = np.where(lo > 0, centre - _take(ordered, split - lo), -np.inf)
    last_above = np.where(j > 0, _take(ordered, split + j - 1) - centre, -np.inf)
    return np.maximum(last_below, last_above).astype(ordered.dtype)


def _mad_sigma(ordered: np.ndarray, start: np.ndarray, count: np.ndarray,
               median: np.ndarray) -> np.ndarray:
    """MAD sigma of ``ordered[..., start:start + count]`` around its ``median``."""
    stop = start + count
    centre = np.where(count > 0, median, 0).astype(ordered.dtype)
    split = _first(ordered, start, stop, lambda v: ~(v < centre))
    lo = _kth_deviation(ordered, split, start, stop, centre,
                        np.clip((count - 1) // 2, 0, None))
    hi = _kth_deviation(ordered, split, start, stop, centre, count // 2)
    return np.where(count > 0, MAD_TO_SIGMA * ((lo + hi) / 2), np.nan)


def _clipped(values: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Median and MAD sigma along the last axis (NaN ignored) after one 3-sigma clip.

    One sort per row: the values kept by the clip are a contiguous run of the sorted row,
    so the clipped median is read off it, and both MADs come from
    :func:`_kth_deviation` -- the same numbers as sorting the deviations, four times
    fewer sorts.
    """
    if values.shape[-1] == 0:  # a cutout too small to have a ring: nothing to measure
        nothing = np.full(values.shape[:-1], np.nan, values.dtype)
        return nothing, nothing.copy()
    finite_mask = np.isfinite(values)
    if np.isinf(values).any():  # ignored like NaN (-inf would otherwise sort first)
        values = np.where(finite_mask, values, np.nan)
    ordered = np.sort(values, axis=-1)  # NaN sort last
    finite = finite_mask.sum(axis=-1)
    zero = np.zeros_like(finite)
    median = _middle(ordered, zero, finite)
    sigma = _mad_sigma(ordered, zero, finite, median)
    limit = CLIP_SIGMA * sigma
    with np.errstate(invalid="ignore"):  # the clip's outliers: a prefix and a suffix
        low = _first(ordered, zero, finite,
                     lambda v: ~((v < median) & (np.abs(v - median) > limit)))
        high = finite - _first(ordered, low, finite,
                               lambda v: (v >= median) & (np.abs(v - median) > limit))
    clip = sigma > 0
    start = np.where(clip, low, 0)
    count = np.where(clip, finite - low - high, finite)
    clipped_median = _middle(ordered, start, count)
    return clipped_median, _mad_sigma(ordered, start, count, clipped_median)


@dataclass(frozen=True)
class CutoutBackground:
    """Per (object, band): local sky, noise per pixel, and central-aperture flux above the sky."""

    sky: np.ndarray
    noise: np.ndarray
    flux: np.ndarray
    aperture_pixels: int

    def as_array(self) -> np.ndarray:
        """(n, len(MEASURES), bands) float32, as a store keeps them."""
        return np.stack([self.sky, self.noise, self.flux], axis=1).astype(np.float32)

    @classmethod
    def from_array(cls, measures: np.ndarray, height: int, width: int) -> CutoutBackground:
        """The measures a store kept (:meth:`as_array`) for cutouts of ``height x width``."""
        values = np.asarray(measures, dtype=np.float64)
        return cls(values[:, 0], values[:, 1], values[:, 2],
                   int(aperture_mask(height, width).sum()))


def measure_background(images: np.ndarray) -> CutoutBackground:
    """Sky, noise and aperture flux of ``images`` (n, bands, h, w), in the pixels' unit.

    Rows without a finite sky pixel get NaN (flux above an unknown sky included), as do
    all rows of cutouts too small to have sky pixels (1x1 label-only stores, for one).

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
    # pixels as rows of (object, band), gathered by flat index: contiguous rows sort about
    # three times faster than what boolean indexing of the last two axes returns
    flat = np.asarray(images, dtype=np.float32).reshape(*images.shape[:-2], height * width)
    mask = ring_mask(height, width)
    sky, _ = _clipped(np.take(flat, np.flatnonzero(mask), axis=-1))
    left = np.flatnonzero(np.pad(mask[:, 1:] & mask[:, :-1], ((0, 0), (0, 1))))
    steps = np.take(flat, left + 1, axis=-1) - np.take(flat, left, axis=-1)
    _, step_sigma = _clipped(steps)
    noise = step_sigma / np.sqrt(2.0)
    aperture = aperture_mask(height, width)
    central = np.take(flat, np.flatnonzero(aperture), axis=-1)
    flux = np.nansum(central - sky[..., None], axis=-1)
    flux = np.where(np.isfinite(central).any(axis=-1) & np.isfinite(sky), flux, np.nan)
    return CutoutBackground(sky.astype(np.float64), noise.astype(np.float64),
                            flux.astype(np.float64), int(aperture.sum()))
