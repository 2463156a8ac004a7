"""What a model was trained on, and whether a store, or one object, lies inside it.

A network trained on sky-subtracted nanomaggies at 0.262"/pixel returns
confident nonsense for raw counts with the sky left in, or for pixels a third
larger; nothing in its outputs says so.  The checkpoint therefore records its
training domain:

- the store-level facts: flux unit, pixel scale, whether the sky was
  subtracted, the PSF FWHM and median noise per band.  ``infer`` refuses a
  store whose unit, sky state or pixel scale differ (one line, before Ray
  starts) and warns when a band's noise differs by more than a factor 2;
- per object, three numbers per band measured like ingest measures them
  (:mod:`surveyproc.models.background`): log10 of the noise, the residual sky
  in units of the training noise, and asinh of the central-aperture S/N.
  Their central 99 % intervals over the training sample, widened by a
  quarter of their width on each side, are the domain; an object with any
  number outside is flagged ``OUT_OF_DISTRIBUTION`` (its estimates are kept:
  the flag says they are extrapolations).  Fewer than 3 % of held-out
  synthetic galaxies are flagged (tests/models/test_domain.py).

A model that reads a store's photometry alone has no pixels to measure: its domain
is the flux unit, and per object each band's AB magnitude and each adjacent colour,
with intervals found the same way (quantiles, widened).  A galaxy fainter, brighter or
redder than anything in training (a deeper survey's faint end, a quasar among galaxies)
is flagged ``OUT_OF_DISTRIBUTION``; a band without a positive flux is not judged.
"""

from __future__ import annotations

import itertools
import warnings
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np

from ..errors import CheckpointMismatchError
from .background import CutoutBackground, measure_background
from .inputs import ZERO_POINT

__all__ = ["TrainingDomain", "photometric_features"]

FEATURES = ("noise", "sky", "flux")
#: The per-object numbers of a photometry model's domain: AB magnitudes per band, colours
#: per adjacent pair of bands.
PHOTOMETRIC_FEATURES = ("magnitude", "colour")
QUANTILES = (0.005, 0.995)
MARGIN = 0.25  # of an interval's width, added on each side
MIN_WIDTH = {"noise": 0.05, "sky": 0.5, "flux": 0.5,  # dex, noise units, asinh units
             "magnitude": 0.5, "colour": 0.2}  # mag
NOISE_RATIO_WARNING = 2.0


@dataclass(frozen=True)
class TrainingDomain:
    """The inputs a model was trained on (see the module docstring)."""

    bands: list[str]
    flux_unit: str
    pixel_scale: float
    sky_subtracted: bool | None
    psf_fwhm: dict[str, float | None]
    noise: list[float]  # median per band of the training sample, in flux_unit per pixel
    intervals: dict[str, list[list[float]]]  # feature -> per band [lo, hi] (widened)
    n_sample: int
    #: "images", or "photometry" for a model that reads a store's photometry: its domain
    #: is the flux unit alone (no pixels, so no per-object pixel checks)
    source: str = "images"

    # -- fitting and storing ----------------------------------------------------------------

    @classmethod
    def fit(cls, images: np.ndarray, bands: list[str] | tuple[str, ...],
            attrs: dict[str, Any]) -> TrainingDomain:
        """The domain of a sample of raw training cutouts from a store with ``attrs``."""
        background = measure_background(images)
        noise = np.nanmedian(background.noise, axis=0)
        noise = np.where(np.isfinite(noise) & (noise > 0), noise, 1.0)
        calibration = attrs.get("calibration") or {}
        domain = cls(list(bands), str(attrs.get("flux_unit", "unknown")),
                     float(attrs.get("pixel_scale", 0.0)), calibration.get("sky_subtracted"),
                     dict(calibration.get("psf_fwhm") or {}), [float(v) for v in noise], {},
                     len(images))
        values = domain.features(images, background)
        domain.intervals.update({name: _interval(values[name], name) for name in FEATURES})
        return domain

    @classmethod
    def of_photometry(cls, bands: list[str] | tuple[str, ...], attrs: dict[str, Any],
                      fluxes: np.ndarray) -> TrainingDomain:
        """The domain of a model trained on a store's photometry: its flux unit, and the
        magnitudes and colours of ``fluxes`` (n, bands), the training sample's."""
        domain = cls(list(bands), str(attrs.get("flux_unit", "unknown")), 0.0, None, {},
                     [0.0] * len(bands), {}, len(fluxes), "photometry")
        values = photometric_features(fluxes)
        domain.intervals.update({name: _interval(values[name], name)
                                 for name in PHOTOMETRIC_FEATURES})
        return domain

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, values: dict[str, Any]) -> TrainingDomain:
        return cls(**values)

    # -- objects ----------------------------------------------------------------------------

    def features(self, images: np.ndarray, background: CutoutBackground | None = None
                 ) -> dict[str, np.ndarray]:
        """The per-object numbers (n, bands) compared with the intervals (``background``:
        :func:`measure_background` of ``images``, when the caller has it already)."""
        b = background if background is not None else measure_background(images)
        ref = np.asarray(self.noise)[None, :]
        with np.errstate(divide="ignore", invalid="ignore"):
            return {"noise": np.log10(b.noise), "sky": b.sky / ref,
                    "flux": np.arcsinh(b.flux / (ref * np.sqrt(b.aperture_pixels)))}

    def outside(self, images: np.ndarray, background: CutoutBackground | None = None
                ) -> tuple[np.ndarray, dict[str, int]]:
        """Objects outside the domain (n,) and how many fall outside each (number, band).

        Unmeasurable objects (no pixels) are not flagged here: their store flags say why.
        """
        values = self.features(images, background)
        return self._beyond(values, {name: list(self.bands) for name in FEATURES}, len(images))

    def outside_photometry(self, photometry: dict[str, np.ndarray]
                           ) -> tuple[np.ndarray, dict[str, int]]:
        """Objects whose magnitudes or colours (``photometry``: band -> flux) leave a
        photometry model's domain, and how many per (number, band or colour); nothing for
        a domain without intervals (checkpoints from before they were kept)."""
        n = len(next(iter(photometry.values()))) if photometry else 0
        if not self.intervals or any(b not in photometry for b in self.bands):
            return np.zeros(n, dtype=bool), {}
        values = photometric_features(np.stack([photometry[b] for b in self.bands], axis=1))
        names = {"magnitude": list(self.bands),
                 "colour": [f"{a}-{b}" for a, b in itertools.pairwise(self.bands)]}
        return self._beyond(values, names, n)

    def _beyond(self, values: dict[str, np.ndarray], columns: dict[str, list[str]], n: int
                ) -> tuple[np.ndarray, dict[str, int]]:
        """Objects with any number (``values``: name -> (n, columns)) outside its interval,
        and how many per ``<name> <column>`` (``columns``: each number's column names)."""
        out = np.zeros(n, dtype=bool)
        reasons: dict[str, int] = {}
        for name, labels in columns.items():
            bounds = np.asarray(self.intervals[name]).reshape(-1, 2)
            with np.errstate(invalid="ignore"):
                beyond = (values[name] < bounds[:, 0]) | (values[name] > bounds[:, 1])
            for j, label in enumerate(labels):
                hits = int(beyond[:, j].sum())
                if hits:
                    reasons[f"{name} {label}"] = hits
            out |= beyond.any(axis=1)
        return out, reasons

    # -- stores -----------------------------------------------------------------------------

    def check_store(self, attrs: dict[str, Any], where: str, model: str,
                    pixel_scale_tolerance: float) -> list[str]:
        """Refuse a store the model cannot be applied to; return warnings for lesser
        differences.

        Raises
        ------
        CheckpointMismatchError
            Different flux unit, sky not subtracted where training's was, or a pixel
            scale further than ``pixel_scale_tolerance`` (relative) from training's.
        """
        unit = str(attrs.get("flux_unit", "unknown"))
        if unit != self.flux_unit:
            msg = (f"{where} holds pixels in {unit!r} but model {model} was trained on "
                   f"{self.flux_unit!r}; ingest it calibrated (surveyproc ingest ... "
                   "--zero-point ZP converts to nanomaggies)")
            raise CheckpointMismatchError(msg)
        if self.source == "photometry":
            return []
        scale = float(attrs.get("pixel_scale", 0.0))
        if self.pixel_scale > 0 and abs(scale / self.pixel_scale - 1) > pixel_scale_tolerance:
            msg = (f"{where} has {scale:.4g} arcsec/pixel but model {model} was trained at "
                   f"{self.pixel_scale:.4g} ({abs(scale / self.pixel_scale - 1):.0%} apart, "
                   f"tolerance {pixel_scale_tolerance:.0%}); train on a synthetic survey at "
                   "the store's scale (surveyproc synth --like STORE) or raise "
                   "infer.pixel_scale_tolerance")
            raise CheckpointMismatchError(msg)
        calibration = attrs.get("calibration")
        if not calibration:
            return [f"{where} has no calibration record (sky, noise, PSF unknown); only "
                    "per-object checks apply"]
        if self.sky_subtracted and calibration.get("sky_subtracted") is False:
            msg = (f"{where} still holds the sky but model {model} was trained on "
                   "sky-subtracted pixels; ingest it again without --sky-subtracted")
            raise CheckpointMismatchError(msg)
        notes = []
        store_noise = calibration.get("noise") or {}
        for band, trained in zip(self.bands, self.noise, strict=True):
            value = store_noise.get(band)
            if value and trained and not (1 / NOISE_RATIO_WARNING <= value / trained
                                          <= NOISE_RATIO_WARNING):
                notes.append(f"{where}: {band}-band noise {value:.3g} is {value / trained:.2g}"
                                f" x the {trained:.3g} model {model} was trained on; expect "
                                "OUT_OF_DISTRIBUTION flags")
        return notes


def photometric_features(fluxes: np.ndarray) -> dict[str, np.ndarray]:
    """AB magnitudes (n, bands) of nanomaggy ``fluxes`` and adjacent colours (n, bands - 1);
    NaN where a flux is not positive.

    >>> values = photometric_features(np.array([[1.0, 10.0], [-1.0, 10.0]]))
    >>> values["magnitude"].round(2).tolist(), values["colour"].round(2).tolist()
    ([[22.5, 20.0], [nan, 20.0]], [[2.5], [nan]])
    """
    fluxes = np.asarray(fluxes, dtype=np.float64)
    with np.errstate(divide="ignore", invalid="ignore"):
        mags = np.where(fluxes > 0, ZERO_POINT - 2.5 * np.log10(fluxes), np.nan)
    return {"magnitude": mags, "colour": mags[:, :-1] - mags[:, 1:]}


def _interval(values: np.ndarray, name: str) -> list[list[float]]:
    """Per column of ``values`` (n, columns): the central 99 % interval, widened by
    :data:`MARGIN` of its width (at least :data:`MIN_WIDTH`) each side; unbounded for a
    column without one finite value."""
    finite = np.where(np.isfinite(values), values, np.nan)
    with warnings.catch_warnings():  # a band without one measurable object: no limit
        warnings.simplefilter("ignore", RuntimeWarning)
        lo, hi = np.nanquantile(finite, QUANTILES, axis=0)
    width = np.maximum(hi - lo, MIN_WIDTH[name])
    lo = np.where(np.isfinite(lo), lo - MARGIN * width, -np.inf)
    hi = np.where(np.isfinite(hi), hi + MARGIN * width, np.inf)
    return [[float(a), float(b)] for a, b in zip(np.atleast_1d(lo), np.atleast_1d(hi),
                                                    strict=True)]
