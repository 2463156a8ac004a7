"""Summarise a store for people (``surveyproc info``) and for machines (``--json``)."""

from __future__ import annotations

from typing import Any

import numpy as np

from ..flags import count as count_flags
from . import layout
from .layout import compression_name
from .open import SurveyStore

__all__ = ["describe_store", "format_description"]


def _column_summary(values: np.ndarray) -> dict[str, Any]:
    finite = values[np.isfinite(values)]
    summary: dict[str, Any] = {"missing": int(values.size - finite.size)}
    if finite.size:
        lo, med, hi = np.percentile(finite, [0, 50, 100])
        summary.update(min=float(lo), median=float(med), max=float(hi))
    return summary


def _stored_bytes(store: SurveyStore) -> int | None:
    try:
        fs, path = store.filesystem()
        return int(fs.du(path, total=True))
    except (OSError, NotImplementedError, ValueError):
        return None


def describe_store(store: SurveyStore) -> dict[str, Any]:
    """Everything ``surveyproc info`` shows, as plain JSON-able values."""
    lay = store.layout
    images = store.array(layout.IMAGES) if lay.has_images else None
    attrs = store.attrs
    units = attrs.get("label_units", {})
    notes = attrs.get("label_notes", {})
    return {
        "url": store.url,
        "survey": attrs["survey"],
        "format_version": attrs["format_version"],
        "n_objects": lay.n_objects,
        "bands": list(lay.bands),
        "image_shape": [lay.n_objects, len(lay.bands), lay.height, lay.width],
        "dtype": lay.dtype,
        "pixel_scale": attrs["pixel_scale"],
        "flux_unit": attrs["flux_unit"],
        "zero_points": attrs["zero_points"],
        "calibration": attrs.get("calibration"),
        "chunk_objects": lay.chunk_objects,
        "n_chunks": -(-lay.n_objects // lay.chunk_objects),
        "shard_objects": lay.write_unit if lay.sharded else None,
        "has_images": lay.has_images,
        "pixel_measures": lay.has_pixel_measures,
        "compression": compression_name(images.compressors) if images is not None else "none",
        "uncompressed_bytes": int(images.nbytes) if images is not None else 0,
        "stored_bytes": _stored_bytes(store),
        "labels": {name: {"unit": units.get(name, ""), "note": notes.get(name, ""),
                          **_column_summary(store.read_column(f"{layout.LABELS}/{name}"))}
                   for name in lay.labels},
        "photometry": {band: _column_summary(store.read_column(f"{layout.PHOTOMETRY}/{band}"))
                       for band in lay.photometry_bands},
        "photometry_errors": list(lay.photometry_error_bands),
        "flags": count_flags(store.read_column(layout.FLAGS)),
        "provenance": attrs.get("provenance", {}),
    }


def _bytes(n: int | None) -> str:
    if n is None:
        return "unknown"
    size = float(n)
    for unit in ("B", "KB", "MB", "GB", "TB"):
        if size < 1000 or unit == "TB":
            return f"{size:.0f} {unit}" if unit == "B" else f"{size:.1f} {unit}"
        size /= 1000
    return f"{n} B"


def _table(rows: dict[str, dict[str, Any]], unit: bool) -> list[str]:
    lines = []
    width = max((len(k) for k in rows), default=4)
    for name, s in rows.items():
        rng = (f"{s['min']:>11.4g} {s['median']:>11.4g} {s['max']:>11.4g}"
               if "min" in s else f"{'(all missing)':>35}")
        said = [s[k] for k in ("unit", "note") if unit and s.get(k)]
        extra = f"  {'; '.join(said)}" if said else ""
        lines.append(f"    {name:<{width}} {rng} {s['missing']:>9}{extra}")
    return lines


def _per_band(values: dict[str, Any], fmt: str) -> str:
    return " ".join(f"{band}={'?' if v is None else format(v, fmt)}"
                    for band, v in values.items())


def _calibration_lines(calibration: dict[str, Any] | None, flux_unit: str) -> list[str]:
    if not calibration:
        return ["calibration unknown (no calibration record: sky level, noise and PSF were "
                "not measured)"]
    state = "sky subtracted" if calibration.get("sky_subtracted") else "sky NOT subtracted"
    lines = [f"calibration {state} ({calibration.get('sky_method', '?')}); input "
             f"{calibration.get('input_unit', '?')} at zero points "
             f"{_per_band(calibration.get('input_zero_points', {}), 'g')}"]
    if calibration.get("noise"):
        lines.append(f"noise       {_per_band(calibration['noise'], '.3g')} {flux_unit} per "
                     "pixel (median)")
    if calibration.get("sky_before_subtraction"):
        lines.append(f"sky         {_per_band(calibration['sky_before_subtraction'], '.3g')} "
                     f"{flux_unit} per pixel before subtraction (median)")
    if calibration.get("psf_fwhm"):
        lines.append(f"psf fwhm    {_per_band(calibration['psf_fwhm'], '.3g')} arcsec")
    return lines


def format_description(d: dict[str, Any]) -> str:
    """Human-readable text of :func:`describe_store`'s result."""
    n, b, h, w = d["image_shape"]
    stored = d["stored_bytes"]
    ratio = f", ratio {d['uncompressed_bytes'] / stored:.2f}" if stored else ""
    shard = (f", sharded: {d['shard_objects']} objects per shard" if d["shard_objects"]
             else ", not sharded")
    zp = " ".join(f"{band}={value:g}" for band, value in d["zero_points"].items())
    lines = [
        f"store       {d['url']}",
        f"survey      {d['survey']} (format {d['format_version']})",
        f"objects     {d['n_objects']:,}",
        f"bands       {' '.join(d['bands'])}  (zero points {zp}; {d['flux_unit']}; "
        f"{d['pixel_scale']:.4g} arcsec/pixel)",
        *_calibration_lines(d.get("calibration"), d["flux_unit"]),
        (f"images      {n} x {b} x {h} x {w} {d['dtype']}, {_bytes(d['uncompressed_bytes'])} "
         f"raw, {_bytes(stored)} stored{ratio}" if d.get("has_images", True) else
         f"images      none (a photometry-only store), {_bytes(stored)} stored"),
        f"chunking    {d['chunk_objects']} objects per chunk ({d['n_chunks']} chunks){shard}, "
        f"{d['compression']}",
    ]
    if d.get("has_images", True):
        lines.append("measures    " + (
            "sky, noise and central flux of every cutout, kept (inference reads them)"
            if d.get("pixel_measures") else
            "not kept (written before they were, or another way): inference measures the "
            "pixels"))
    header = f"    {'name':<{max((len(k) for k in d['labels']), default=4)}} " \
             f"{'min':>11} {'median':>11} {'max':>11} {'missing':>9}"
    lines.append(f"labels      {len(d['labels'])}" + ("" if d["labels"] else " (none)"))
    if d["labels"]:
        lines += [header, *_table(d["labels"], unit=True)]
    errors = d.get("photometry_errors") or []
    lines.append(f"photometry  {len(d['photometry'])} band(s)"
                 + (f", with errors ({' '.join(errors)})" if errors else ""))
    if d["photometry"]:
        lines += _table(d["photometry"], unit=False)
    flags = ", ".join(f"{k}: {v}" for k, v in d["flags"].items()) or "none set"
    lines.append(f"flags       {flags}")
    prov = d["provenance"]
    lines.append(f"created     {prov.get('created', '?')} by surveyproc "
                 f"{prov.get('surveyproc_version', '?')} ({prov.get('generator', 'unknown')})")
    return "\n".join(lines)
