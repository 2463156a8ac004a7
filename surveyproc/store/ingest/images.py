"""Ingest cutouts from large FITS images with WCS at a list of sky positions.

For each object and band, :class:`astropy.nddata.Cutout2D` cuts a square of
``size`` pixels centred on the object's RA/Dec through that band's own WCS
(bands may have different pointings), and the pixels are calibrated to
sky-subtracted nanomaggies (:mod:`.calibrate`).  An object that falls partly off an
image is kept, its missing pixels NaN and its ``OFF_EDGE`` flag set; one with
no overlap in a band gets ``NO_DATA``.  Nothing is dropped; the report counts
both.  Images are memory-mapped (local) or read by section (remote), so each
Ray task touches only the pixels of its own objects.
"""

from __future__ import annotations

import functools
from typing import Any

import numpy as np
from astropy.coordinates import SkyCoord
from astropy.nddata import Cutout2D, NoOverlapError

from ...errors import IngestError
from ...flags import Flag
from ...fs import normalize, redact
from ..layout import DEFAULT_COMPRESSION, StoreSpec
from ._units import ingest_units
from .calibrate import Calibration, resolve_zero_point
from .catalog import Catalog
from .fits_io import header_psf_fwhm, header_zero_point, open_image, pixel_scale_arcsec
from .report import IngestReport

__all__ = ["ingest_images"]


def _open(url: str, hdu: int | str, storage_options: dict[str, Any] | None):
    try:
        data, header, wcs = open_image(url, hdu, storage_options)
    except (OSError, IndexError, KeyError, ValueError) as error:
        msg = f"image {redact(url)} (HDU {hdu}): cannot open it ({type(error).__name__}: {error})"
        raise IngestError(msg) from None
    if wcs is None:
        msg = f"image {redact(url)} (HDU {hdu}): no celestial WCS in its header"
        raise IngestError(msg)
    if len(data.shape) != 2:
        msg = f"image {redact(url)} (HDU {hdu}): expected a 2-D image, got shape {data.shape}"
        raise IngestError(msg)
    return data, header, wcs


def _cut_rows(images: dict[str, tuple[str, int | str]], size: int,
              storage_options: dict[str, Any] | None, rows: Catalog, first_row: int,
              report: IngestReport) -> tuple[np.ndarray, np.ndarray]:
    n = len(rows)
    out = np.full((n, len(images), size, size), np.nan, dtype=np.float32)
    flags = np.zeros(n, dtype=np.int32)
    positions = SkyCoord(rows.ra, rows.dec, unit="deg")
    for b, (band, (url, hdu)) in enumerate(images.items()):
        data, _, wcs = _open(url, hdu, storage_options)
        for i in range(n):
            try:
                cut = Cutout2D(data, positions[i], size, wcs=wcs, mode="partial",
                               fill_value=np.nan, copy=True)
            except NoOverlapError:
                flags[i] |= Flag.NO_DATA
                report.note(f"no overlap with the {band} image", str(rows.object_id[i]))
                continue
            (y0, y1), (x0, x1) = cut.bbox_original
            if (y1 - y0 + 1, x1 - x0 + 1) != (size, size):
                flags[i] |= Flag.OFF_EDGE
            pixels = np.asarray(cut.data, dtype=np.float32)
            if not np.isfinite(pixels[cut.slices_cutout]).all():
                flags[i] |= Flag.NAN_PIXELS
            out[i, b] = pixels
    for k in np.flatnonzero(flags & Flag.OFF_EDGE):
        report.note("partly off the image edge", str(rows.object_id[k]))
    return out, flags


def ingest_images(
    out_url: str,
    images: dict[str, str | tuple[str, int | str]],
    catalog: Catalog,
    *,
    size: int,
    zero_point: float | None = None,
    sky_subtracted: bool = False,
    psf_fwhm: float | None = None,
    survey: str = "ingested",
    chunk_objects: int = 256,
    shard_chunks: int | None = None,
    compression: str = DEFAULT_COMPRESSION,
    dtype: str = "float32",
    storage_options: dict[str, Any] | None = None,
    input_storage_options: dict[str, Any] | None = None,
    overwrite: bool = False,
    parallel: bool = True,
) -> IngestReport:
    """Cut every catalog position out of every band image into a new store.

    Parameters
    ----------
    images
        ``{band: url}`` or ``{band: (url, hdu)}`` in store band order.
    catalog
        Positions (and ids, labels, photometry): see
        :func:`~surveyproc.store.ingest.read_catalog` or :func:`detect_positions`.
    size
        Cutout side in pixels.
    zero_point
        AB zero point of the input pixels (default: each header's MAGZERO-like
        keyword, or 22.5 where BUNIT says nanomaggies).
    sky_subtracted
        The images have had their sky removed already: measure it, do not subtract it.
    psf_fwhm
        PSF FWHM in arcsec for every band (default: each header's PSF_FWHM or
        SEEING, else the detection's estimate for its band).
    """
    if size < 1:
        msg = f"cutout size must be positive, got {size}"
        raise IngestError(msg)
    # URLs made absolute here, before they travel to workers with another cwd.
    resolved = {band: (normalize(v), 0) if isinstance(v, str) else (normalize(v[0]), v[1])
                for band, v in images.items()}
    headers = {band: _open(url, hdu, input_storage_options)[1]
               for band, (url, hdu) in resolved.items()}
    first = next(iter(headers.values()))
    pixel_scale = pixel_scale_arcsec(first)
    if pixel_scale is None:  # _open checked for a celestial WCS; this is its scale
        msg = f"image for band {next(iter(headers))}: cannot read a pixel scale from its WCS"
        raise IngestError(msg)
    zero_points = {band: resolve_zero_point(zero_point, header_zero_point(header),
                                            header.get("BUNIT"), f"image for band {band}")
                   for band, header in headers.items()}
    detected = catalog.table.meta.get("psf_fwhm_arcsec")
    psf = {band: psf_fwhm or header_psf_fwhm(header) or
           (detected if band == catalog.table.meta.get("detect_band") else None)
           for band, header in headers.items()}
    spec = StoreSpec(
        n_objects=len(catalog), bands=tuple(resolved), height=size, width=size,
        labels=tuple(catalog.labels), photometry=bool(catalog.photometry), dtype=dtype,
        chunk_objects=chunk_objects, shard_chunks=shard_chunks, compression=compression,
        survey=survey, pixel_scale=pixel_scale,
    )
    calibration = Calibration(spec.bands, zero_points, subtract_sky=not sky_subtracted)
    provenance = {"generator": "surveyproc.store.ingest.images",
                  "images": {band: f"{redact(url)}[{hdu}]"
                             for band, (url, hdu) in resolved.items()},
                  "cutout": "astropy.nddata.Cutout2D mode=partial, nearest pixel grid"}
    reader = functools.partial(_cut_rows, resolved, size, input_storage_options)
    return ingest_units(out_url, spec, catalog, reader, calibration, psf_fwhm=psf,
                        input_unit=str(first.get("BUNIT", "unknown")), provenance=provenance,
                        storage_options=storage_options, overwrite=overwrite,
                        parallel=parallel, desc="ingest images")
