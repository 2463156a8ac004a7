"""Spectra of the synthetic galaxies: stellar continua, dust, emission lines and band fluxes.

Each galaxy has two stellar components (an old bulge and a disk mixing young
and old light), an optional AGN nucleus and four nebular lines.  Their
rest-frame spectra are redshifted through top-hat filters, so colours change
with redshift as the 4000 A break and the lines move between bands; dust
reddens colours the same way, which is what makes some colour-only redshift
posteriors bimodal.  Fluxes are in nanomaggies (AB zero point 22.5), line
fluxes in 1e-17 erg/s/cm^2 as in SDSS spectroscopic catalogues.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ...errors import InvalidParameterError
from .physics import Galaxies, luminosity_distance_cm

__all__ = ["FILTERS", "LINES", "BandFluxes", "band_fluxes", "emission_lines"]

#: Top-hat approximations of SDSS/DECam/HSC filters: (blue edge, red edge) in Angstrom.
FILTERS: dict[str, tuple[float, float]] = {
    "u": (3200.0, 4000.0),
    "g": (4000.0, 5500.0),
    "r": (5600.0, 6950.0),
    "i": (6950.0, 8400.0),
    "z": (8450.0, 10000.0),
    "y": (9400.0, 10600.0),
}
#: Rest wavelengths (Angstrom) of the lines the survey measures.
LINES: dict[str, float] = {"halpha": 6563.0, "hbeta": 4861.0, "nii": 6584.0, "oiii": 5007.0}

_C_ANGSTROM = 2.998e18  # speed of light in Angstrom/s
_NANOMAGGY_CGS = 3.631e-29  # erg/s/cm^2/Hz of one nanomaggy
_LINE_UNIT = 1e-17  # erg/s/cm^2
_GRID = np.arange(3000.0, 11000.0, 10.0)  # observed-frame wavelength grid (Angstrom)
_ABS_MAG_SUN = 4.65  # AB absolute magnitude of the Sun near 6200 A
_ML_OLD, _ML_YOUNG = 3.0, 0.3  # mass-to-light ratios near 6200 A (solar units)
_ML_POST_STARBURST = 1.0
_BREAK_RATIO = 4000.0 / 3650.0  # 4000 A break over Balmer limit


def check_bands(bands: tuple[str, ...]) -> None:
    unknown = [b for b in bands if b not in FILTERS]
    if unknown:
        msg = f"the synthetic survey has no band(s) {unknown}; it knows {', '.join(FILTERS)}"
        raise InvalidParameterError(msg)


def _old(lam: np.ndarray | float) -> np.ndarray:
    """Old stellar population, f_nu shape: red slope and a 4000 A break of strength 2."""
    brk = 1.0 - 0.5 / (1.0 + np.exp((lam - 4000.0) / 60.0))
    return (lam / 6200.0) ** 1.8 * brk


def _evolved(lam: np.ndarray, post_starburst: np.ndarray) -> np.ndarray:
    """Old light, or for post-starbursts the same shape with its break at the Balmer limit.

    A post-starburst spectrum is the old spectrum stretched by 3650/4000 in
    wavelength, so a post-starburst at redshift z1 has exactly the colours of
    an old galaxy at (1 + z1) * 3650/4000 - 1: the Balmer-break / 4000 A break
    confusion that makes photometric-redshift posteriors bimodal.
    """
    stretch = np.where(post_starburst, _BREAK_RATIO, 1.0)[:, None]  # lam is (n, wavelengths)
    return _old(lam * stretch)


def _young(lam: np.ndarray | float) -> np.ndarray:
    """Young population, f_nu shape: nearly flat (blue) with a weak Balmer break."""
    brk = 1.0 - 0.2 / (1.0 + np.exp((lam - 3650.0) / 60.0))
    return (lam / 6200.0) ** 0.3 * brk


def _calzetti_k(lam: np.ndarray) -> np.ndarray:
    """Calzetti et al. (2000) attenuation curve k(lambda), lambda in Angstrom."""
    mu = lam / 1e4
    blue = 2.659 * (-2.156 + 1.509 / mu - 0.198 / mu**2 + 0.011 / mu**3) + 4.05
    red = 2.659 * (-1.857 + 1.040 / mu) + 4.05
    return np.where(mu < 0.63, blue, red)


def _attenuation(lam: np.ndarray, av: np.ndarray) -> np.ndarray:
    return 10.0 ** (-0.4 * av[:, None] * _calzetti_k(lam) / 4.05)


@dataclass
class LineFluxes:
    """True (attenuated) and measured line fluxes with their 1-sigma errors, 1e-17 erg/s/cm^2."""

    true: dict[str, np.ndarray]
    measured: dict[str, np.ndarray]
    error: dict[str, np.ndarray]


def emission_lines(g: Galaxies, rng: np.random.Generator) -> LineFluxes:
    """Nebular lines from star formation (Kennicutt 1998) plus an AGN narrow-line region."""
    n = len(g)
    area = 4.0 * np.pi * luminosity_distance_cm(g.redshift) ** 2
    halpha_sf = 10.0**g.log_sfr / 7.9e-42 / area / _LINE_UNIT
    # Star-forming BPT locus: [NII]/Halpha tracks metallicity, [OIII]/Hbeta follows
    # Kauffmann et al. (2003) shifted 0.2 dex below the demarcation line.
    n2 = np.clip(1.0 * (g.metallicity_fibre - 8.80) - 0.45, -1.6, -0.2)
    o3 = 0.61 / (n2 - 0.05) + 1.1 + rng.normal(0.0, 0.08, n)
    hbeta_sf = halpha_sf / 2.86  # case-B Balmer decrement
    agn_oiii = np.where(g.agn, 10.0 ** (41.0 + 0.8 * (g.log_mbh - 8.0) + rng.normal(0.0, 0.3, n)),
                        0.0) / area / _LINE_UNIT
    hbeta_agn = agn_oiii / 10.0 ** rng.normal(0.6, 0.2, n)
    halpha_agn = 3.1 * hbeta_agn
    nii_agn = halpha_agn * 10.0 ** rng.normal(0.05, 0.15, n)
    att_red = 10.0 ** (-0.4 * 0.82 * g.dust_av)  # A(Halpha)/A(V), Cardelli et al. 1989
    att_blue = 10.0 ** (-0.4 * 1.16 * g.dust_av)  # A(Hbeta)/A(V)
    true = {
        "halpha": (halpha_sf + halpha_agn) * att_red,
        "hbeta": (hbeta_sf + hbeta_agn) * att_blue,
        "nii": (halpha_sf * 10.0**n2 + nii_agn) * att_red,
        "oiii": (hbeta_sf * 10.0**o3 + agn_oiii) * att_blue,
    }
    error = {k: g.line_depth * np.sqrt(3.0**2 + (0.03 * v) ** 2) for k, v in true.items()}
    measured = {k: v + rng.normal(0.0, 1.0, n) * error[k] for k, v in true.items()}
    return LineFluxes(true=true, measured=measured, error=error)


@dataclass
class BandFluxes:
    """Noise-free flux per band (nanomaggies) of each image component, shape (n, bands)."""

    bulge: np.ndarray
    disk: np.ndarray
    nucleus: np.ndarray

    @property
    def total(self) -> np.ndarray:
        return self.bulge + self.disk + self.nucleus


def _band_means(f_nu: np.ndarray, bands: tuple[str, ...]) -> np.ndarray:
    out = np.empty((f_nu.shape[0], len(bands)))
    for j, band in enumerate(bands):
        lo, hi = FILTERS[band]
        inside = (lo <= _GRID) & (hi > _GRID)
        out[:, j] = f_nu[:, inside].mean(axis=1)
    return out


def band_fluxes(g: Galaxies, lines: LineFluxes, bands: tuple[str, ...]) -> BandFluxes:
    """Integrate each component's redshifted, dust-attenuated spectrum over the bands."""
    check_bands(bands)
    z = g.redshift[:, None]
    rest = _GRID[None, :] / (1.0 + z)
    d_l = luminosity_distance_cm(g.redshift)
    distance_modulus = 5.0 * np.log10(d_l / 3.0857e19)  # 10 pc in cm
    # Observed f_nu is L_nu(rest) (1+z) / (4 pi D_L^2); in magnitudes, -2.5 log10(1+z).
    dimming = 10.0 ** (-0.4 * (distance_modulus - 2.5 * np.log10(1.0 + g.redshift)))

    def component(mass: np.ndarray, ml: np.ndarray, shape: np.ndarray, av: np.ndarray):
        abs_mag = _ABS_MAG_SUN - 2.5 * np.log10(mass / ml)
        maggies = 10.0 ** (-0.4 * abs_mag) * dimming
        return (maggies * 1e9)[:, None] * shape * _attenuation(rest, av)

    mass = 10.0**g.log_mstar
    fy = g.young_fraction[:, None]
    psb = g.post_starburst

    def at(wavelength: float) -> np.ndarray:
        return np.full((len(g), 1), wavelength)

    evolved = _evolved(rest, psb) / _evolved(at(6200.0), psb)
    young = _young(rest) / _young(6200.0)
    # Mix by light at 5500 A, then renormalise to unit flux at 6200 A.
    w_young = fy / (_young(5500.0) / _young(6200.0))
    w_old = (1 - fy) / (_evolved(at(5500.0), psb) / _evolved(at(6200.0), psb))
    disk_shape = (w_young * young + w_old * evolved) / (w_young + w_old)
    evolved_ml = np.where(psb, _ML_POST_STARBURST, _ML_OLD)
    disk_ml = 10.0 ** ((1 - g.young_fraction) * np.log10(evolved_ml)
                       + g.young_fraction * np.log10(_ML_YOUNG))
    disk = component(mass * (1 - g.bulge_fraction), disk_ml, disk_shape, g.dust_av)
    bulge = component(mass * g.bulge_fraction, evolved_ml, evolved, 0.2 * g.dust_av)
    # AGN continuum: nu L_nu(5100 A) ~ 350 L[OIII] (Heckman et al. 2004), f_nu ~ nu^-0.5.
    oiii_cgs = np.where(g.agn, lines.true["oiii"], 0.0) * _LINE_UNIT
    f_nu_5100 = 350.0 * oiii_cgs * 5100.0 / _C_ANGSTROM * (1.0 + g.redshift)
    nucleus = (f_nu_5100 / _NANOMAGGY_CGS)[:, None] * (rest / 5100.0) ** 0.5
    disk_bands = _band_means(disk, bands)
    # Emission lines add their flux to whichever band they land in.
    for name, rest_wavelength in LINES.items():
        observed = rest_wavelength * (1.0 + g.redshift)
        for j, band in enumerate(bands):
            lo, hi = FILTERS[band]
            inside = (observed >= lo) & (observed < hi)
            f_nu = lines.true[name] * _LINE_UNIT * observed**2 / _C_ANGSTROM / (hi - lo)
            disk_bands[:, j] += np.where(inside, f_nu / _NANOMAGGY_CGS, 0.0)
    return BandFluxes(bulge=_band_means(bulge, bands), disk=disk_bands,
                      nucleus=_band_means(nucleus, bands))
