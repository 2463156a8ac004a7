"""Read a catalog back: its description, its committed rows, and its PDFs as a ``qp`` ensemble.

Readers honour the commit protocol: only parts with a commit record are read
(:func:`committed_parts`), so a part renamed into place by a run that crashed
before writing its record is never seen.  Dask reads the same list
(``dask.dataframe.read_parquet(committed_parts(C))``).  The helpers also say
what Parquet alone does not: which model made which column and on what grid
a PDF lives.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import pyarrow as pa

from ..errors import CatalogNotFoundError, InvalidParameterError
from ..fs import join, read_bytes, redact, resolve
from .schema import CatalogSchema
from .writer import DESCRIPTION, CatalogWriter, manifest, part_name

__all__ = ["CommittedParts", "catalog_schema", "committed_parts", "manifest", "pdf_ensemble",
           "pdf_grid", "read_catalog"]


def catalog_schema(url: str, storage_options: dict[str, Any] | None = None) -> CatalogSchema:
    """The description a run wrote in ``_catalog.json``."""
    try:
        text = read_bytes(join(url, DESCRIPTION), storage_options)
    except FileNotFoundError:
        msg = f"catalog {redact(url)}: no {DESCRIPTION} (not a surveyproc catalog, or not started)"
        raise CatalogNotFoundError(msg) from None
    return CatalogSchema.from_description(json.loads(text))


@dataclass(frozen=True)
class CommittedParts:
    """The parts a reader may read (URLs, in store order) and how many shards the plan has."""

    urls: list[str]
    n_shards: int
    complete: bool  # the manifest is written: every shard is in

    @property
    def summary(self) -> str:
        return f"{len(self.urls)} of {self.n_shards} shards committed"


def committed_parts(url: str, storage_options: dict[str, Any] | None = None,
                    schema: CatalogSchema | None = None) -> CommittedParts:
    """Parts with a commit record: for a finished catalog every part of the plan (the
    manifest, one read), else those of the commit records present now.  ``schema``: the
    catalog's description if the caller has read it already.

    Raises
    ------
    CatalogNotFoundError
        No catalog at ``url``.
    """
    description = (schema or catalog_schema(url, storage_options)).extra
    n_shards = int(description.get("shards", {}).get("count", 0))
    done = manifest(url, storage_options)
    if done is not None:  # every shard is in: their names follow from the plan
        parts = [part_name(index) for index in range(int(done["n_shards"]))]
    else:
        parts = [record.part for record in CatalogWriter(url, storage_options).records()]
    return CommittedParts([join(url, part) for part in sorted(parts)], n_shards,
                          done is not None)


def read_catalog(url: str, storage_options: dict[str, Any] | None = None, *,
                 columns: Sequence[str] | None = None) -> pa.Table:
    """Every committed part as one table, in store order: for modest catalogs and tests (use
    Dask, which streams, for survey-sized ones)."""
    description = catalog_schema(url, storage_options)
    parts = committed_parts(url, storage_options, description)
    schema = description.arrow()
    wanted = list(columns) if columns is not None else None
    if not parts.urls:
        empty = schema.empty_table()
        return empty.select(wanted) if wanted is not None else empty
    import pyarrow.dataset as ds  # here: it imports pandas, 0.3 s of an actor's start-up

    fs, _ = resolve(url, storage_options)
    paths = [resolve(part, storage_options)[1] for part in parts.urls]
    dataset = ds.dataset(paths, filesystem=fs, format="parquet", schema=schema)
    fragments = sorted(dataset.get_fragments(), key=lambda f: f.path)  # part-NNNNNN: store order
    return pa.concat_tables([f.to_table(columns=wanted, schema=schema) for f in fragments])


def pdf_grid(schema: CatalogSchema, estimate: str) -> np.ndarray:
    """Bin centres of the PDF column of ``estimate`` (a target, or ``<model>_<target>``
    where several models estimate it)."""
    model, target = schema.find_estimate(estimate)
    if target not in model.pdf_grids:
        msg = f"no PDF column for {estimate!r}; PDFs exist for " + (
            ", ".join(m.estimate(t) for m in schema.models for t in m.pdf_grids)
            or "no target")
        raise InvalidParameterError(msg)
    return model.pdf_grids[target].centres_array()


def pdf_ensemble(table: pa.Table, schema: CatalogSchema, estimate: str):
    """The PDF column of ``estimate`` (``<target>_pdf``, or ``<model>_<target>_pdf``) as an
    LSST DESC ``qp`` interpolated ensemble."""
    import qp

    xvals = pdf_grid(schema, estimate)
    model, target = schema.find_estimate(estimate)
    column = table.column(model.pdf(target)).combine_chunks()
    yvals = column.values.to_numpy(zero_copy_only=False).reshape(len(column), len(xvals))
    return qp.Ensemble(qp.interp, data={"xvals": xvals, "yvals": yvals})
