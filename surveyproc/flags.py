"""Per-object quality flags shared by the store and the catalog.

One bitmask (int32) travels from ingest through inference into the catalog, so
that a problem found at any stage (a cutout off the image edge, NaN pixels, an
input the model has never seen the like of) stays attached to the object
instead of the object being dropped.
"""

from __future__ import annotations

import enum

__all__ = ["Flag", "describe"]


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
    #: Inference judged the input out of the training distribution.
    OUT_OF_DISTRIBUTION = 16


def describe(value: int) -> list[str]:
    """Names of the bits set in ``value``, lowest bit first."""
    return [flag.name for flag in Flag if value & flag and flag.name]
