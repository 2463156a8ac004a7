"""Write a survey's galaxies, their pixels translated into another survey's, as a store.

An image-translation model turns survey A's cutouts into survey B's (bands, pixels,
PSF, depth).  What it writes is an ordinary surveyproc store: A's objects (ids,
positions, labels) with B's layout and calibration, so every command that reads a
store (``info``, ``infer``, the statistics) takes a translated survey unchanged, and a
model trained on B can be run on it to see what the translation kept.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np

from ..ops.progress import progress_bar
from . import layout
from .batch import CutoutBatch
from .create import StoreWriter, create_store
from .open import SurveyStore, open_store

__all__ = ["write_translated"]


def write_translated(source: SurveyStore, url: str,
                     translate: Callable[[np.ndarray, int], np.ndarray], *,
                     like: SurveyStore, storage_options: dict[str, Any] | None = None,
                     provenance: dict[str, Any] | None = None,
                     overwrite: bool = False) -> SurveyStore:
    """A new store at ``url`` holding ``source``'s objects with pixels
    ``translate(images, start)`` (n, like's bands, like's size) and ``like``'s bands,
    cutout size, pixel scale, flux unit and calibration; labels and their units are
    ``source``'s.  The translated survey has no photometry of its own (it was never
    measured), so the store has none.

    ``translate`` sees one write unit at a time, with the index of its first object (for
    reproducible noise), so a survey of any size needs one unit's memory."""
    if not source.layout.has_images:
        msg = f"store {source.url} has no cutouts to translate"
        raise ValueError(msg)
    calibration = like.attrs.get("calibration")
    spec = layout.StoreSpec(
        n_objects=source.n_objects, bands=tuple(like.bands), height=like.layout.height,
        width=like.layout.width, labels=tuple(source.label_names), photometry=False,
        chunk_objects=like.layout.chunk_objects, compression=layout.DEFAULT_COMPRESSION,
        survey=f"{source.attrs.get('survey', 'unnamed')} translated to "
               f"{like.attrs.get('survey', 'unnamed')}",
        pixel_scale=float(like.attrs["pixel_scale"]),
        flux_unit=str(like.attrs.get("flux_unit", layout.FLUX_UNIT)),
        zero_points=dict(like.attrs.get("zero_points") or {}),
        label_units=dict(source.attrs.get("label_units") or {}),
        label_notes=dict(source.attrs.get("label_notes") or {}),
        calibration=dict(calibration) if calibration else None)
    create_store(url, spec, storage_options=storage_options, overwrite=overwrite,
                 provenance={"generator": "surveyproc.store.translated",
                             "source": source.url, "like": like.url, **(provenance or {})})
    writer = StoreWriter(url, storage_options)
    expected = (len(like.bands), like.layout.height, like.layout.width)
    with progress_bar(total=source.n_objects, desc="translate", unit="obj") as bar:
        for start in range(0, source.n_objects, spec.write_unit):
            stop = min(start + spec.write_unit, source.n_objects)
            batch = source.read(start, stop, photometry=False)
            assert batch.images is not None
            images = np.asarray(translate(batch.images, start), dtype=np.float32)
            if images.shape != (stop - start, *expected):
                msg = (f"the translation gave cutouts of shape {images.shape[1:]}, the target "
                       f"survey's are {expected}")
                raise ValueError(msg)
            writer.write(CutoutBatch(start=start, object_id=batch.object_id, ra=batch.ra,
                                     dec=batch.dec, images=images, flags=batch.flags,
                                     labels=batch.labels))
            bar.update(stop - start)
    writer.finalize()
    return open_store(url, storage_options)
