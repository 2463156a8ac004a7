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
    photometry_error
        ``{band: column}`` of the photometry's 1-sigma errors, in ``photometry_unit``
        (magnitude errors become nanomaggies).
    exclude
        Columns never taken as labels (e.g. a file-name column).
    label_columns
        ``{label: column}``: store these columns under these label names, instead of
        ``labels``.
    where
        A row filter evaluated on the table (pandas ``DataFrame.eval`` syntax, e.g.
        ``class == "GALAXY" and redshift > 0``); rows where it is false are left out.
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
    photometry_error: dict[str, str] = field(default_factory=dict)
    label_columns: dict[str, str] = field(default_factory=dict)
    where: str | None = None


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
    photometry_error: dict[str, np.ndarray] = field(default_factory=dict)
    #: rows of the file before ``where`` filtered them
    rows_read: int = 0

    def __len__(self) -> int:
        return len(self.object_id)

    def rows(self, start: int, stop: int) -> Catalog:
        """Rows ``[start, stop)`` as a smaller catalog (cheap to send to a worker)."""
        cut = slice(start, stop)
        return Catalog(self.object_id[cut], self.ra[cut], self.dec[cut],
                       {k: v[cut] for k, v in self.labels.items()},
                       {k: v[cut] for k, v in self.photometry.items()},
                       self.table[cut], self.skipped_columns,
                       None if self.flags is None else self.flags[cut],
                       {k: v[cut] for k, v in self.photometry_error.items()}, self.rows_read)


def _read_table(url: str, storage_options: dict[str, Any] | None) -> Table:
    fs, path = resolve(url, storage_options)
    lower = path.lower()
    fmt = ("fits" if lower.endswith((".fits", ".fit", ".fits.gz", ".fts"))
           else "ascii.ecsv" if lower.endswith(".ecsv")
           else "ascii.csv" if lower.endswith((".csv", ".csv.gz"))
           else "parquet" if lower.endswith((".parquet", ".pq"))
           else None)
    if fmt is None:
        msg = (f"catalog {redact(url)}: unknown table format; use a .fits, .csv, .ecsv or "
               ".parquet file")
        raise IngestError(msg)
    if not fs.exists(path):
        msg = f"catalog {redact(url)}: file not found"
        raise IngestError(msg)
    try:
        with fs.open(path, "rb") as f:
            if fmt == "fits":
                return Table.read(f, format=fmt)
            if fmt == "parquet":
                import pyarrow.parquet as pq

                return Table.from_pandas(pq.read_table(f).to_pandas())
            return Table.read(f.read().decode("utf-8"), format=fmt)
    except (OSError, ValueError, UnicodeDecodeError, ImportError) as error:
        msg = f"catalog {redact(url)}: cannot read it as {fmt} ({error})"
        raise IngestError(msg) from None


def _as_float(table: Table, name: str, where: str) -> np.ndarray:
    """A column as float64 (masked -> NaN); text that is not a number is an error naming
    the first such row."""
    column = table[name]
    if column.dtype.kind in "US":
        text = np.ma.filled(np.ma.asarray(column).astype(str), "")
        values = np.full(len(text), np.nan)
        for row, value in enumerate(text):
            value = value.strip()
            if value == "":
                continue
            try:
                values[row] = float(value)
            except ValueError:
                msg = f"{where}: column '{name}' row {row}: {value!r} is not a number"
                raise IngestError(msg) from None
        return values
    if column.dtype.kind not in "biuf":
        msg = f"{where}: column '{name}' is not numeric (dtype {column.dtype})"
        raise IngestError(msg)
    values = np.ma.filled(np.ma.asarray(column).astype(np.float64), np.nan)
    return np.asarray(values, dtype=np.float64)


def _select_rows(table: Table, where: str | None, context: str) -> Table:
    """The rows of ``table`` where the expression ``where`` holds."""
    if not where:
        return table
    frame = table.to_pandas()
    try:
        mask = frame.eval(_quote_keywords(where, frame.columns))
    except Exception as error:  # pandas raises many types for a bad expression
        first = str(error).strip().splitlines()[0] if str(error).strip() else ""
        msg = f"{context}: --where {where!r} cannot be evaluated ({type(error).__name__}: {first})"
        raise IngestError(msg) from None
    mask = np.asarray(mask)
    if mask.dtype != bool or mask.shape != (len(table),):
        msg = f"{context}: --where {where!r} must give true or false per row"
        raise IngestError(msg)
    kept = table[mask]
    if len(kept) == 0:
        msg = f"{context}: no row of {len(table)} satisfies --where {where!r}"
        raise IngestError(msg)
    return kept


def _quote_keywords(expression: str, columns: Any) -> str:
    """Backtick-quote column names that are Python keywords (SDSS's ``class``), so that
    ``class == "GALAXY"`` is read as a column comparison.

    >>> _quote_keywords('class == "GALAXY" and z > 0', ["class", "z"])
    '`class` == "GALAXY" and z > 0'
    """
    import io
    import keyword
    import tokenize

    names = {c for c in columns if keyword.iskeyword(c)}
    if not names:
        return expression
    try:
        tokens = list(tokenize.generate_tokens(io.StringIO(expression).readline))
    except (tokenize.TokenError, SyntaxError):
        return expression
    out, last = [], 0
    lines = expression.splitlines(keepends=True) or [""]
    offsets = [0]
    for line in lines:
        offsets.append(offsets[-1] + len(line))
    for token in tokens:
        if token.type == tokenize.NAME and token.string in names:
            start = offsets[token.start[0] - 1] + token.start[1]
            out.append(expression[last:start] + f"`{token.string}`")
            last = start + len(token.string)
    return "".join(out) + expression[last:]


def _magnitudes_to_nanomaggies(values: np.ndarray, errors: np.ndarray | None
                               ) -> tuple[np.ndarray, np.ndarray | None]:
    """AB magnitudes (and their errors) -> nanomaggies; sentinels such as -9999 or 99 mean
    "not measured" and become NaN, as do negative or absurd errors.

    >>> flux, err = _magnitudes_to_nanomaggies(np.array([22.5, -9999.0]), np.array([0.1, 0.1]))
    >>> [round(float(v), 4) for v in flux[:1]], round(float(err[0]), 4), bool(np.isnan(flux[1]))
    ([1.0], 0.0921, True)
    """
    mags = np.where((values > -5) & (values < 40), values, np.nan)
    flux = 10.0 ** ((ZERO_POINT - mags) / 2.5)
    if errors is None:
        return flux, None
    errors = np.where((errors >= 0) & (errors < 10), errors, np.nan)
    return flux, flux * errors * np.log(10.0) / 2.5


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
    rows_read = len(table)
    table = _select_rows(table, columns.where, where)
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
    photometry, photometry_error = {}, {}
    unknown = sorted(set(columns.photometry_error) - set(columns.photometry))
    if unknown:
        msg = f"{where}: photometry errors given for band(s) {unknown} without photometry"
        raise IngestError(msg)
    for band, column in columns.photometry.items():
        values = _as_float(table, find(column), where)
        error_column = columns.photometry_error.get(band)
        errors = None if error_column is None else _as_float(table, find(error_column), where)
        if columns.photometry_unit == "mag":
            values, errors = _magnitudes_to_nanomaggies(values, errors)
        elif errors is not None:
            errors = np.where(errors >= 0, errors, np.nan)
        photometry[band] = values.astype(np.float32)
        if errors is not None:
            photometry_error[band] = errors.astype(np.float32)
    used = {find(columns.ra), find(columns.dec), *(find(c) for c in columns.exclude),
            *(find(c) for c in columns.photometry.values()), *(find(c) for c in columns.id_from),
            *(find(c) for c in columns.photometry_error.values())}
    if not (columns.row_ids or columns.id_from):
        used.add(find(columns.id_column))
    skipped: list[str] = []
    if columns.label_columns:
        labels = {name: _as_float(table, find(column), where).astype(np.float32)
                  for name, column in columns.label_columns.items()}
        return Catalog(ids, ra, dec, labels, photometry, table, skipped, None,
                       photometry_error, rows_read)
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
    return Catalog(ids, ra, dec, labels, photometry, table, skipped, None, photometry_error,
                   rows_read)


def read_catalog(url: str, columns: CatalogColumns | None = None,
                 storage_options: dict[str, Any] | None = None) -> Catalog:
    """Read the catalog at ``url`` (FITS table, CSV or ECSV)."""
    table = _read_table(url, storage_options)
    return catalog_from_table(table, columns or CatalogColumns(), f"catalog {redact(url)}")
