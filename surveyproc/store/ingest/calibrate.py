"""Raw pixels to the store's calibrated unit: nanomaggies, sky subtracted, noise measured.

Every store holds sky-subtracted nanomaggies (AB zero point 22.5), whatever
the survey: models trained on one store can then be applied to another, and
a checkpoint's training domain can compare like with like.  An input image at
zero point ``zp`` is scaled by ``10 ** (-0.4 * (zp - 22.5))`` (raw DECam counts
at zp 30 become nanomaggies by x 0.001); the local sky of each cutout
(:func:`~surveyproc.models.background.measure_background`) is then subtracted
unless the input says it is sky-subtracted already.  The per-band noise and
sky levels are summarised into the store's ``calibration`` attribute, which
``surveyproc info`` shows.
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from ...errors import IngestError
from ...models.background import measure_background
from ..layout import ZERO_POINT

__all__ = ["BackgroundTally", "Calibration", "resolve_zero_point"]

SKY_METHOD = ("local: 3-sigma-clipped median of the cutout's outer ring (r > 0.4 side), "
              "per object and band")
_NANOMAGGY_UNITS = {"nanomaggy", "nanomaggies", "nmgy"}


def resolve_zero_point(option: float | None, header_zp: float | None, bunit: str | None,
                       where: str) -> float:
    """The input's AB zero point: the option, else the header, else 22.5 when the header's
    BUNIT says nanomaggies; otherwise one line asking for ``--zero-point``."""
    if option is not None:
        return float(option)
    if header_zp is not None:
        return float(header_zp)
    if bunit and bunit.strip().lower() in _NANOMAGGY_UNITS:
        return ZERO_POINT
    msg = (f"{where} gives no zero point (MAGZERO, MAGZP, ... or BUNIT=nanomaggy) in its "
           "header; give --zero-point (the AB magnitude of one pixel unit)")
    raise IngestError(msg)


@dataclass(frozen=True)
class Calibration:
    """How one ingest turns input pixels into store pixels."""

    bands: tuple[str, ...]
    zero_points: dict[str, float]  # of the input pixels
    subtract_sky: bool = True

    def scale(self) -> np.ndarray:
        """Per-band factor from input units to nanomaggies."""
        return np.array([10.0 ** (-0.4 * (self.zero_points[b] - ZERO_POINT))
                         for b in self.bands])

    def apply(self, images: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Calibrated images (n, bands, h, w) float32, with the sky and noise measured on them
        (n, bands, nanomaggies; the sky as it was before subtraction)."""
        scaled = np.asarray(images, dtype=np.float32) * self.scale().astype(np.float32)[
            None, :, None, None]
        background = measure_background(scaled)
        if self.subtract_sky:
            sky = np.nan_to_num(background.sky, nan=0.0).astype(np.float32)
            scaled -= sky[:, :, None, None]
        return scaled, background.sky, background.noise

    def attributes(self, tally: BackgroundTally, psf_fwhm: dict[str, float | None],
                   input_unit: str) -> dict[str, Any]:
        """The store's ``calibration`` attribute."""
        return {"input_unit": input_unit,
                "input_zero_points": {b: float(self.zero_points[b]) for b in self.bands},
                "sky_subtracted": True,
                "sky_method": SKY_METHOD if self.subtract_sky else "subtracted before ingest",
                "sky_before_subtraction": tally.median("sky", self.bands),
                "noise": tally.median("noise", self.bands),
                "psf_fwhm": {b: _number(psf_fwhm.get(b)) for b in self.bands}}


def _number(value: float | None) -> float | None:
    return None if value is None else float(value)


def _nanmedian(rows: np.ndarray) -> np.ndarray:
    """Column medians ignoring NaN; NaN (without a warning) for an all-NaN column."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        return np.nanmedian(rows, axis=0)


@dataclass
class BackgroundTally:
    """Per-band sky and noise medians of each ingested unit, mergeable across workers; the
    store records the median over units (close to the median over objects, at a fraction of
    the memory)."""

    values: dict[str, list[list[float]]] = field(default_factory=dict)

    def add(self, name: str, per_object: np.ndarray) -> None:
        if np.isfinite(per_object).any():
            self.values.setdefault(name, []).append(
                [float(v) for v in _nanmedian(per_object)])

    def merge(self, other: BackgroundTally) -> None:
        for name, rows in other.values.items():
            self.values.setdefault(name, []).extend(rows)

    def median(self, name: str, bands: tuple[str, ...]) -> dict[str, float | None]:
        rows = np.array(self.values.get(name, []), dtype=float)
        if rows.size == 0:
            return dict.fromkeys(bands)
        medians = _nanmedian(rows)
        return {b: (float(m) if np.isfinite(m) else None) for b, m in zip(bands, medians,
                                                                             strict=True)}
