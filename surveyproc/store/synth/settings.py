"""The one description of a synthetic survey, shared by ``surveyproc synth`` and job files.

A pydantic model, so a job file's ``store.synth`` section and the command
line's options have the same defaults, ranges and error messages.
"""

from __future__ import annotations

from typing import Any, Literal

import numpy as np
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from ...errors import InvalidParameterError
from ..layout import DEFAULT_COMPRESSION
from .physics import MEDIAN_SEEING
from .sed import check_bands

__all__ = ["FIELD_OF_VIEW", "SynthConfig", "synth_config"]

FIELD_OF_VIEW = 16.8  # arcsec: cutout side; the default pixel scale is FIELD_OF_VIEW / size


class SynthConfig(BaseModel):
    """What a synthetic survey looks like, and how its store is laid out.

    The same seed gives the same galaxies, pixel for pixel.  The default
    pixel scale is ``16.8 / size`` so every size sees the same 16.8" field
    (0.262"/pixel, Legacy Survey, at 64 pixels).
    """

    model_config = ConfigDict(extra="forbid", frozen=True)

    n: int = Field(2000, ge=1, description="Number of galaxies.")
    size: int = Field(64, ge=8, le=512, description="Cutout side in pixels.")
    bands: tuple[str, ...] = Field(("g", "r", "i", "z"), description="Bands to draw, from "
                                   "u g r i z y.")
    seed: int = Field(0, description="Survey seed; same seed, same pixels.")
    pixel_scale: float | None = Field(None, gt=0, description="Arcsec per pixel "
                                      "(default 16.8 / size).")
    z_max: float = Field(0.4, ge=0.05, le=1.5, description="Largest redshift.")
    sky_noise: dict[str, float] | None = Field(
        None, description="Median sky noise per pixel and band, nanomaggies, e.g. "
        "g=0.0074,r=0.0089 to match a real store (default: Legacy-Survey-like depths for "
        "the pixel scale).")
    seeing: float | None = Field(None, gt=0, le=5, description="Median PSF FWHM, arcsec "
                                 "(default 1.2); each galaxy's seeing scatters 0.75-1.25x "
                                 "around it.")
    noise_scale: float = Field(1.0, gt=0, le=100, description="Multiplies every noise term "
                               "(sky and source, pixels and photometry): 2 is a survey about "
                               "0.75 mag shallower, 0.5 one deeper.")
    noise_seed: int | None = Field(None, description="Seed of the observation noise (pixels, "
                                   "photometry; default: the survey seed). One seed with two "
                                   "noise seeds: the same galaxies seen twice, independently.")
    chunk: int = Field(256, ge=1, description="Objects per chunk.")
    shard_chunks: int | None = Field(None, ge=1, description="Chunks per Zarr shard.")
    compression: Literal["zstd", "blosc", "none"] = DEFAULT_COMPRESSION
    dtype: Literal["float32", "float16"] = "float32"

    @field_validator("bands")
    @classmethod
    def _known_bands(cls, bands: tuple[str, ...]) -> tuple[str, ...]:
        try:
            check_bands(bands)
        except InvalidParameterError as error:
            raise ValueError(str(error)) from None
        return bands

    @model_validator(mode="after")
    def _noise_for_every_band(self) -> SynthConfig:
        if self.sky_noise is not None:
            missing = [b for b in self.bands if b not in self.sky_noise]
            if missing or any(v <= 0 for v in self.sky_noise.values()):
                msg = (f"sky_noise needs a positive value for every band {list(self.bands)} "
                       f"(missing: {missing})")
                raise ValueError(msg)
        return self

    @property
    def arcsec_per_pixel(self) -> float:
        return self.pixel_scale or FIELD_OF_VIEW / self.size

    @property
    def median_seeing(self) -> float:
        """Median PSF FWHM of the survey, arcsec."""
        return self.seeing or MEDIAN_SEEING

    @property
    def observation_seed(self) -> int:
        """The seed of the noise streams (pixels and photometry)."""
        return self.seed if self.noise_seed is None else self.noise_seed

    def sky_sigma(self) -> np.ndarray:
        """Median sky noise per pixel of each band, nanomaggies, before ``noise_scale``."""
        if self.sky_noise is not None:
            return np.array([self.sky_noise[b] for b in self.bands], dtype=float)
        from .render import sky_sigma  # here: GalSim loads only where a survey is drawn

        return sky_sigma(self.bands, self.arcsec_per_pixel)


def synth_config(**values: Any) -> SynthConfig:
    """:class:`SynthConfig` from keyword values, with a bad value as one
    :class:`InvalidParameterError` line naming the field (for the command line).

    Examples
    --------
    >>> synth_config(n=0)
    Traceback (most recent call last):
    ...
    surveyproc.errors.InvalidParameterError: n: Input should be greater than or equal to 1 (got 0)
    """
    try:
        return SynthConfig(**values)
    except ValidationError as error:
        first = error.errors()[0]
        key = ".".join(str(p) for p in first["loc"]) or "synth"
        message = first["msg"].removeprefix("Value error, ")
        msg = f"{key}: {message} (got {first.get('input')!r})"
        raise InvalidParameterError(msg) from None
