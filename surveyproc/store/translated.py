"""Write a survey's galaxies, their pixels translated into another survey's, as a store.

An image-translation model turns survey A's cutouts into survey B's (bands, pixels,
PSF, depth).  What it writes is an ordinary surveyproc store: A's objects (ids,
positions, labels) with B's layout and calibration, so every command that reads a
store (``info``, ``infer``, the statistics) takes a translated survey unchanged, and a
model trained on B can be run on it to see what the translation kept.

B is described by :func:`survey_layout` (plain JSON, kept in a translator's checkpoint),
so a translation job needs the model and survey A only, not B's store.  Writing goes in
two steps, as the synthetic survey's: :func:`create_translated` lays the store out and
copies A's columns (a few bytes per object), then whoever translates writes the cutouts
one write unit at a time (:meth:`StoreWriter.write_images`, from any process) and the
store is marked complete once every unit is there.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

import numpy as np

from ..fs import join, resolve, write_bytes_atomic, zarr_store
from ..ops.progress import progress_bar
from . import layout
from .create import StoreWriter, create_store, existing_group
from .open import SurveyStore, open_store

__all__ = ["copy_columns", "create_translated", "done_marks", "mark_done", "store_attributes",
           "survey_layout", "translated_spec", "write_translated"]

#: Rows of 1-D columns copied per read when laying out a translated store.
_COLUMN_ROWS = 65536
#: Folder of a store being written whose files mark finished parts (see :func:`mark_done`).
_MARKS = "_written"


def survey_layout(store: SurveyStore) -> dict[str, Any]:
    """What a translated store takes from the target survey ``store``: bands, cutout size,
    pixel scale, flux unit, zero points, calibration, chunking and name (JSON)."""
    calibration = store.attrs.get("calibration")
    return {"survey": str(store.attrs.get("survey", "unnamed")), "bands": list(store.bands),
            "height": store.layout.height, "width": store.layout.width,
            "pixel_scale": float(store.attrs["pixel_scale"]),
            "flux_unit": str(store.attrs.get("flux_unit", layout.FLUX_UNIT)),
            "zero_points": dict(store.attrs.get("zero_points") or {}),
            "calibration": dict(calibration) if calibration else None,
            "chunk_objects": store.layout.chunk_objects}


def translated_spec(source: SurveyStore, target: Mapping[str, Any]) -> layout.StoreSpec:
    """The layout of ``source``'s objects in the ``target`` survey's layout
    (:func:`survey_layout`).  The translated survey has no photometry of its own (it was
    never measured), so the store has none; labels and their units are ``source``'s."""
    if not source.layout.has_images:
        msg = f"store {source.url} has no cutouts to translate"
        raise ValueError(msg)
    return layout.StoreSpec(
        n_objects=source.n_objects, bands=tuple(target["bands"]), height=int(target["height"]),
        width=int(target["width"]), labels=tuple(source.label_names), photometry=False,
        chunk_objects=int(target["chunk_objects"]), compression=layout.DEFAULT_COMPRESSION,
        survey=f"{source.attrs.get('survey', 'unnamed')} translated to {target['survey']}",
        pixel_scale=float(target["pixel_scale"]), flux_unit=str(target["flux_unit"]),
        zero_points=dict(target.get("zero_points") or {}),
        label_units=dict(source.attrs.get("label_units") or {}),
        label_notes=dict(source.attrs.get("label_notes") or {}),
        calibration=dict(target["calibration"]) if target.get("calibration") else None)


def create_translated(source: SurveyStore, url: str, target: Mapping[str, Any], *,
                      storage_options: dict[str, Any] | None = None,
                      provenance: dict[str, Any] | None = None,
                      overwrite: bool = False) -> tuple[StoreWriter, int]:
    """Lay out a store at ``url`` (:func:`translated_spec`) and copy ``source``'s ids,
    positions, flags and labels into it; the cutouts are left for the caller (whole write
    units of the returned size), then the writer's ``finalize``."""
    spec = translated_spec(source, target)
    create_store(url, spec, storage_options=storage_options, overwrite=overwrite,
                 provenance={"generator": "surveyproc.store.translated",
                             "source": source.url, **(provenance or {})})
    writer = StoreWriter(url, storage_options)
    copy_columns(source, writer)
    return writer, spec.write_unit


def copy_columns(source: SurveyStore, writer: StoreWriter) -> None:
    """``source``'s 1-D columns (ids, positions, flags, labels) into ``writer``'s store;
    writing them again writes the same values (a resumed job may)."""
    for start in range(0, source.n_objects, _COLUMN_ROWS):
        batch = source.read(start, min(start + _COLUMN_ROWS, source.n_objects), images=False,
                            photometry=False)
        writer.add_columns(batch)


def store_attributes(url: str, storage_options: dict[str, Any] | None = None
                     ) -> dict[str, Any] | None:
    """The attributes of the store at ``url``, finished or not; None where there is none
    (a translation job resumes an unfinished store it started, which ``open_store``
    refuses to read)."""
    group = existing_group(zarr_store(url, storage_options, read_only=True))
    return None if group is None else dict(group.attrs.asdict())


def mark_done(url: str, name: str, storage_options: dict[str, Any] | None = None) -> None:
    """Record that part ``name`` of a store being written is complete (a small file under
    ``_written/`` beside the arrays, which Zarr ignores), after its data are written."""
    write_bytes_atomic(join(url, _MARKS, name), b"", storage_options)


def done_marks(url: str, storage_options: dict[str, Any] | None = None) -> set[str]:
    """Names recorded by :func:`mark_done` at ``url``."""
    fs, path = resolve(join(url, _MARKS), storage_options)
    try:
        return {entry.rstrip("/").rsplit("/", 1)[-1] for entry in fs.ls(path, detail=False)}
    except FileNotFoundError:
        return set()


def write_translated(source: SurveyStore, url: str,
                     translate: Callable[[np.ndarray, int], np.ndarray], *,
                     like: SurveyStore, storage_options: dict[str, Any] | None = None,
                     provenance: dict[str, Any] | None = None,
                     overwrite: bool = False) -> SurveyStore:
    """In this process: a new store at ``url`` holding ``source``'s objects with pixels
    ``translate(images, start)`` (n, like's bands, like's size) in ``like``'s layout
    (``surveyproc translate`` does the same on Ray actors, from a checkpoint).

    ``translate`` sees one write unit at a time, with the index of its first object (for
    reproducible noise), so a survey of any size needs one unit's memory."""
    target = survey_layout(like)
    writer, unit = create_translated(source, url, target, storage_options=storage_options,
                                     provenance={"like": like.url, **(provenance or {})},
                                     overwrite=overwrite)
    with progress_bar(total=source.n_objects, desc="translate", unit="obj") as bar:
        for start in range(0, source.n_objects, unit):
            stop = min(start + unit, source.n_objects)
            batch = source.read(start, stop, labels=False, photometry=False)
            assert batch.images is not None
            writer.write_images(start, np.asarray(translate(batch.images, start),
                                                  dtype=np.float32))
            bar.update(stop - start)
    writer.finalize()
    return open_store(url, storage_options)
