"""Check an opened Zarr group against the store contract, one clear sentence per problem.

Validation runs every time a store is opened, before any worker is started, so
that a bad store fails in the first second with a message that names the
store, the rule and what was found, rather than an hour into a cluster job.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
import zarr

from ..errors import StoreFormatError
from ..models.background import MEASURES, METHOD
from . import layout

__all__ = ["StoreLayout", "find_duplicates", "validate_group", "zarr_array"]


@dataclass(frozen=True)
class StoreLayout:
    """What validation learned about a store: sizes, names, chunking."""

    n_objects: int
    bands: tuple[str, ...]
    height: int
    width: int
    dtype: str
    chunk_objects: int
    write_unit: int
    sharded: bool
    photometry_bands: tuple[str, ...]
    labels: tuple[str, ...]
    has_flags: bool
    #: False for a photometry-only store (its height, width are 0 and dtype "none")
    has_images: bool = True
    photometry_error_bands: tuple[str, ...] = ()
    #: the store keeps each cutout's pixel measures, measured the way this version measures
    #: (stores written before it, or measured another way, have them measured when read)
    has_pixel_measures: bool = False


def _fail(url: str, problem: str) -> StoreFormatError:
    return StoreFormatError(f"store {url}: {problem}")


def _check_attrs(url: str, attrs: dict[str, Any]) -> tuple[str, ...]:
    if "format_version" not in attrs:
        raise _fail(url, "group attribute 'format_version' is missing; "
                         "this is not a surveyproc store (create one with 'surveyproc synth' "
                         "or 'surveyproc ingest')")
    version = attrs["format_version"]
    if version not in layout.SUPPORTED_FORMAT_VERSIONS:
        supported = ", ".join(str(v) for v in sorted(layout.SUPPORTED_FORMAT_VERSIONS))
        raise _fail(url, f"unknown format version {version!r}; this surveyproc reads "
                         f"version {supported} (upgrade surveyproc or re-create the store)")
    missing = [a for a in layout.REQUIRED_ATTRS if a not in attrs]
    if missing:
        raise _fail(url, f"group attribute(s) {', '.join(repr(m) for m in missing)} missing")
    bands = attrs["bands"]
    if (not isinstance(bands, list) or not bands
            or not all(isinstance(b, str) for b in bands) or len(set(bands)) != len(bands)):
        raise _fail(url, "attribute 'bands' must be a non-empty list of unique names, "
                         f"got {bands!r}")
    scale = attrs["pixel_scale"]
    if not isinstance(scale, int | float) or scale <= 0:
        raise _fail(url, f"attribute 'pixel_scale' must be a positive number (arcsec/pixel), "
                         f"got {scale!r}")
    zero_points = attrs["zero_points"]
    if not isinstance(zero_points, dict) or set(zero_points) != set(bands):
        raise _fail(url, f"attribute 'zero_points' must give one value per band {bands}, "
                         f"got {zero_points!r}")
    if attrs.get("complete") is False:
        raise _fail(url, "writing this store did not finish (attribute 'complete' is false); "
                         "re-run the command that created it with --overwrite")
    return tuple(bands)


def zarr_array(url: str, group: zarr.Group, name: str) -> zarr.Array:
    """The array ``name`` of ``group``, or a :class:`StoreFormatError` saying what is wrong."""
    try:
        node = group[name]
    except KeyError:
        raise _fail(url, f"array {name!r} is missing") from None
    if not isinstance(node, zarr.Array):
        raise _fail(url, f"{name!r} is a group, expected an array")
    return node


def _check_column(url: str, array: zarr.Array, name: str, dtype: str, n: int) -> None:
    if array.ndim != 1 or array.shape[0] != n:
        raise _fail(url, f"array {name!r} has shape {array.shape} but the store holds {n} "
                         f"objects; expected ({n},)")
    if str(array.dtype) != dtype:
        raise _fail(url, f"array {name!r} has dtype {array.dtype}, expected {dtype}")


def _members(group: zarr.Group, name: str) -> list[str]:
    if name not in group:
        return []
    sub = group[name]
    return sorted(sub.array_keys()) if isinstance(sub, zarr.Group) else []


def find_duplicates(ids: np.ndarray) -> tuple[int, int, int] | None:
    """``(repeats, example id, its count)`` if ``ids`` has duplicates, else None.

    Linear time when ids are strictly increasing (as surveyproc writes them).
    """
    if ids.size < 2 or (np.diff(ids) > 0).all():
        return None
    ordered = np.sort(ids, kind="stable")
    dup = ordered[1:][ordered[1:] == ordered[:-1]]
    if not dup.size:
        return None
    first = int(dup[0])
    return int(dup.size), first, int(np.count_nonzero(ids == first))


def validate_group(url: str, group: zarr.Group, *, check_ids: bool = True) -> StoreLayout:
    """Validate ``group`` against the contract and describe its layout.

    Raises
    ------
    StoreFormatError
        On the first broken rule, with a message naming it.
    """
    attrs = dict(group.attrs)
    bands = _check_attrs(url, attrs)
    has_images = attrs.get(layout.HAS_IMAGES, True)
    if not isinstance(has_images, bool):
        raise _fail(url, f"attribute {layout.HAS_IMAGES!r} must be true or false, got "
                         f"{has_images!r}")
    measured = False
    if has_images:
        n, height, width, dtype, chunk, unit, sharded = _image_layout(url, group, bands)
        measured = _pixel_measures(url, group, n, chunk, len(bands))
    else:
        n, chunk, unit, sharded = _photometry_layout(url, group, attrs, bands)
        height = width = 0
        dtype = "none"
    for name, column_dtype in layout.REQUIRED_COLUMNS.items():
        _check_column(url, zarr_array(url, group, name), name, column_dtype, n)
    has_flags = layout.FLAGS in group
    if has_flags:
        _check_column(url, zarr_array(url, group, layout.FLAGS), layout.FLAGS,
                      layout.OPTIONAL_COLUMNS[layout.FLAGS], n)
    photometry = _members(group, layout.PHOTOMETRY)
    errors = _members(group, layout.PHOTOMETRY_ERROR)
    for group_name, members in ((layout.PHOTOMETRY, photometry),
                                (layout.PHOTOMETRY_ERROR, errors)):
        for band in members:
            if band not in bands:
                raise _fail(url, f"array '{group_name}/{band}' names a band that is not in "
                                 f"attribute 'bands' ({', '.join(bands)})")
            name = f"{group_name}/{band}"
            _check_column(url, zarr_array(url, group, name), name, layout.PHOTOMETRY_DTYPE, n)
    if not has_images and set(photometry) != set(bands):
        missing = [b for b in bands if b not in photometry]
        raise _fail(url, f"a store without images needs photometry of every band; "
                         f"'photometry/{missing[0]}' is missing")
    labels = _members(group, layout.LABELS)
    for label in labels:
        name = f"{layout.LABELS}/{label}"
        _check_column(url, zarr_array(url, group, name), name, layout.LABEL_DTYPE, n)
    ids = np.asarray(zarr_array(url, group, layout.OBJECT_ID)[:]) if check_ids else None
    duplicates = None if ids is None else find_duplicates(ids)
    if duplicates:
        repeats, example, count = duplicates
        raise _fail(url, f"array 'object_id' has duplicate ids ({repeats} repeats; e.g. "
                         f"{example} appears {count} times); ids must be unique")
    return StoreLayout(
        n_objects=n, bands=bands, height=height, width=width, dtype=dtype,
        chunk_objects=chunk, write_unit=unit, sharded=sharded,
        photometry_bands=tuple(b for b in bands if b in photometry),
        labels=tuple(labels), has_flags=has_flags, has_images=has_images,
        photometry_error_bands=tuple(b for b in bands if b in errors),
        has_pixel_measures=measured,
    )


def _pixel_measures(url: str, group: zarr.Group, n: int, chunk: int, n_bands: int) -> bool:
    """Whether the store keeps pixel measures this version can use; a measures array of
    the wrong shape, dtype or chunking breaks the contract."""
    if layout.PIXEL_MEASURES not in group:
        return False
    name = layout.PIXEL_MEASURES
    array = zarr_array(url, group, name)
    expected = (n, len(MEASURES), n_bands)
    if tuple(array.shape) != expected:
        raise _fail(url, f"array {name!r} has shape {array.shape}; expected {expected}: "
                         f"(objects, {', '.join(MEASURES)}, bands)")
    if str(array.dtype) != "float32":
        raise _fail(url, f"array {name!r} has dtype {array.dtype}, expected float32")
    if int(array.chunks[0]) != chunk or tuple(array.chunks[1:]) != expected[1:]:
        raise _fail(url, f"array {name!r} is chunked {array.chunks}; expected chunks of the "
                         f"images' {chunk} objects, i.e. ({chunk}, {len(MEASURES)}, "
                         f"{n_bands})")
    attrs = dict(array.attrs)
    return attrs.get("method") == METHOD and attrs.get("measures") == list(MEASURES)


def _image_layout(url: str, group: zarr.Group, bands: tuple[str, ...]
                  ) -> tuple[int, int, int, str, int, int, bool]:
    """Objects, height, width, dtype, chunk, write unit and sharding of a store's cutouts."""
    images = zarr_array(url, group, layout.IMAGES)
    if images.ndim != 4:
        raise _fail(url, f"array 'images' has {images.ndim} dimensions {images.shape}; "
                         "expected 4: (objects, bands, height, width)")
    if str(images.dtype) not in layout.IMAGE_DTYPES:
        raise _fail(url, f"array 'images' has dtype {images.dtype}; expected one of "
                         f"{', '.join(layout.IMAGE_DTYPES)}")
    n, n_bands, height, width = images.shape
    if n_bands != len(bands):
        raise _fail(url, f"array 'images' has {n_bands} bands but attribute 'bands' lists "
                         f"{len(bands)} ({', '.join(bands)})")
    if tuple(images.chunks[1:]) != (n_bands, height, width):
        raise _fail(url, f"array 'images' is chunked {images.chunks}; chunks must span whole "
                         f"cutouts, i.e. (k, {n_bands}, {height}, {width})")
    return (n, height, width, str(images.dtype), int(images.chunks[0]),
            int((images.shards or images.chunks)[0]), images.shards is not None)


def _photometry_layout(url: str, group: zarr.Group, attrs: dict[str, Any],
                       bands: tuple[str, ...]) -> tuple[int, int, int, bool]:
    """Objects, chunk, write unit and sharding of a photometry-only store: the object
    count from ``object_id``, the write unit from its attribute (a divisor of the
    columns' chunk, so parallel writers never share a chunk)."""
    if layout.IMAGES in group:
        raise _fail(url, f"attribute {layout.HAS_IMAGES!r} says the store has no images but "
                         "it holds an 'images' array")
    ids = zarr_array(url, group, layout.OBJECT_ID)
    n = int(ids.shape[0]) if ids.ndim == 1 else -1
    unit = attrs.get(layout.WRITE_UNIT)
    column_chunk = int(ids.chunks[0])
    if (not isinstance(unit, int) or isinstance(unit, bool) or unit < 1
            or (column_chunk % unit and column_chunk < n)):
        raise _fail(url, f"attribute {layout.WRITE_UNIT!r} must be a positive number of "
                         f"objects dividing the columns' chunk ({column_chunk}), got {unit!r}")
    return n, unit, unit, False
