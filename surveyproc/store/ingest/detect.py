"""Find sources in an image with photutils, to ingest fields that come without a catalog.

The image's background and noise are estimated on a mesh (``Background2D``),
the background-subtracted image is smoothed with a Gaussian matched to a
typical seeing, and connected groups of at least ``npixels`` pixels above
``nsigma`` times the noise become sources (``detect_sources``; overlapping
sources are split by ``deblend_sources`` when scikit-image is installed).
Their centroids go through the WCS to RA/Dec.
"""

from __future__ import annotations

from typing import Any

import numpy as np
from astropy.convolution import convolve
from astropy.table import Table

from ...errors import IngestError
from ...fs import redact
from .catalog import Catalog, CatalogColumns, catalog_from_table
from .images import _open

__all__ = ["detect_positions"]


def detect_positions(
    url: str,
    *,
    hdu: int | str = 0,
    nsigma: float = 5.0,
    npixels: int = 10,
    fwhm_pixels: float = 3.0,
    storage_options: dict[str, Any] | None = None,
) -> Catalog:
    """Sources of one image as a catalog: row ids, ra/dec and detection measurements as labels.

    Labels are ``det_x``, ``det_y`` (pixels), ``det_flux`` (background-subtracted
    sum in the image's unit) and ``det_area`` (pixels).
    """
    from photutils.background import Background2D, MedianBackground
    from photutils.segmentation import SourceCatalog, detect_sources, make_2dgaussian_kernel

    data, _, wcs = _open(url, hdu, storage_options)
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
    table = Table({
        "ra": sky.ra.deg, "dec": sky.dec.deg, "det_x": x[good], "det_y": y[good],
        "det_flux": np.asarray(sources.segment_flux, dtype=float)[good],
        "det_area": np.asarray(sources.area.value, dtype=float)[good],
    })
    return catalog_from_table(table, CatalogColumns(row_ids=True),
                              f"sources detected in {redact(url)}")
