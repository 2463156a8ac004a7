"""Read an object catalog (FITS table, CSV, ECSV) into ids, coordinates, labels and photometry.

Column names are matched case-insensitively.  Object ids come from one
integer column, from a hash of several columns (for catalogs such as SDSS
whose ``objid`` was rounded and is no longer unique, use
``id_from=("plate", "mjd", "fiberid")``), or from row numbers.  Every
problem is an :class:`~surveyproc.errors.IngestError` naming the catalog,
the column and, for values, an example row.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field
from typing import Any, Literal

import numpy as np
from astropy.table import Table

from ...errors import IngestError
from ...fs import redact, resolve
from ..layout import ZERO_POINT
from ..validate import find_duplicates

__all__ = ["Catalog", "CatalogColumns", "catalog_from_table", "read_catalog"]


@dataclass(frozen=True)
class CatalogColumns:
    """How to find things in a catalog's columns.

    Parameters
    ----------
    id_column
        Integer column of unique object ids.
    id_from
        Build ids by hashing these columns (stable 63-bit BLAKE2b), instead of ``id_column``.
    row_ids
        Number objects 0..N-1 in catalog order, instead of either.
    ra, dec
        Coordinate columns, degrees (ICRS).
    labels
        Columns to store as ``labels/<name>`` (float32, NaN = unknown); None
        takes every other numeric column.
    photometry
        ``{band: column}`` for ``photometry/<band>``.
    photometry_unit
        ``"nanomaggy"`` (stored as is) or ``"mag"`` (AB, converted with zero point 22.5).
    exclude
        Columns never taken as labels (e.g. a file-name column).
    """

    id_column: str = "object_id"
    id_from: tuple[str, ...] = ()
    row_ids: bool = False
    ra: str = "ra"
    dec: str = "dec"
    labels: tuple[str, ...] | None = None
    photometry: dict[str, str] = field(default_factory=dict)
    photometry_unit: Literal["nanomaggy", "mag"] = "nanomaggy"
    exclude: tuple[str, ...] = ()


@dataclass
class Catalog:
    """The rows of a catalog, turned into store columns (float32 labels/photometry)."""

    object_id: np.ndarray
    ra: np.ndarray
    dec: np.ndarray
    labels: dict[str, np.ndarray]
    photometry: dict[str, np.ndarray]
    table: Table
    skipped_columns: list[str] = field(default_factory=list)
    #: flags known before the pixels are read (e.g. STAR_LIKE from detection), or None
    flags: np.ndarray | None = None

    def __len__(self) -> int:
        return len(self.object_id)

    def rows(self, start: int, stop: int) -> Catalog:
        """Rows ``[start, stop)`` as a smaller catalog (cheap to send to a worker)."""
        cut = slice(start, stop)
        return Catalog(self.object_id[cut], self.ra[cut], self.dec[cut],
                       {k: v[cut] for k, v in self.labels.items()},
                       {k: v[cut] for k, v in self.photometry.items()},
                       self.table[cut], self.skipped_columns,
                       None if self.flags is None else self.flags[cut])


def _read_table(url: str, storage_options: dict[str, Any] | None) -> Table:
    fs, path = resolve(url, storage_options)
    lower = path.lower()
    fmt = ("fits" if lower.endswith((".fits", ".fit", ".fits.gz", ".fts"))
           else "ascii.ecsv" if lower.endswith(".ecsv")
           else "ascii.csv" if lower.endswith((".csv", ".csv.gz"))
           else None)
    if fmt is None:
        msg = (f"catalog {redact(url)}: unknown table format; use a .fits, .csv or .ecsv file")
        raise IngestError(msg)
    if not fs.exists(path):
        msg = f"catalog {redact(url)}: file not found"
        raise IngestError(msg)
    try:
        with fs.open(path, "rb") as f:
            if fmt == "fits":
                return Table.read(f, format=fmt)
            return Table.read(f.read().decode("utf-8"), format=fmt)
    except (OSError, ValueError, UnicodeDecodeError) as error:
        msg = f"catalog {redact(url)}: cannot read it as {fmt} ({error})"
        raise IngestError(msg) from None


def _as_float(table: Table, name: str, where: str) -> np.ndarray:
    column = table[name]
    if column.dtype.kind not in "biuf":
        msg = f"{where}: column '{name}' is not numeric (dtype {column.dtype})"
        raise IngestError(msg)
    values = np.ma.filled(np.ma.asarray(column).astype(np.float64), np.nan)
    return np.asarray(values, dtype=np.float64)


def _object_ids(table: Table, columns: CatalogColumns, find, where: str) -> np.ndarray:
    n = len(table)
    if columns.row_ids:
        return np.arange(n, dtype=np.int64)
    if columns.id_from:
        names = [find(c) for c in columns.id_from]
        ids = np.empty(n, dtype=np.int64)
        for i, row in enumerate(zip(*(table[c] for c in names), strict=True)):
            key = "|".join(str(v) for v in row).encode()
            digest = hashlib.blake2b(key, digest_size=8).digest()
            ids[i] = int.from_bytes(digest, "little") & 0x7FFF_FFFF_FFFF_FFFF
        return ids
    name = find(columns.id_column, hint=" (name the id column with --id-column, hash several "
                                        "columns with --id-from a,b,c, or use --row-ids)")
    values = _as_float(table, name, where) if table[name].dtype.kind == "f" else None
    if values is not None:
        if not np.all(np.isfinite(values) & (values == np.round(values))):
            msg = f"{where}: id column '{name}' holds non-integer values"
            raise IngestError(msg)
        if np.abs(values).max(initial=0) >= 2**53:
            msg = (f"{where}: id column '{name}' is floating point and too large to be exact; "
                   "store ids as integers or use --id-from")
            raise IngestError(msg)
        return values.astype(np.int64)
    return np.asarray(table[name], dtype=np.int64)


def catalog_from_table(table: Table, columns: CatalogColumns, where: str) -> Catalog:
    """Turn an astropy table into store columns following ``columns``."""
    by_lower = {name.lower(): name for name in table.colnames}

    def find(name: str, hint: str = "") -> str:
        actual = by_lower.get(name.lower())
        if actual is None:
            msg = (f"{where}: no column '{name}'{hint}; it has "
                   f"{', '.join(table.colnames[:30])}")
            raise IngestError(msg)
        return actual

    if len(table) == 0:
        msg = f"{where}: the catalog has no rows"
        raise IngestError(msg)
    ids = _object_ids(table, columns, find, where)
    duplicates = find_duplicates(ids)
    if duplicates:
        repeats, example, count = duplicates
        msg = (f"{where}: object ids are not unique ({repeats} repeats; e.g. {example} appears "
               f"{count} times); if the ids were rounded, build them with --id-from a,b,c")
        raise IngestError(msg)
    ra = _as_float(table, find(columns.ra), where)
    dec = _as_float(table, find(columns.dec), where)
    bad = np.flatnonzero(~np.isfinite(ra) | ~np.isfinite(dec) | (np.abs(dec) > 90))
    if bad.size:
        msg = (f"{where}: {bad.size} row(s) have missing or impossible coordinates "
               f"(first: row {bad[0]}, ra={ra[bad[0]]}, dec={dec[bad[0]]})")
        raise IngestError(msg)
    photometry = {}
    for band, column in columns.photometry.items():
        values = _as_float(table, find(column), where)
        if columns.photometry_unit == "mag":
            # Sentinels such as -9999 or 99 mean "not measured".
            values = np.where((values > -5) & (values < 40), values, np.nan)
            values = 10.0 ** ((ZERO_POINT - values) / 2.5)
        photometry[band] = values.astype(np.float32)
    used = {find(columns.ra), find(columns.dec), *(find(c) for c in columns.exclude),
            *(find(c) for c in columns.photometry.values()), *(find(c) for c in columns.id_from)}
    if not (columns.row_ids or columns.id_from):
        used.add(find(columns.id_column))
    skipped: list[str] = []
    if columns.labels is None:
        names = []
        for name in table.colnames:
            if name in used:
                continue
            if table[name].dtype.kind in "biuf" and table[name].ndim == 1:
                names.append(name)
            else:
                skipped.append(name)
    else:
        names = [find(c) for c in columns.labels]
    labels = {name.lower(): _as_float(table, name, where).astype(np.float32) for name in names}
    return Catalog(ids, ra, dec, labels, photometry, table, skipped)


def read_catalog(url: str, columns: CatalogColumns | None = None,
                 storage_options: dict[str, Any] | None = None) -> Catalog:
    """Read the catalog at ``url`` (FITS table, CSV or ECSV)."""
    table = _read_table(url, storage_options)
    return catalog_from_table(table, columns or CatalogColumns(), f"catalog {redact(url)}")
