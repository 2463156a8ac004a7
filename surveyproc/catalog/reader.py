"""Read a catalog back: its description, its rows, and its PDFs as a ``qp`` ensemble.

Dask and pyarrow read the parts directly (``dask.dataframe.read_parquet(C)``);
these helpers add what Parquet alone does not say: which model made which
column and on what grid a PDF lives.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.dataset as ds

from ..errors import CatalogNotFoundError, InvalidParameterError
from ..fs import join, read_bytes, redact, resolve
from .pdf import grid_centres
from .schema import CatalogSchema
from .writer import DESCRIPTION, MANIFEST

__all__ = ["catalog_schema", "manifest", "pdf_ensemble", "pdf_grid", "read_catalog"]


def catalog_schema(url: str, storage_options: dict[str, Any] | None = None) -> CatalogSchema:
    """The description a run wrote in ``_catalog.json``."""
    try:
        text = read_bytes(join(url, DESCRIPTION), storage_options)
    except FileNotFoundError:
        msg = f"catalog {redact(url)}: no {DESCRIPTION} (not a surveyproc catalog, or not started)"
        raise CatalogNotFoundError(msg) from None
    return CatalogSchema.from_description(json.loads(text))


def manifest(url: str, storage_options: dict[str, Any] | None = None) -> dict[str, Any] | None:
    """``_manifest.json`` of a finished catalog, or None while shards are missing."""
    try:
        return json.loads(read_bytes(join(url, MANIFEST), storage_options))
    except FileNotFoundError:
        return None


def read_catalog(url: str, storage_options: dict[str, Any] | None = None, *,
                 columns: Sequence[str] | None = None) -> pa.Table:
    """Every part as one table, in store order: for modest catalogs and tests (use Dask,
    which streams, for survey-sized ones)."""
    fs, path = resolve(url, storage_options)
    if not fs.exists(path):
        msg = f"catalog {redact(url)} does not exist"
        raise CatalogNotFoundError(msg)
    dataset = ds.dataset(path, filesystem=fs, format="parquet")
    wanted = list(columns) if columns is not None else None
    fragments = sorted(dataset.get_fragments(), key=lambda f: f.path)  # part-NNNNNN: store order
    tables = [f.to_table(columns=wanted, schema=dataset.schema) for f in fragments]
    return pa.concat_tables(tables) if tables else dataset.schema.empty_table()


def pdf_grid(schema: CatalogSchema, target: str) -> np.ndarray:
    """Bin centres of ``target``'s PDF column."""
    for model in schema.models:
        if target in model.targets and model.grid is not None:
            g = model.grid
            return grid_centres(g["low"], g["high"], int(g["n_bins"]))
    msg = f"no PDF column for {target!r}; PDFs exist for " + (
        ", ".join(t for m in schema.models if m.grid for t in m.targets) or "no target")
    raise InvalidParameterError(msg)


def pdf_ensemble(table: pa.Table, schema: CatalogSchema, target: str):
    """The ``<target>_pdf`` column as an LSST DESC ``qp`` interpolated ensemble."""
    import qp

    xvals = pdf_grid(schema, target)
    column = table.column(f"{target}_pdf").combine_chunks()
    yvals = column.values.to_numpy(zero_copy_only=False).reshape(len(column), len(xvals))
    return qp.Ensemble(qp.interp, data={"xvals": xvals, "yvals": yvals})
