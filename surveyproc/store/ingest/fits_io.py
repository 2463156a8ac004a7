"""FITS reading shared by the ingest paths: open through fsspec, find band planes, fit to size.

All FITS access of the package goes through here so that local files are
memory-mapped (a 10k x 10k mosaic costs only the pages a cutout touches) and
remote files are read lazily by section through fsspec.
"""

from __future__ import annotations

import atexit
import json
from typing import Any

import numpy as np
from astropy.io import fits
from astropy.wcs import WCS, FITSFixedWarning
from astropy.wcs.utils import proj_plane_pixel_scales

from ...fs import is_local, normalize, resolve

__all__ = ["CutoutFileError", "fit_to_size", "header_psf_fwhm", "header_zero_point",
           "open_image", "pixel_scale_arcsec", "read_band_planes"]

#: Header keywords that may hold an AB zero point, in order of preference.
ZERO_POINT_KEYS = ("MAGZERO", "MAGZP", "ZEROPT", "ZP", "PHOTZP")
#: Header keywords that hold the PSF FWHM in arcsec (``FWHM`` is left out: pipelines
#: disagree on whether it is in pixels or arcsec).
PSF_FWHM_KEYS = ("PSF_FWHM", "PSFFWHM", "SEEING")


class CutoutFileError(Exception):
    """A per-object file could not be used; the message is the reason counted in the report."""


def _celestial_wcs(header: fits.Header) -> WCS | None:
    import warnings

    with warnings.catch_warnings():
        warnings.simplefilter("ignore", FITSFixedWarning)
        try:
            wcs = WCS(header).celestial
        except (ValueError, KeyError, MemoryError):
            return None
    return wcs if wcs.has_celestial else None


def pixel_scale_arcsec(header: fits.Header) -> float | None:
    """Mean pixel scale from a header's celestial WCS, or None without one."""
    wcs = _celestial_wcs(header)
    if wcs is None:
        return None
    return float(np.mean(proj_plane_pixel_scales(wcs)) * 3600.0)


def _first_number(header: fits.Header, keys: tuple[str, ...]) -> float | None:
    for key in keys:
        if key in header:
            try:
                value = float(header[key])
            except (TypeError, ValueError):
                continue
            if np.isfinite(value):
                return value
    return None


def header_zero_point(header: fits.Header) -> float | None:
    """AB zero point from the first of :data:`ZERO_POINT_KEYS` present."""
    return _first_number(header, ZERO_POINT_KEYS)


def header_psf_fwhm(header: fits.Header) -> float | None:
    """PSF FWHM in arcsec from the first of :data:`PSF_FWHM_KEYS` present (positive only)."""
    value = _first_number(header, PSF_FWHM_KEYS)
    return value if value is not None and value > 0 else None


_OPEN: dict[tuple[str, int | str, str], tuple[fits.HDUList, Any, fits.Header, WCS | None]] = {}


def _open_cached(url: str, hdu: int | str, options_json: str):
    key = (url, hdu, options_json)
    if key not in _OPEN:
        local = is_local(url)
        hdul = (fits.open(normalize(url), memmap=True, lazy_load_hdus=True) if local else
                fits.open(url, use_fsspec=True, fsspec_kwargs=json.loads(options_json),
                          lazy_load_hdus=True))
        try:
            chosen = hdul[hdu]
        except (IndexError, KeyError):
            hdul.close()
            raise
        data = chosen.data if local else chosen.section
        _OPEN[key] = (hdul, data, chosen.header, _celestial_wcs(chosen.header))
    return _OPEN[key][1:]


@atexit.register
def close_images() -> None:
    """Close every image :func:`open_image` holds open (runs at exit)."""
    while _OPEN:
        _, (hdul, *_) = _OPEN.popitem()
        hdul.close()


def open_image(url: str, hdu: int | str = 0,
               storage_options: dict[str, Any] | None = None
               ) -> tuple[Any, fits.Header, WCS | None]:
    """``(pixels, header, celestial WCS or None)`` of one image HDU, kept open per process.

    ``pixels`` is a memory map (local) or a lazy section (remote): slicing
    reads only what is asked for.  Raises ``OSError``/``IndexError``/``KeyError``
    on a bad file or HDU; callers turn that into a message.
    """
    return _open_cached(url, hdu, json.dumps(storage_options or {}, sort_keys=True))


def _image_hdus(hdul: fits.HDUList) -> list[fits.hdu.base.ExtensionHDU]:
    return [h for h in hdul if h.is_image and h.header.get("NAXIS", 0) >= 2]


def read_band_planes(url: str, bands: tuple[str, ...],
                     storage_options: dict[str, Any] | None = None
                     ) -> tuple[np.ndarray, fits.Header]:
    """Pixels of one per-object file as (bands, h, w) float32, and its first image header.

    Accepted layouts: one image HDU per band named by EXTNAME (any order,
    matched case-insensitively); or one 3-D HDU with a plane per band in the
    order given; or a single 2-D image when one band is asked for.

    Raises
    ------
    CutoutFileError
        Missing, unreadable, or not mappable to ``bands``.
    """
    fs, path = resolve(url, storage_options)
    try:
        with fs.open(path, "rb") as f, fits.open(f, memmap=False) as hdul:
            images = _image_hdus(hdul)
            if not images:
                raise CutoutFileError("no image HDU")
            by_name = {h.name.lower(): h for h in images}
            if all(b.lower() in by_name for b in bands):
                planes = [np.asarray(by_name[b.lower()].data, dtype=np.float32) for b in bands]
                shapes = {p.shape for p in planes}
                if len(shapes) != 1:
                    raise CutoutFileError("band planes differ in size")
                return np.stack(planes), images[0].header
            data = np.asarray(images[0].data, dtype=np.float32)
            if data.ndim == 3 and data.shape[0] == len(bands):
                return data, images[0].header
            if data.ndim == 2 and len(bands) == 1:
                return data[None], images[0].header
            raise CutoutFileError(f"image of shape {data.shape} does not hold the "
                                  f"{len(bands)} bands asked for")
    except FileNotFoundError:
        raise CutoutFileError("missing file") from None
    except (OSError, ValueError, TypeError) as error:
        raise CutoutFileError(f"unreadable FITS ({type(error).__name__})") from None


def fit_to_size(planes: np.ndarray, size: int) -> tuple[np.ndarray, bool]:
    """Centre-crop or NaN-pad (bands, h, w) to (bands, size, size); True if padding was needed."""
    _, h, w = planes.shape
    out = np.full((planes.shape[0], size, size), np.nan, dtype=np.float32)
    padded = h < size or w < size

    def span(n: int) -> tuple[slice, slice]:
        if n >= size:
            lo = (n - size) // 2
            return slice(lo, lo + size), slice(0, size)
        lo = (size - n) // 2
        return slice(0, n), slice(lo, lo + n)

    (src_y, dst_y), (src_x, dst_x) = span(h), span(w)
    out[:, dst_y, dst_x] = planes[:, src_y, src_x]
    return out, padded
