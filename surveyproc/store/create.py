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
from dataclasses import replace
from typing import Any

import numpy as np
import zarr

from .. import __version__
from ..errors import InvalidParameterError, StoreExistsError
from ..fs import normalize, redact, zarr_store
from ..models.background import MEASURES, METHOD, measure_background
from . import layout
from .batch import CutoutBatch
from .validate import zarr_array

__all__ = ["StoreWriter", "create_store"]


def existing_group(store) -> zarr.Group | None:
    """The Zarr group in ``store`` (a Zarr store), read-only, finished or not; None where
    there is none."""
    try:
        return zarr.open_group(store=store, mode="r")
    except (FileNotFoundError, zarr.errors.GroupNotFoundError, zarr.errors.NodeTypeValidationError):
        return None


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
    if not overwrite and existing_group(store) is not None:
        msg = f"store {redact(url)} already exists; choose another path or pass --overwrite"
        raise StoreExistsError(msg)
    group = zarr.open_group(store=store, mode="w", zarr_format=3)
    unit = spec.write_unit
    n = spec.n_objects
    chunk = min(spec.chunk_objects, n)
    shard = None if spec.shard_chunks is None else min(unit, -(-n // chunk) * chunk)
    if spec.images:
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
        measures_shape = (n, len(MEASURES), len(spec.bands))
        measures = group.create_array(
            layout.PIXEL_MEASURES,
            shape=measures_shape,
            chunks=(chunk, *measures_shape[1:]),
            shards=None if shard is None else (shard, *measures_shape[1:]),
            dtype="float32",
            compressors=layout.compressors("zstd"),
            fill_value=np.nan,
            dimension_names=("object", "measure", "band"),
        )
        measures.attrs.update({"measures": list(MEASURES), "method": METHOD})
    # 1-D columns are chunked in large windows (one request per column per window
    # for readers); StoreWriter.add_columns writes them window by window.
    column_chunk = spec.column_chunk_objects

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
            if spec.photometry_errors:
                column(f"{layout.PHOTOMETRY_ERROR}/{band}", layout.PHOTOMETRY_DTYPE, np.nan)
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
    """Writes a store laid out by :func:`create_store`: images by unit, columns by window.

    Images are written by whoever made them (a Ray task), one whole write unit
    at a time, so parallel writers never share a chunk.  The small 1-D columns
    (ids, coordinates, flags, photometry, labels) are chunked in large windows
    so that a reader needs one request per column per window, not per unit;
    they reach the store through one writer, usually the driver, which buffers
    units with :meth:`add_columns` and writes each window once it is whole.

    Cheap to pickle: it carries only the URL and options and opens the group on
    first use; buffered columns stay with the original.
    """

    def __init__(self, url: str, storage_options: dict[str, Any] | None = None) -> None:
        self.url = normalize(url)  # absolute before it travels to workers with another cwd
        self._storage_options = storage_options
        self._group: zarr.Group | None = None
        self._arrays: dict[str, zarr.Array] = {}
        self._pending: dict[int, dict[int, CutoutBatch]] = {}  # window -> start -> batch
        self._measures: bool | None = None

    def __getstate__(self) -> dict[str, Any]:
        return {"url": self.url, "_storage_options": self._storage_options,
                "_group": None, "_arrays": {}, "_pending": {}, "_measures": None}

    @property
    def group(self) -> zarr.Group:
        if self._group is None:
            store = zarr_store(self.url, self._storage_options, read_only=False)
            self._group = zarr.open_group(store=store, mode="r+")
        return self._group

    def _array(self, name: str) -> zarr.Array:
        # Opening an array reads its metadata (one request on object stores): do it once.
        if name not in self._arrays:
            self._arrays[name] = zarr_array(redact(self.url), self.group, name)
        return self._arrays[name]

    def write_images(self, start: int, images: np.ndarray) -> None:
        """Write the cutouts of objects ``[start, start + len(images))``: whole write units,
        with their pixel measures where the store keeps them (measured on the pixels as
        stored, so that they equal what a reader would measure)."""
        array = self._array(layout.IMAGES)
        n, unit = array.shape[0], int((array.shards or array.chunks)[0])
        stop = start + len(images)
        if images.ndim != 4 or images.shape[1:] != array.shape[1:]:
            # Zarr would take a mismatched block without complaint and store a wrong one
            msg = (f"cutouts of shape {images.shape[1:]} do not fit store "
                   f"{redact(self.url)}, whose cutouts are {array.shape[1:]} "
                   "(bands, height, width)")
            raise InvalidParameterError(msg)
        if start % unit or (stop % unit and stop != n) or stop > n:
            msg = (f"objects [{start}, {stop}) are not aligned to the store's write unit of "
                   f"{unit} objects (store holds {n})")
            raise InvalidParameterError(msg)
        stored = images.astype(array.dtype, copy=False)
        array[start:stop] = stored
        if self._keeps_measures():
            measures = self._array(layout.PIXEL_MEASURES)
            measures[start:stop] = measure_background(stored).as_array()

    def _keeps_measures(self) -> bool:
        """Whether the store has a pixel-measures array (stores laid out before it had none)."""
        if self._measures is None:
            self._measures = layout.PIXEL_MEASURES in self.group
        return self._measures

    def add_columns(self, batch: CutoutBatch) -> None:
        """Buffer a batch's 1-D columns; write every column window that is now complete."""
        window = int(self._array(layout.OBJECT_ID).chunks[0])
        n = int(self._array(layout.OBJECT_ID).shape[0])
        first, last = batch.start // window, (batch.stop - 1) // window
        if first != last:
            for w in range(first, last + 1):  # split a batch that spans windows
                lo, hi = max(batch.start, w * window), min(batch.stop, (w + 1) * window)
                self.add_columns(_rows(batch, lo, hi))
            return
        parts = self._pending.setdefault(first, {})
        parts[batch.start] = replace(batch, images=None)
        lo, hi = first * window, min((first + 1) * window, n)
        if sum(len(b) for b in parts.values()) == hi - lo:
            whole = CutoutBatch.concat([parts[k] for k in sorted(parts)])
            if whole.start != lo or whole.stop != hi:
                msg = f"column batches of window [{lo}, {hi}) overlap"
                raise InvalidParameterError(msg)
            self._write_columns(whole)
            del self._pending[first]

    def _write_columns(self, batch: CutoutBatch) -> None:
        rows = slice(batch.start, batch.stop)
        self._array(layout.OBJECT_ID)[rows] = batch.object_id.astype(np.int64, copy=False)
        self._array(layout.RA)[rows] = batch.ra
        self._array(layout.DEC)[rows] = batch.dec
        self._array(layout.FLAGS)[rows] = batch.flags
        for band, values in batch.photometry.items():
            self._array(f"{layout.PHOTOMETRY}/{band}")[rows] = values
        for band, values in batch.photometry_error.items():
            self._array(f"{layout.PHOTOMETRY_ERROR}/{band}")[rows] = values
        for name, values in batch.labels.items():
            self._array(f"{layout.LABELS}/{name}")[rows] = values

    def write(self, batch: CutoutBatch) -> None:
        """Write a batch's images and buffer its columns (single-process writers)."""
        if batch.images is not None:
            self.write_images(batch.start, batch.images)
        self.add_columns(batch)

    def finalize(self, *, attributes: dict[str, Any] | None = None, **provenance: Any) -> None:
        """Check every object's columns arrived, then mark the store complete (adding
        ``attributes`` learnt while writing, such as ingest's calibration, and ``provenance``).

        Raises
        ------
        InvalidParameterError
            Some objects were never written; the store stays marked incomplete.
        """
        if self._pending:
            window = int(self._array(layout.OBJECT_ID).chunks[0])
            first = min(self._pending)
            msg = (f"store {redact(self.url)}: objects of [{first * window}, "
                   f"{(first + 1) * window}) were only partly written; the store stays "
                   "marked incomplete")
            raise InvalidParameterError(msg)
        attrs = self.group.attrs
        before = attrs.asdict().get("provenance")
        merged = {**(before if isinstance(before, dict) else {}), **provenance}
        attrs.update({**(attributes or {}), "provenance": merged, "complete": True})


def _rows(batch: CutoutBatch, start: int, stop: int) -> CutoutBatch:
    """Objects ``[start, stop)`` of ``batch`` (absolute indices), without images."""
    cut = slice(start - batch.start, stop - batch.start)
    return CutoutBatch(start=start, object_id=batch.object_id[cut], ra=batch.ra[cut],
                       dec=batch.dec[cut], flags=batch.flags[cut],
                       photometry={k: v[cut] for k, v in batch.photometry.items()},
                       photometry_error={k: v[cut] for k, v in batch.photometry_error.items()},
                       labels={k: v[cut] for k, v in batch.labels.items()})
