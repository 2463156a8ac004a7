"""Shared machinery of the ingest commands: write catalog rows unit by unit on Ray tasks.

Each task reads the pixels of one write unit's objects (``read_pixels``),
calibrates them (nanomaggies, sky subtracted: :mod:`.calibrate`), writes the
unit into the store and returns its :class:`IngestReport`; the
driver merges the reports and marks the store complete only when at least one
object was read, so a run where nothing could be read fails loudly.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np

from ...errors import IngestError
from ...fs import is_process_local, redact
from ...ops.ray_runtime import map_units
from ..batch import CutoutBatch
from ..create import StoreWriter, create_store
from ..layout import StoreSpec
from ..shards import Shard, plan_shards
from .calibrate import Calibration
from .catalog import Catalog
from .report import IngestReport

__all__ = ["PixelReader", "ingest_units"]

#: ``read_pixels(rows, first_row, report) -> (images (n, bands, h, w), flags (n,))``
PixelReader = Callable[[Catalog, int, IngestReport], tuple[np.ndarray, np.ndarray]]


def _ingest_unit(read_pixels: PixelReader, calibration: Calibration, writer: StoreWriter,
                 rows: Catalog, unit: Shard) -> tuple[np.ndarray, IngestReport]:
    """Read, calibrate and write one unit's pixels; hand back its flags and report."""
    report = IngestReport()
    images, flags = read_pixels(rows, unit.start, report)
    if rows.flags is not None:
        flags = flags | rows.flags
    report.count_flags(flags)
    images, sky, noise = calibration.apply(images)
    report.background.add("sky", sky)
    report.background.add("noise", noise)
    writer.write_images(unit.start, images)
    return flags, report


def _run(args: tuple[PixelReader, Calibration, StoreWriter, Catalog, Shard]):
    return _ingest_unit(*args)


def ingest_units(
    out_url: str,
    spec: StoreSpec,
    catalog: Catalog,
    read_pixels: PixelReader,
    calibration: Calibration,
    *,
    psf_fwhm: dict[str, float | None],
    input_unit: str,
    provenance: dict[str, Any],
    storage_options: dict[str, Any] | None,
    overwrite: bool,
    parallel: bool,
    desc: str,
) -> IngestReport:
    """Create the store, ingest every unit, finalize (recording the calibration), and return
    the merged report."""
    if catalog.photometry and set(catalog.photometry) != set(spec.bands):
        msg = (f"photometry columns are given for bands {sorted(catalog.photometry)} but the "
               f"store's bands are {list(spec.bands)}; give one column per band")
        raise IngestError(msg)
    create_store(out_url, spec, storage_options=storage_options, provenance=provenance,
                 overwrite=overwrite)
    writer = StoreWriter(out_url, storage_options)
    units = plan_shards(len(catalog), spec.write_unit)
    work = [(read_pixels, calibration, writer, catalog.rows(u.start, u.stop), u)
            for u in units]
    report = IngestReport()
    for (_, _, _, rows, unit), (flags, unit_report) in map_units(
            _run, work, weight=lambda item: len(item[4]), desc=desc,
            parallel=parallel and not is_process_local(out_url)):
        writer.add_columns(CutoutBatch(start=unit.start, object_id=rows.object_id, ra=rows.ra,
                                       dec=rows.dec, flags=flags, photometry=rows.photometry,
                                       labels=rows.labels))
        report.merge(unit_report)
    if report.flags.get("NO_DATA", 0) == report.n_objects:
        reasons = ", ".join(f"{k} ({v})" for k, v in report.problems.items())
        msg = (f"store {redact(out_url)}: no object could be read ({reasons}); the store was "
               "left marked incomplete")
        raise IngestError(msg)
    writer.finalize(attributes={"calibration": calibration.attributes(
        report.background, psf_fwhm, input_unit)}, ingest_report=report.to_dict())
    return report
