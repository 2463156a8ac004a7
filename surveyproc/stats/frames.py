"""The catalog and the store's labels as one lazy Dask DataFrame, joined by object id.

The catalog's committed parts are read with ``dask.dataframe.read_parquet`` (only the columns a
statistic needs; list columns stay Arrow-backed so a partition's activations or
PDFs are one NumPy reshape away), the labels with ``dask.array.from_zarr``.
When both are sorted by object id -- always, for catalogs written by
``surveyproc infer`` from a store with increasing ids -- the join is aligned
partition by partition on known divisions, with no shuffle; otherwise Dask
falls back to a hash join.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from typing import Any

import dask.array as da
import dask.dataframe as dd
import numpy as np
import pandas as pd

from ..fs import resolve
from ..store import SurveyStore

__all__ = ["catalog_frame", "dense_activations", "join_labels", "labels_frame", "list_values",
           "sample_joined"]

log = logging.getLogger(__name__)

#: Rows per partition of the labels frame (a whole number of store chunks is used).
LABEL_PARTITION = 262_144


def catalog_frame(parts: Sequence[str], storage_options: dict[str, Any] | None,
                  columns: Sequence[str]) -> dd.DataFrame:
    """The ``columns`` (plus ``object_id`` as the index) of the catalog parts at ``parts``
    (the committed ones: :func:`surveyproc.catalog.committed_parts`), lazily."""
    fs, _ = resolve(parts[0], storage_options)
    paths = [resolve(part, storage_options)[1] for part in parts]
    wanted = [c for c in dict.fromkeys(columns) if c != "object_id"]
    frame = dd.read_parquet(paths, columns=wanted, filesystem=fs,
                            index="object_id", calculate_divisions=True,
                            dtype_backend="pyarrow")
    return frame


def labels_frame(store: SurveyStore, columns: Sequence[str]) -> dd.DataFrame:
    """Store columns (``labels/<name>``, ``photometry/<band>``) indexed by object id, lazily.

    Columns are named by their last path component, prefixed with ``phot_`` for
    photometry.
    """
    chunk = int(store.array("object_id").chunks[0])
    rows = max(chunk, LABEL_PARTITION // chunk * chunk)
    ids = da.from_zarr(store.array("object_id")).rechunk(rows)
    names = [c.split("/", 1)[1] if c.startswith("labels/") else "phot_" + c.split("/", 1)[1]
             for c in columns]
    arrays = [da.from_zarr(store.array(c)).astype(np.float64).rechunk(rows) for c in columns]
    # the ids stay int64 (as a float64 column beside the values, a hashed 63-bit id would
    # lose its low bits and match no catalog row); both frames have the same partitions
    frame = dd.from_dask_array(ids, columns="object_id").to_frame()
    if arrays:
        values = dd.from_dask_array(da.stack(arrays, axis=1), columns=names)
        for name in names:
            frame[name] = values[name]
    divisions = _sorted_divisions(store, ids, rows)
    if divisions is None:
        log.info("store %s: object ids are not increasing; joining by hash", store.url)
        return frame.set_index("object_id")
    return frame.set_index("object_id", sorted=True, divisions=divisions)


def _sorted_divisions(store: SurveyStore, ids: da.Array, rows: int) -> list[int] | None:
    """Partition boundaries of the id column ``ids`` (partitions of ``rows``) when ids
    strictly increase, else None."""
    increasing = bool(da.all(ids[1:] > ids[:-1]).compute()) if len(ids) > 1 else True
    if not increasing:
        return None
    n = store.n_objects
    edges = list(range(0, n, rows))
    picks = np.asarray(store.array("object_id").get_coordinate_selection(
        np.array([*edges, n - 1])))
    return [int(v) for v in picks]


def join_labels(catalog: dd.DataFrame, labels: dd.DataFrame) -> dd.DataFrame:
    """Catalog rows with their labels (NaN where the store has none)."""
    if catalog.known_divisions and labels.known_divisions:
        return catalog.join(labels, how="left")
    return catalog.reset_index().merge(labels.reset_index(), on="object_id",
                                       how="left").set_index("object_id")


def list_values(series: pd.Series, width: int | None = None) -> np.ndarray:
    """A fixed-width list column of one partition as an (n, width) array, without a
    Python object per row."""
    import pyarrow as pa

    array = getattr(series.array, "_pa_array", None)
    if array is None:  # not Arrow-backed: a column of NumPy arrays
        return np.stack(series.to_numpy()) if len(series) else np.zeros((0, width or 0))
    combined = array.combine_chunks() if isinstance(array, pa.ChunkedArray) else array
    values = combined.flatten().to_numpy(zero_copy_only=False)
    n = len(combined)
    return values.reshape(n, -1) if n else np.zeros((0, width or 0), dtype=values.dtype)


def sample_joined(parts: Sequence[str], storage_options: dict[str, Any] | None,
                  store: SurveyStore, catalog_columns: Sequence[str],
                  store_columns: Sequence[str], rows: int, total_rows: int,
                  seed: int = 0) -> pd.DataFrame:
    """About ``rows`` random catalog rows (of ``total_rows``) with the store columns
    (:func:`labels_frame` names), read, joined and sampled on Dask; only the sample reaches
    the caller."""
    frame = join_labels(catalog_frame(parts, storage_options, catalog_columns),
                        labels_frame(store, store_columns))
    if rows < total_rows:
        frame = frame.sample(frac=rows / total_rows, random_state=seed)
    return frame.compute()


def dense_activations(frame: pd.DataFrame, idx_column: str, val_column: str,
                      n_features: int | None) -> np.ndarray:
    """A sparse model's (act_idx, act_val) columns as (rows, n_features) activations,
    zero where a feature is not among a galaxy's active ones."""
    index = list_values(frame[idx_column]).astype(np.int64)
    width = int(n_features) if n_features else int(index.max(initial=-1)) + 1
    dense = np.zeros((len(frame), width))
    np.put_along_axis(dense, index, list_values(frame[val_column]).astype(np.float64), axis=1)
    return dense
