"""Ingest a folder of per-object multi-band FITS cutouts plus a catalog into a store.

The catalog gives ids, coordinates, labels and photometry; a file pattern such
as ``"{object_id}.fits"`` or ``"{object_id}_{band}.fits"`` (any catalog column,
``{row}`` and ``{band}`` may appear) names each object's file(s).  Files are
read in parallel on Ray, one write unit per task.  A missing or unreadable
file does not stop the run: the object is kept with NaN pixels and the
``NO_DATA`` flag, and the report counts it with examples.  Pixels are
calibrated to sky-subtracted nanomaggies (:mod:`.calibrate`).
"""

from __future__ import annotations

import functools
import string
from typing import Any

import numpy as np

from ...errors import IngestError
from ...flags import Flag
from ...fs import join, normalize, redact
from ..layout import DEFAULT_COMPRESSION, StoreSpec
from ._units import ingest_units
from .calibrate import Calibration, resolve_zero_point
from .catalog import Catalog, CatalogColumns, read_catalog
from .fits_io import (
    CutoutFileError,
    fit_to_size,
    header_psf_fwhm,
    header_zero_point,
    pixel_scale_arcsec,
    read_band_planes,
)
from .report import IngestReport

__all__ = ["ingest_cutouts"]


def _paths(pattern: str, cutout_dir: str, rows: Catalog, i: int, first_row: int,
           bands: tuple[str, ...]) -> list[str]:
    """File URL(s) of row ``i``: one per band if the pattern names ``{band}``, else one."""
    table_row = rows.table[i]
    values: dict[str, Any] = {name: table_row[name] for name in rows.table.colnames}
    values.update(object_id=int(rows.object_id[i]), row=first_row + i)
    if "{band}" in pattern:
        return [join(cutout_dir, pattern.format(**values, band=b)) for b in bands]
    return [join(cutout_dir, pattern.format(**values))]


def _read_rows(cutout_dir: str, pattern: str, bands: tuple[str, ...], size: int,
               storage_options: dict[str, Any] | None, rows: Catalog, first_row: int,
               report: IngestReport) -> tuple[np.ndarray, np.ndarray]:
    n = len(rows)
    images = np.full((n, len(bands), size, size), np.nan, dtype=np.float32)
    flags = np.zeros(n, dtype=np.int32)
    for i in range(n):
        paths = _paths(pattern, cutout_dir, rows, i, first_row, bands)
        try:
            if len(paths) == 1:
                planes, _ = read_band_planes(paths[0], bands, storage_options)
            else:
                planes = np.concatenate([read_band_planes(p, (b,), storage_options)[0]
                                         for p, b in zip(paths, bands, strict=True)])
        except CutoutFileError as error:
            flags[i] |= Flag.NO_DATA
            report.note(str(error), f"{rows.object_id[i]}: {redact(paths[0])}")
            continue
        images[i], padded = fit_to_size(planes, size)
        if padded:
            flags[i] |= Flag.OFF_EDGE
            report.note("cutout smaller than the store size (padded with NaN)",
                        str(rows.object_id[i]))
        if not np.isfinite(planes).all():
            flags[i] |= Flag.NAN_PIXELS
    return images, flags


def _first_file(catalog: Catalog, cutout_dir: str, pattern: str, bands: tuple[str, ...],
                storage_options: dict[str, Any] | None):
    """Planes and header of the first readable file, to learn size and pixel scale."""
    for i in range(min(len(catalog), 100)):
        paths = _paths(pattern, cutout_dir, catalog, i, 0, bands)
        try:
            return read_band_planes(paths[0], bands if len(paths) == 1 else bands[:1],
                                    storage_options)
        except CutoutFileError as error:
            if str(error) != "missing file":
                msg = f"cutout {redact(paths[0])}: {error} (bands asked for: {', '.join(bands)})"
                raise IngestError(msg) from None
    msg = (f"no cutout file found for the first {min(len(catalog), 100)} catalog rows under "
           f"{redact(cutout_dir)} with pattern {pattern!r}")
    raise IngestError(msg)


def ingest_cutouts(
    out_url: str,
    catalog_url: str,
    cutout_dir: str,
    *,
    bands: tuple[str, ...],
    pattern: str = "{object_id}.fits",
    columns: CatalogColumns | None = None,
    size: int | None = None,
    pixel_scale: float | None = None,
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
    """Build a store at ``out_url`` from per-object FITS files listed in a catalog.

    Size, pixel scale, zero point and PSF FWHM default to what the first
    readable file says (its shape, WCS, ``MAGZERO``-like keyword or
    ``BUNIT=nanomaggy``, ``PSF_FWHM``/``SEEING``); a size, scale or zero point
    that cannot be found must be given.  The local sky of every cutout is
    subtracted unless ``sky_subtracted``.
    """
    try:
        fields = {f for _, f, _, _ in string.Formatter().parse(pattern) if f}
    except ValueError as error:
        msg = f"file pattern {pattern!r} is not a valid format string ({error})"
        raise IngestError(msg) from None
    cutout_dir = normalize(cutout_dir)  # absolute before it travels to workers
    catalog = read_catalog(catalog_url, columns, input_storage_options)
    known = {*catalog.table.colnames, "object_id", "row", "band"}
    if fields - known:
        msg = (f"file pattern {pattern!r} names {sorted(fields - known)}, which are neither "
               "catalog columns nor object_id/row/band")
        raise IngestError(msg)
    planes, header = _first_file(catalog, cutout_dir, pattern, bands, input_storage_options)
    size = size or max(planes.shape[1:])
    pixel_scale = pixel_scale or pixel_scale_arcsec(header)
    if pixel_scale is None:
        msg = "the cutouts have no celestial WCS to read the pixel scale from; give --pixel-scale"
        raise IngestError(msg)
    zero_point = resolve_zero_point(zero_point, header_zero_point(header), header.get("BUNIT"),
                                    "the first cutout")
    spec = StoreSpec(
        n_objects=len(catalog), bands=bands, height=size, width=size,
        labels=tuple(catalog.labels), photometry=bool(catalog.photometry), dtype=dtype,
        chunk_objects=chunk_objects, shard_chunks=shard_chunks, compression=compression,
        survey=survey, pixel_scale=pixel_scale,
    )
    calibration = Calibration(bands, dict.fromkeys(bands, zero_point),
                              subtract_sky=not sky_subtracted)
    psf: dict[str, float | None] = dict.fromkeys(bands, psf_fwhm or header_psf_fwhm(header))
    provenance = {"generator": "surveyproc.store.ingest.cutouts", "catalog": redact(catalog_url),
                  "cutout_dir": redact(cutout_dir), "pattern": pattern,
                  "skipped_catalog_columns": catalog.skipped_columns}
    reader = functools.partial(_read_rows, cutout_dir, pattern, bands, size,
                               input_storage_options)
    return ingest_units(out_url, spec, catalog, reader, calibration, psf_fwhm=psf,
                        input_unit=str(header.get("BUNIT", "unknown")), provenance=provenance,
                        storage_options=storage_options, overwrite=overwrite,
                        parallel=parallel, desc="ingest cutouts")

