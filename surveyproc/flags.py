"""Per-object quality flags shared by the store and the catalog.

One bitmask (int32) travels from ingest through inference into the catalog, so
that a problem found at any stage (a cutout off the image edge, NaN pixels, an
input the model has never seen the like of) stays attached to the object
instead of the object being dropped.
"""

from __future__ import annotations

import enum

__all__ = ["MEANINGS", "Flag", "describe"]


class Flag(enum.IntFlag):
    """Bits of the ``flags`` column.

    Examples
    --------
    >>> int(Flag.OFF_EDGE | Flag.NAN_PIXELS)
    5
    >>> describe(5)
    ['OFF_EDGE', 'NAN_PIXELS']
    """

    #: Part of the cutout lies outside the source image; those pixels are NaN.
    OFF_EDGE = 1
    #: No pixel of the cutout in at least one band (outside the image, or no file).
    NO_DATA = 2
    #: The input held NaN or infinite pixels that were not off-edge.
    NAN_PIXELS = 4
    #: The source marked pixels bad (e.g. a FITS mask plane).
    BAD_PIXELS = 8
    #: Inference judged the input out of the training distribution: its sky, noise or
    #: central flux lies outside what the model was trained on (see
    #: :mod:`surveyproc.models.domain`); its estimates are extrapolations.
    OUT_OF_DISTRIBUTION = 16
    #: Detection found the source as compact as the PSF: probably a star, not a galaxy.
    STAR_LIKE = 32


#: One line per flag for people (the report's flag table, ``info``).
MEANINGS = {
    "OFF_EDGE": "part of the cutout lies outside the source image (NaN pixels there)",
    "NO_DATA": "no pixel in at least one band: no estimate can be trusted",
    "NAN_PIXELS": "NaN or infinite pixels not explained by an image edge",
    "BAD_PIXELS": "pixels the source marked bad",
    "OUT_OF_DISTRIBUTION": "sky, noise or central flux outside the model's training data: "
                           "the estimates are extrapolations",
    "STAR_LIKE": "as compact as the PSF at detection: probably a star, not a galaxy",
}


def describe(value: int) -> list[str]:
    """Names of the bits set in ``value``, lowest bit first."""
    return [flag.name for flag in Flag if value & flag and flag.name]
