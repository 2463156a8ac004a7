"""Per-object quality flags shared by the store and the catalog.

One bitmask (int32) travels from ingest through inference into the catalog, so
that a problem found at any stage (a cutout off the image edge, NaN pixels, an
input the model has never seen the like of) stays attached to the object
instead of the object being dropped.
"""

from __future__ import annotations

import enum

import numpy as np

__all__ = ["MEANINGS", "Flag", "count", "describe"]


class Flag(enum.IntFlag):
    """Bits of the ``flags`` column; :data:`MEANINGS` says what each one means.

    Examples
    --------
    >>> int(Flag.OFF_EDGE | Flag.NAN_PIXELS)
    5
    >>> describe(5)
    ['OFF_EDGE', 'NAN_PIXELS']
    """

    OFF_EDGE = 1
    NO_DATA = 2
    NAN_PIXELS = 4
    BAD_PIXELS = 8
    OUT_OF_DISTRIBUTION = 16
    STAR_LIKE = 32
    UNREADABLE = 64
    EMPTY = 128
    SATURATED = 256


#: What each flag means, one line per flag (the report's flag table shows them).
MEANINGS = {
    "OFF_EDGE": "part of the cutout lies outside the source image (NaN pixels there)",
    "NO_DATA": "no pixel in at least one band (outside the image, or no file): no "
               "estimate can be trusted",
    "NAN_PIXELS": "NaN or infinite pixels not explained by an image edge",
    "BAD_PIXELS": "pixels the source marked bad (e.g. a FITS mask plane)",
    "OUT_OF_DISTRIBUTION": "sky, noise or central flux outside the model's training data "
                           "(surveyproc.models.domain): the estimates are extrapolations",
    "STAR_LIKE": "as compact as the PSF at detection: probably a star, not a galaxy",
    "UNREADABLE": "the store's pixels could not be read (a corrupt or lost chunk, listed in "
                  "the run summary): no estimate (NaN)",
    "EMPTY": "every pixel of a band is zero: no signal to measure",
    "SATURATED": "a band's brightest value fills a plateau of pixels (clipped at saturation): "
                 "fluxes are lower limits",
}


def count(values: np.ndarray) -> dict[str, int]:
    """Objects with each flag set, for the flags that occur, lowest bit first.

    Examples
    --------
    >>> count(np.array([0, 1, 5, 16]))
    {'OFF_EDGE': 2, 'NAN_PIXELS': 1, 'OUT_OF_DISTRIBUTION': 1}
    """
    values = np.asarray(values, dtype=np.int64)
    hits = {str(flag.name): int(np.count_nonzero(values & flag)) for flag in Flag}
    return {name: n for name, n in hits.items() if n}


def describe(value: int) -> list[str]:
    """Names of the bits set in ``value``, lowest bit first."""
    return [flag.name for flag in Flag if value & flag and flag.name]
