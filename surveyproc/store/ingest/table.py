"""Ingest a table of photometry (a spectroscopic sample's magnitudes, say) as a
photometry-only store.

Photometric-redshift training sets are often catalogs, not cutouts: SDSS's
model magnitudes with spectroscopic redshifts, a survey's forced photometry.
:func:`ingest_table` turns one (CSV, Parquet, FITS or ECSV, via
:mod:`.catalog`) into a store that declares it holds no images, with
``photometry/<band>`` in nanomaggies, optional ``photometry_error/<band>`` and
the chosen labels; objects are sorted by id.  Models with ``inputs:
photometry`` train and infer on it like on any store.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from ...errors import IngestError
from ...fs import redact
from ..batch import CutoutBatch
from ..create import StoreWriter, create_store
from ..layout import StoreSpec
from .catalog import Catalog, CatalogColumns, read_catalog

__all__ = ["TableReport", "ingest_table"]

#: Objects per write unit of a photometry-only store (columns are written in windows).
TABLE_CHUNK = 4096


class TableReport:
    """What a table ingest did, for the terminal."""

    def __init__(self, catalog: Catalog, url: str) -> None:
        self.rows_read = catalog.rows_read
        self.objects = len(catalog)
        self.bands = list(catalog.photometry)
        self.errors = list(catalog.photometry_error)
        self.labels = {name: int(np.isfinite(v).sum()) for name, v in catalog.labels.items()}
        self.missing = {band: int((~np.isfinite(v)).sum())
                        for band, v in catalog.photometry.items()}
        self.url = url

    def format(self) -> str:
        kept = (f" ({self.rows_read - self.objects:,} left out by --where)"
                if self.rows_read != self.objects else "")
        lines = [f"objects     {self.objects:,} of {self.rows_read:,} rows{kept}",
                 f"photometry  {' '.join(self.bands)} (nanomaggies)"
                 + (f", errors for {' '.join(self.errors)}" if self.errors else ", no errors"),
                 "missing     " + (", ".join(f"{b}: {n:,}" for b, n in self.missing.items()
                                              if n) or "none")]
        lines += [f"label       {name}: {known:,} known" for name, known in self.labels.items()]
        lines.append(f"store       {self.url} (photometry only, no images)")
        return "\n".join(lines)


def ingest_table(url: str, catalog_url: str, columns: CatalogColumns, *, survey: str = "table",
                 label_units: dict[str, str] | None = None, overwrite: bool = False,
                 storage_options: dict[str, Any] | None = None,
                 input_storage_options: dict[str, Any] | None = None) -> TableReport:
    """Write the catalog at ``catalog_url`` as a photometry-only store at ``url``.

    Raises
    ------
    IngestError
        No photometry asked for, a missing column, a value that is not a number, duplicate
        ids, or a filter that keeps nothing (one line naming it); nothing is written.
    """
    if not columns.photometry:
        msg = "ingest table: give the photometry of at least one band (--photometry BAND=COL)"
        raise IngestError(msg)
    catalog = read_catalog(catalog_url, columns, input_storage_options)
    order = np.argsort(catalog.object_id, kind="stable")
    n = len(catalog)
    spec = StoreSpec(n_objects=n, bands=tuple(catalog.photometry), height=0, width=0,
                     labels=tuple(catalog.labels), photometry=True,
                     photometry_errors=bool(catalog.photometry_error), images=False,
                     chunk_objects=min(TABLE_CHUNK, n), survey=survey, pixel_scale=1.0,
                     label_units={k: v for k, v in (label_units or {}).items()
                                  if k in catalog.labels})
    missing_errors = [b for b in catalog.photometry if b not in catalog.photometry_error]
    if catalog.photometry_error and missing_errors:
        msg = (f"ingest table: photometry errors are given for some bands but not "
               f"{', '.join(missing_errors)}; give them for every band or none")
        raise IngestError(msg)
    create_store(url, spec, storage_options=storage_options, overwrite=overwrite,
                 provenance={"generator": "ingest table", "catalog": redact(catalog_url),
                             "where": columns.where, "photometry_unit": columns.photometry_unit,
                             "photometry_columns": dict(columns.photometry)})
    writer = StoreWriter(url, storage_options)
    for start in range(0, n, spec.write_unit):
        rows = order[start:start + spec.write_unit]
        writer.add_columns(CutoutBatch(
            start=start, object_id=catalog.object_id[rows], ra=catalog.ra[rows],
            dec=catalog.dec[rows],
            photometry={b: v[rows] for b, v in catalog.photometry.items()},
            photometry_error={b: v[rows] for b, v in catalog.photometry_error.items()},
            labels={k: v[rows] for k, v in catalog.labels.items()}))
    writer.finalize(objects=n, rows_read=catalog.rows_read)
    return TableReport(catalog, redact(url))
