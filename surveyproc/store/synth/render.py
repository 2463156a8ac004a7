"""Draw the synthetic cutouts with GalSim: bulge + disk (+ AGN point source), PSF, noise.

A bulge is a de Vaucouleurs (Sersic n=4) profile, a disk an exponential
(n=1) profile inclined to axis ratio q; each is drawn once at unit flux,
convolved with the object's Moffat PSF, and the band images are linear
combinations with the component's flux in that band.  Neighbouring galaxies
and stars (:mod:`.scene`) are added the same way.  This is exact for
profiles whose shape does not change with wavelength, and costs two
GalSim draws per galaxy instead of two per band.  Noise is Gaussian sky noise
plus source shot noise, both scaled by the object's observing depth, so the
noise level differs from galaxy to galaxy (heteroscedastic).
"""

from __future__ import annotations

import galsim
import numpy as np

from .physics import Galaxies, kpc_per_arcsec
from .scene import Neighbours, neighbour_band_fluxes
from .sed import BandFluxes

__all__ = ["SKY_SIGMA", "component_radii_pixels", "render_cutouts"]

#: Sky noise per 0.262" pixel, nanomaggies (Legacy-Survey-like depths); scaled by pixel size.
SKY_SIGMA = {"u": 0.030, "g": 0.010, "r": 0.014, "i": 0.020, "z": 0.030, "y": 0.045}
_REFERENCE_PIXEL = 0.262  # arcsec
GAIN = 300.0  # detected photons per nanomaggy: sets the source shot noise
_MOFFAT_BETA = 3.5
_GSPARAMS = galsim.GSParams(folding_threshold=5e-3, maxk_threshold=2e-3)


def component_radii_pixels(g: Galaxies, pixel_scale: float, size: int) -> tuple[np.ndarray, ...]:
    """Disk and bulge half-light radii in pixels, capped so the galaxy fits the cutout."""
    scale = kpc_per_arcsec(g.redshift) * pixel_scale
    cap = size / 4.0
    disk = np.clip(g.disk_radius_kpc / scale, 0.3, cap)
    bulge = np.clip(g.bulge_radius_kpc / scale, 0.2, cap)
    return disk, bulge


def _neighbour(neighbours: Neighbours, k: int, j: int, psf: galsim.GSObject,
               pixel_scale: float, canvas: galsim.ImageF) -> np.ndarray:
    """Unit-flux image of neighbour ``j`` of cutout ``k`` (a star, or an exponential disk)."""
    offset = (neighbours.dx_arcsec[k, j] / pixel_scale, neighbours.dy_arcsec[k, j] / pixel_scale)
    if neighbours.is_star[k, j]:
        profile: galsim.GSObject = psf
    else:
        disk = galsim.Exponential(half_light_radius=neighbours.radius_arcsec[k, j] / pixel_scale,
                                  gsparams=_GSPARAMS)
        disk = disk.shear(q=neighbours.axis_ratio[k, j],
                          beta=float(neighbours.position_angle[k, j]) * galsim.radians)
        profile = galsim.Convolve(disk, psf)
    return profile.drawImage(image=canvas, offset=offset).array.copy()


def sky_sigma(bands: tuple[str, ...], pixel_scale: float) -> np.ndarray:
    """Per-band sky noise per pixel for this pixel scale (noise grows with pixel side)."""
    return np.array([SKY_SIGMA[b] for b in bands]) * (pixel_scale / _REFERENCE_PIXEL)


def render_cutouts(
    g: Galaxies,
    fluxes: BandFluxes,
    neighbours: Neighbours,
    *,
    bands: tuple[str, ...],
    size: int,
    pixel_scale: float,
    sigma_sky: np.ndarray,
    first_index: int,
    seed: int,
) -> np.ndarray:
    """Noisy cutouts, shape (n, bands, size, size), float32 nanomaggies per pixel, with
    median sky noise ``sigma_sky`` per band (times each galaxy's depth multiplier).

    Object ``first_index + k`` draws its noise from seed ``(seed, 1, index)``,
    so an object's pixels do not depend on which worker draws it.
    """
    n = len(g)
    out = np.empty((n, len(bands), size, size), dtype=np.float32)
    disk_r, bulge_r = component_radii_pixels(g, pixel_scale, size)
    fwhm = g.seeing_arcsec / pixel_scale
    canvas = galsim.ImageF(size, size, scale=1.0)
    neighbour_flux = neighbour_band_fluxes(neighbours, bands)
    for k in range(n):
        psf = galsim.Moffat(beta=_MOFFAT_BETA, fwhm=fwhm[k], gsparams=_GSPARAMS)
        angle = float(g.position_angle[k]) * galsim.radians
        disk = galsim.Exponential(half_light_radius=disk_r[k], gsparams=_GSPARAMS)
        disk = disk.shear(q=g.disk_axis_ratio[k], beta=angle)
        bulge = galsim.DeVaucouleurs(half_light_radius=bulge_r[k], gsparams=_GSPARAMS)
        bulge = bulge.shear(q=g.bulge_axis_ratio[k], beta=angle)
        disk_img = galsim.Convolve(disk, psf).drawImage(image=canvas).array.copy()
        bulge_img = galsim.Convolve(bulge, psf).drawImage(image=canvas).array.copy()
        model = (fluxes.disk[k][:, None, None] * disk_img
                 + fluxes.bulge[k][:, None, None] * bulge_img)
        if fluxes.nucleus[k].any():
            point = psf.drawImage(image=canvas).array
            model += fluxes.nucleus[k][:, None, None] * point
        for j in range(int(neighbours.count[k])):
            model += neighbour_flux[k, j][:, None, None] * _neighbour(neighbours, k, j, psf,
                                                                      pixel_scale, canvas)
        rng = np.random.default_rng(np.random.SeedSequence([seed, 1, first_index + k]))
        variance = g.depth[k] ** 2 * (sigma_sky[:, None, None] ** 2 + np.maximum(model, 0.0) / GAIN)
        out[k] = model + np.sqrt(variance) * rng.standard_normal(model.shape)
    return out
