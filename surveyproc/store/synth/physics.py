"""Latent physics of the synthetic survey: who each galaxy is, before it is observed.

Parameters are drawn in fixed blocks of :data:`BLOCK` objects, each from its
own seed ``(seed, 0, block)``, so object ``n`` is the same galaxy whatever the
chunk size, the number of workers or the order they run in.  All relations are
vectorised NumPy; the generative model is documented in ``docs/synthetic.md``.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass, fields

import numpy as np

__all__ = [
    "BLOCK",
    "Galaxies",
    "draw_block",
    "draw_galaxies",
    "kpc_per_arcsec",
    "luminosity_distance_cm",
]

#: PSF FWHM of the synthetic observations, arcsec (uniform; median 1.2")
SEEING_RANGE = (0.9, 1.5)
MEDIAN_SEEING = sum(SEEING_RANGE) / 2

BLOCK = 1024  # objects per parameter block (the determinism unit)

_MPC_CM = 3.0857e24  # cm per Mpc


@functools.cache
def _distance_tables() -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Luminosity distance (Mpc) and angular scale (kpc/arcsec) on a redshift grid."""
    from astropy.cosmology import FlatLambdaCDM

    cosmo = FlatLambdaCDM(H0=70.0, Om0=0.3)
    z = np.linspace(1e-3, 1.5, 3000)
    d_l = cosmo.luminosity_distance(z).value
    scale = cosmo.kpc_proper_per_arcmin(z).value / 60.0
    return z, d_l, scale


def luminosity_distance_cm(z: np.ndarray) -> np.ndarray:
    """Luminosity distance in cm (flat LCDM, H0=70, Om0=0.3), by table interpolation."""
    grid, d_l, _ = _distance_tables()
    return np.interp(z, grid, d_l) * _MPC_CM


def kpc_per_arcsec(z: np.ndarray) -> np.ndarray:
    """Proper kpc per arcsec at redshift ``z``."""
    grid, _, scale = _distance_tables()
    return np.interp(z, grid, scale)


def _sigmoid(x: np.ndarray) -> np.ndarray:
    return 1.0 / (1.0 + np.exp(-x))


class ArrayRecord:
    """A dataclass of equal-length arrays that can be cut and joined row-wise."""

    def __len__(self) -> int:
        return len(getattr(self, fields(self)[0].name))  # type: ignore[arg-type]

    def slice(self, rows: slice):
        return type(self)(**{f.name: getattr(self, f.name)[rows]
                             for f in fields(self)})  # type: ignore[arg-type]

    @classmethod
    def concat(cls, parts: list):
        return cls(**{f.name: np.concatenate([getattr(p, f.name) for p in parts])
                      for f in fields(cls)})  # type: ignore[arg-type]


@dataclass
class Galaxies(ArrayRecord):
    """Latent parameters of a run of galaxies (one value per galaxy per field)."""

    redshift: np.ndarray
    log_mstar: np.ndarray  # log10 M*/Msun
    log_sfr: np.ndarray  # log10 SFR / (Msun/yr)
    quiescent: np.ndarray  # bool
    post_starburst: np.ndarray  # bool: quenched < 1 Gyr ago, Balmer break instead of 4000 A break
    agn: np.ndarray  # bool
    log_mbh: np.ndarray  # log10 black-hole mass / Msun
    bulge_fraction: np.ndarray  # B/T by stellar mass
    cos_inclination: np.ndarray  # 1 = face-on, 0 = edge-on
    disk_axis_ratio: np.ndarray
    bulge_axis_ratio: np.ndarray
    position_angle: np.ndarray  # radians
    disk_radius_kpc: np.ndarray  # half-light radius of the disk
    bulge_radius_kpc: np.ndarray
    dust_av: np.ndarray  # V-band attenuation of the disk (mag)
    metallicity_intrinsic: np.ndarray  # 12 + log(O/H), whole galaxy
    metallicity_fibre: np.ndarray  # what a central fibre sees (inclination bias)
    young_fraction: np.ndarray  # share of disk light from young stars at 5500 A
    seeing_arcsec: np.ndarray  # PSF FWHM
    depth: np.ndarray  # noise multiplier from observing conditions (heteroscedastic)
    line_depth: np.ndarray  # noise multiplier of the spectrum


def draw_block(seed: int, block: int, z_max: float) -> Galaxies:
    """Latent parameters of the :data:`BLOCK` galaxies of parameter block ``block``."""
    rng = np.random.default_rng(np.random.SeedSequence([seed, 0, block]))
    n = BLOCK
    # Redshift: a gamma distribution truncated to (0.02, z_max), by inverse CDF.
    from scipy import stats  # here: job files import the settings, not the generator

    z_dist = stats.gamma(a=2.5, loc=0.02, scale=0.045)
    redshift = z_dist.ppf(rng.uniform(0.0, z_dist.cdf(z_max), n))
    # Stellar mass rises with redshift: a flux-limited survey sees only massive galaxies far away.
    log_mstar = np.clip(rng.normal(9.7 + 4.0 * redshift, 0.5), 8.5, 11.8)
    quiescent = rng.random(n) < 0.85 * _sigmoid((log_mstar - 10.55) / 0.22)
    main_sequence = 0.75 * (log_mstar - 10.0) - 0.05 + 2.0 * np.log10(1.0 + redshift)
    log_sfr = np.where(quiescent,
                       main_sequence - 1.4 + rng.normal(0.0, 0.35, n),
                       main_sequence + rng.normal(0.0, 0.3, n))
    ssfr = log_sfr - log_mstar
    post_starburst = quiescent & (rng.random(n) < 0.4)
    agn = rng.random(n) < 0.35 * _sigmoid((log_mstar - 10.6) / 0.2)
    bulge_fraction = np.where(quiescent, rng.beta(5.0, 3.0, n), rng.beta(1.5, 6.0, n))
    log_mbh = (8.2 + 1.05 * (np.log10(bulge_fraction) + log_mstar - 11.0)
               + rng.normal(0.0, 0.3, n))
    cos_inc = rng.uniform(0.0, 1.0, n)
    disk_q = np.sqrt(cos_inc**2 * (1.0 - 0.2**2) + 0.2**2)  # intrinsic thickness 0.2
    bulge_q = rng.uniform(0.65, 1.0, n)
    position_angle = rng.uniform(0.0, np.pi, n)
    size_offset = rng.normal(0.0, 0.12, n)  # dex, at fixed mass
    disk_radius = 10.0 ** (0.22 * (log_mstar - 10.0) + 0.55 - 0.1 * quiescent + size_offset)
    bulge_radius = disk_radius * rng.uniform(0.2, 0.45, n)
    face_on_av = np.where(
        quiescent,
        rng.uniform(0.0, 0.2, n),
        np.clip(0.3 + 0.3 * log_sfr + 0.2 * (log_mstar - 10.0), 0.05, 1.5)
        * np.exp(rng.normal(0.0, 0.25, n)),
    )
    # Edge-on disks are seen through more dust.
    dust_av = face_on_av * (1.0 + 1.2 * (1.0 - disk_q))
    # Mass-metallicity relation (Curti et al. 2020 form), lower at higher SFR for the mass
    # (fundamental metallicity relation, Mannucci et al. 2010) and for larger galaxies of
    # the mass (Ellison et al. 2008).
    mzr = 8.793 - (0.28 / 2.1) * np.log10(1.0 + (10.0 ** (log_mstar - 10.02)) ** -2.1)
    metallicity = (mzr - 0.15 * (log_sfr - main_sequence) - 0.3 * size_offset
                   + rng.normal(0.0, 0.02, n))
    # Fibre-aperture bias: an edge-on disk's fibre looks through its metal-poor outskirts.
    metallicity_fibre = metallicity - 0.15 * (1.0 - disk_q) * (1.0 - bulge_fraction)
    young_fraction = _sigmoid((ssfr + 10.3) / 0.35)
    seeing = rng.uniform(*SEEING_RANGE, n)
    depth = np.exp(rng.normal(0.0, 0.25, n))
    line_depth = np.exp(rng.normal(0.0, 0.3, n))
    return Galaxies(
        redshift=redshift, log_mstar=log_mstar, log_sfr=log_sfr, quiescent=quiescent,
        post_starburst=post_starburst, agn=agn,
        log_mbh=log_mbh, bulge_fraction=bulge_fraction, cos_inclination=cos_inc,
        disk_axis_ratio=disk_q, bulge_axis_ratio=bulge_q, position_angle=position_angle,
        disk_radius_kpc=disk_radius, bulge_radius_kpc=bulge_radius, dust_av=dust_av,
        metallicity_intrinsic=metallicity, metallicity_fibre=metallicity_fibre,
        young_fraction=young_fraction, seeing_arcsec=seeing, depth=depth, line_depth=line_depth,
    )


def draw_galaxies(seed: int, start: int, stop: int, *, z_max: float = 0.4) -> Galaxies:
    """Latent parameters of galaxies ``[start, stop)`` of the survey with ``seed``.

    Examples
    --------
    >>> a = draw_galaxies(7, 1000, 1100)
    >>> b = draw_galaxies(7, 0, 2048).slice(slice(1000, 1100))
    >>> bool((a.redshift == b.redshift).all())
    True
    """
    first, last = start // BLOCK, (stop - 1) // BLOCK
    blocks = Galaxies.concat([draw_block(seed, b, z_max) for b in range(first, last + 1)])
    offset = first * BLOCK
    return blocks.slice(slice(start - offset, stop - offset))
