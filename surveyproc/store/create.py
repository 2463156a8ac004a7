"""Create an empty survey store and write whole units into it.

Writers (synthesis, ingest) first lay out the store with :func:`create_store`,
then any number of processes write disjoint *write units* through
:class:`StoreWriter`, and one call to :meth:`StoreWriter.finalize` marks the
store complete.  A store whose writing stopped half way is still a valid Zarr
group but says ``complete: false``, and :func:`~surveyproc.store.open_store`
refuses it with a message, so an interrupted run never passes for a finished one.
"""

from __future__ import annotations

import datetime as _dt
import platform
from typing import Any

import numpy as np
import zarr

from .. import __version__
from ..errors import InvalidParameterError, StoreExistsError
from ..fs import normalize, redact, zarr_store
from . import layout
from .batch import CutoutBatch

__all__ = ["StoreWriter", "create_store"]


def _group_exists(store) -> bool:
    try:
        zarr.open_group(store=store, mode="r")
    except (FileNotFoundError, zarr.errors.GroupNotFoundError, zarr.errors.NodeTypeValidationError):
        return False
    return True


def create_store(
    url: str,
    spec: layout.StoreSpec,
    *,
    storage_options: dict[str, Any] | None = None,
    provenance: dict[str, Any] | None = None,
    overwrite: bool = False,
) -> None:
    """Lay out an empty store at ``url`` following ``spec``.

    Raises
    ------
    StoreExistsError
        A Zarr group already exists at ``url`` and ``overwrite`` is False.
    """
    store = zarr_store(url, storage_options, read_only=False)
    if not overwrite and _group_exists(store):
        msg = f"store {redact(url)} already exists; choose another path or pass --overwrite"
        raise StoreExistsError(msg)
    group = zarr.open_group(store=store, mode="w", zarr_format=3)
    unit = spec.write_unit
    n = spec.n_objects
    chunk = min(spec.chunk_objects, n)
    shard = None if spec.shard_chunks is None else min(unit, -(-n // chunk) * chunk)
    image_shape = (n, len(spec.bands), spec.height, spec.width)
    group.create_array(
        layout.IMAGES,
        shape=image_shape,
        chunks=(chunk, *image_shape[1:]),
        shards=None if shard is None else (shard, *image_shape[1:]),
        dtype=spec.dtype,
        compressors=layout.compressors(spec.compression),
        fill_value=np.nan,
        dimension_names=("object", "band", "y", "x"),
    )
    # 1-D columns are chunked by the write unit so that each writer owns whole chunks.
    column_chunk = min(unit, n)

    def column(name: str, dtype: str, fill: Any) -> None:
        group.create_array(name, shape=(n,), chunks=(column_chunk,), dtype=dtype,
                           compressors=layout.compressors("zstd"), fill_value=fill,
                           dimension_names=("object",))

    column(layout.OBJECT_ID, "int64", 0)
    column(layout.RA, "float64", np.nan)
    column(layout.DEC, "float64", np.nan)
    column(layout.FLAGS, "int32", 0)
    if spec.photometry:
        for band in spec.bands:
            column(f"{layout.PHOTOMETRY}/{band}", layout.PHOTOMETRY_DTYPE, np.nan)
    for name in spec.labels:
        column(f"{layout.LABELS}/{name}", layout.LABEL_DTYPE, np.nan)
    group.attrs.update(spec.attributes(_provenance(provenance)))


def _provenance(extra: dict[str, Any] | None) -> dict[str, Any]:
    return {
        "created": _dt.datetime.now(_dt.UTC).isoformat(timespec="seconds"),
        "surveyproc_version": __version__,
        "python": platform.python_version(),
        "zarr_version": zarr.__version__,
        **(extra or {}),
    }


class StoreWriter:
    """Writes whole units of objects into a store laid out by :func:`create_store`.

    Cheap to pickle: it carries only the URL and options and opens the group on
    first use, so one writer object can be shipped to many Ray tasks.
    """

    def __init__(self, url: str, storage_options: dict[str, Any] | None = None) -> None:
        self.url = normalize(url)  # absolute before it travels to workers with another cwd
        self._storage_options = storage_options
        self._group: zarr.Group | None = None
        self._arrays: dict[str, zarr.Array] = {}

    def __getstate__(self) -> dict[str, Any]:
        return {"url": self.url, "_storage_options": self._storage_options,
                "_group": None, "_arrays": {}}

    @property
    def group(self) -> zarr.Group:
        if self._group is None:
            store = zarr_store(self.url, self._storage_options, read_only=False)
            self._group = zarr.open_group(store=store, mode="r+")
        return self._group

    def write(self, batch: CutoutBatch) -> None:
        """Write ``batch`` at its ``start``; it must cover whole write units."""
        n = int(self._array(layout.OBJECT_ID).shape[0])
        images = self._array(layout.IMAGES)
        unit = int((images.shards or images.chunks)[0])
        if batch.start % unit or (batch.stop % unit and batch.stop != n) or batch.stop > n:
            msg = (f"batch [{batch.start}, {batch.stop}) is not aligned to the store's write "
                   f"unit of {unit} objects (store holds {n})")
            raise InvalidParameterError(msg)
        rows = slice(batch.start, batch.stop)
        if batch.images is not None:
            images = self._array(layout.IMAGES)
            images[rows] = batch.images.astype(images.dtype, copy=False)
        self._array(layout.OBJECT_ID)[rows] = batch.object_id.astype(np.int64, copy=False)
        self._array(layout.RA)[rows] = batch.ra
        self._array(layout.DEC)[rows] = batch.dec
        self._array(layout.FLAGS)[rows] = batch.flags
        for band, values in batch.photometry.items():
            self._array(f"{layout.PHOTOMETRY}/{band}")[rows] = values
        for name, values in batch.labels.items():
            self._array(f"{layout.LABELS}/{name}")[rows] = values

    def _array(self, name: str) -> zarr.Array:
        # Opening an array reads its metadata (one request on object stores): do it once.
        if name not in self._arrays:
            self._arrays[name] = self.group[name]
        return self._arrays[name]

    def finalize(self, **provenance: Any) -> None:
        """Mark the store complete and record extra provenance (e.g. an ingest report)."""
        attrs = self.group.attrs
        merged = {**attrs["provenance"], **provenance}
        attrs.update({"provenance": merged, "complete": True})
