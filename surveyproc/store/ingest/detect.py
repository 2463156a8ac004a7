"""Find sources in an image with photutils, to ingest fields that come without a catalog.

The image's background and noise are estimated on a mesh (``Background2D``),
the background-subtracted image is smoothed with a Gaussian matched to a
typical seeing, and connected groups of at least ``npixels`` pixels above
``nsigma`` times the noise become sources (``detect_sources``; overlapping
sources are split by ``deblend_sources`` when scikit-image is installed).
Their centroids go through the WCS to RA/Dec.

The PSF width is measured on the same image: the median FWHM of the most
compact fifth of the bright sources (S/N >= 50), where stars gather; bright
sources no wider than 1.15 times that are flagged ``STAR_LIKE`` (faint ones
cannot be told apart and are not flagged).  The estimate goes into the
catalog's ``meta`` (``psf_fwhm_arcsec``) for the store's calibration record.
"""

from __future__ import annotations

from typing import Any

import numpy as np
from astropy.convolution import convolve
from astropy.table import Table

from ...errors import IngestError
from ...flags import Flag
from ...fs import redact
from .catalog import Catalog, CatalogColumns, catalog_from_table
from .fits_io import pixel_scale_arcsec
from .images import _open

__all__ = ["detect_positions", "psf_from_sources"]

BRIGHT_SNR = 50.0  # sources this bright have a measured FWHM good to a few per cent
STAR_WIDTH = 1.15  # x PSF FWHM: no wider than this and bright means star-like


def psf_from_sources(fwhm: np.ndarray, snr: np.ndarray) -> tuple[float | None, np.ndarray]:
    """PSF FWHM (same unit as ``fwhm``) and a star-like mask, or (None, all False) with
    fewer than five bright sources.

    Examples
    --------
    >>> fwhm = np.array([3.9, 4.0, 4.1, 3.95, 4.05, 6.0, 7.5, 8.0, 9.0, 5.5, 2.0])
    >>> snr = np.array([200, 300, 150, 400, 100, 80, 60, 90, 120, 70, 10])
    >>> psf, star = psf_from_sources(fwhm, snr)
    >>> round(psf, 2), star.tolist()[:6], bool(star[-1])
    (3.95, [True, True, True, True, True, False], False)
    """
    bright = np.isfinite(fwhm) & (snr >= BRIGHT_SNR)
    if bright.sum() < 5:
        return None, np.zeros(len(fwhm), dtype=bool)
    widths = np.sort(fwhm[bright])
    psf = float(np.median(widths[:max(3, len(widths) // 5)]))
    return psf, bright & (fwhm <= STAR_WIDTH * psf)


def detect_positions(
    url: str,
    *,
    hdu: int | str = 0,
    nsigma: float = 5.0,
    npixels: int = 10,
    fwhm_pixels: float = 3.0,
    band: str | None = None,
    storage_options: dict[str, Any] | None = None,
) -> Catalog:
    """Sources of one image as a catalog: row ids, ra/dec and detection measurements as labels.

    Labels are ``det_x``, ``det_y`` (pixels), ``det_flux`` (background-subtracted
    sum in the image's unit), ``det_area`` (pixels), ``det_snr`` and ``det_fwhm``
    (arcsec); compact bright sources carry the ``STAR_LIKE`` flag.
    """
    from photutils.background import Background2D, MedianBackground
    from photutils.segmentation import SourceCatalog, detect_sources, make_2dgaussian_kernel

    data, header, wcs = _open(url, hdu, storage_options)
    image = np.asarray(data[:], dtype=np.float64)
    box = max(16, min(image.shape) // 8)
    background = Background2D(image, box, filter_size=3, bkg_estimator=MedianBackground())
    residual = image - background.background
    kernel_size = 2 * int(np.ceil(1.5 * fwhm_pixels)) + 1
    smoothed = convolve(residual, make_2dgaussian_kernel(fwhm_pixels, size=kernel_size))
    segments = detect_sources(smoothed, nsigma * background.background_rms, n_pixels=npixels)
    if segments is None:
        msg = (f"image {redact(url)}: no source above {nsigma} sigma with {npixels} pixels; "
               "lower --detect-nsigma or give --positions")
        raise IngestError(msg)
    try:
        from photutils.segmentation import deblend_sources

        segments = deblend_sources(smoothed, segments, n_pixels=npixels, progress_bar=False)
    except ImportError:  # deblending needs scikit-image; detection works without it
        pass
    sources = SourceCatalog(residual, segments, convolved_data=smoothed, wcs=wcs)
    x = np.asarray(sources.x_centroid, dtype=float)
    y = np.asarray(sources.y_centroid, dtype=float)
    good = np.isfinite(x) & np.isfinite(y)
    sky = wcs.pixel_to_world(x[good], y[good])
    flux = np.asarray(sources.segment_flux, dtype=float)[good]
    area = np.asarray(sources.area.value, dtype=float)[good]
    snr = flux / (float(np.median(background.background_rms)) * np.sqrt(area))
    # widths from the unsmoothed pixels (with convolved_data, photutils measures shapes on
    # the smoothed image, which widens every source by the detection kernel)
    unsmoothed = SourceCatalog(residual, segments)
    fwhm = np.asarray(unsmoothed.fwhm.value, dtype=float)[good] * \
        (pixel_scale_arcsec(header) or 1.0)
    psf, star = psf_from_sources(fwhm, snr)
    table = Table({"ra": sky.ra.deg, "dec": sky.dec.deg, "det_x": x[good], "det_y": y[good],
                   "det_flux": flux, "det_area": area, "det_snr": snr, "det_fwhm": fwhm})
    table.meta.update(psf_fwhm_arcsec=psf, detect_band=band)
    catalog = catalog_from_table(table, CatalogColumns(row_ids=True),
                                 f"sources detected in {redact(url)}")
    catalog.flags = np.where(star, np.int32(Flag.STAR_LIKE), np.int32(0))
    return catalog
