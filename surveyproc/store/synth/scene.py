"""What else falls in a cutout: neighbouring galaxies and foreground stars.

Real survey cutouts are rarely alone: companions and stars add image
structure that has nothing to do with the central galaxy's physics.  A
network must learn to look past them, and they add variance to its features
that a target-blind compression (PCA) cannot tell from signal.  Catalogue
labels and photometry stay those of the central galaxy, as in a deblended
catalogue.  Drawn from their own seed stream ``(seed, 4, block)`` so they do
not perturb the galaxies' own parameters.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from .physics import BLOCK, ArrayRecord
from .sed import FILTERS

__all__ = ["MAX_NEIGHBOURS", "Neighbours", "draw_neighbours", "neighbour_band_fluxes"]

MAX_NEIGHBOURS = 3


@dataclass
class Neighbours(ArrayRecord):
    """Up to :data:`MAX_NEIGHBOURS` objects per cutout; arrays are (n, MAX_NEIGHBOURS)."""

    count: np.ndarray  # (n,)
    is_star: np.ndarray
    dx_arcsec: np.ndarray
    dy_arcsec: np.ndarray
    flux_r: np.ndarray  # nanomaggies in a band at 6200 A
    slope: np.ndarray  # f_nu ~ lambda**slope sets the colours
    radius_arcsec: np.ndarray  # half-light radius (galaxies)
    axis_ratio: np.ndarray
    position_angle: np.ndarray


def draw_neighbours(seed: int, block: int, half_field_arcsec: float) -> Neighbours:
    """Neighbours of the :data:`BLOCK` cutouts of parameter block ``block``."""
    rng = np.random.default_rng(np.random.SeedSequence([seed, 4, block]))
    n, m = BLOCK, MAX_NEIGHBOURS
    galaxies = rng.poisson(0.7, n)
    stars = rng.poisson(0.3, n)
    count = np.minimum(galaxies + stars, m)
    slot = np.arange(m)[None, :]
    is_star = slot >= np.minimum(galaxies, m)[:, None]
    radius = rng.uniform(0.35, 1.0, (n, m)) * half_field_arcsec
    angle = rng.uniform(0, 2 * np.pi, (n, m))
    flux = np.where(is_star, 10 ** rng.uniform(0.5, 2.5, (n, m)),
                    10 ** rng.uniform(0.3, 2.3, (n, m)))
    return Neighbours(
        count=count, is_star=is_star,
        dx_arcsec=radius * np.cos(angle), dy_arcsec=radius * np.sin(angle),
        flux_r=flux, slope=np.where(is_star, rng.uniform(-0.5, 3.0, (n, m)),
                                    rng.uniform(0.0, 2.5, (n, m))),
        radius_arcsec=rng.uniform(0.3, 1.5, (n, m)), axis_ratio=rng.uniform(0.3, 1.0, (n, m)),
        position_angle=rng.uniform(0, np.pi, (n, m)),
    )


def neighbour_band_fluxes(neighbours: Neighbours, bands: tuple[str, ...]) -> np.ndarray:
    """(n, MAX_NEIGHBOURS, bands) fluxes in nanomaggies from each object's spectral slope."""
    centre = np.array([(lo + hi) / 2 for lo, hi in (FILTERS[b] for b in bands)])
    return neighbours.flux_r[..., None] * (centre / 6200.0) ** neighbours.slope[..., None]
