"""Write a catalog exactly once per object, however often a run is stopped and restarted.

Layout of a catalog at URL ``C``::

    C/_catalog.json                  what made it: store, shard plan, models, grids
    C/part-000042.parquet            the rows of shard 42 (one part per shard)
    C/_committed/shard-000042.json   the commit record of shard 42, until compacted
    C/_commits/commits-<tag>.parquet compacted commit records (see :mod:`.commits`)
    C/_manifest.json                 totals, written when all shards are in

A part is written atomically (a dot-prefixed temporary renamed into place on
local disks, a single PUT on object stores), then its commit record.  A shard
counts as done only when its record exists, so a re-run skips exactly the
committed shards and rewrites any part whose record is missing; a part's name
depends only on its shard, so no object can appear twice.  Files starting
with ``_`` or ``.`` are skipped by pyarrow and Dask, which therefore read the
parts and nothing else.  A finished catalog's manifest answers "is anything
left to do?" in one read, whatever the number of shards.
"""

from __future__ import annotations

import io
import json
import logging
import os
import socket
from collections.abc import Iterable
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq

from ..errors import CatalogMismatchError
from ..fs import join, read_bytes, redact, resolve, write_bytes_atomic
from ..store.shards import Shard
from .commits import COMMIT_LOG, CommitLog, CommitRecord

__all__ = ["CatalogWriter", "CommitRecord", "encode_part", "part_name"]

log = logging.getLogger(__name__)

DESCRIPTION = "_catalog.json"
MANIFEST = "_manifest.json"
#: Fields of the description that must match for a re-run to continue a catalog.
IDENTITY_KEYS = ("store", "shards", "models")


def manifest(url: str, storage_options: dict[str, Any] | None = None) -> dict[str, Any] | None:
    """``_manifest.json`` of a finished catalog, or None while shards are missing."""
    try:
        return json.loads(read_bytes(join(url, MANIFEST), storage_options))
    except FileNotFoundError:
        return None


def part_name(shard_index: int) -> str:
    return f"part-{shard_index:06d}.parquet"


class CatalogWriter:
    """Commits parts of one catalog; safe to use from many Ray actors at once.

    Each shard is written by exactly one actor at a time (the driver hands it
    out once), and every file name is unique to its shard, so writers never
    contend.
    """

    def __init__(self, url: str, storage_options: dict[str, Any] | None = None) -> None:
        self.url = join(url)
        self.storage_options = dict(storage_options or {})
        self.log = CommitLog(self.url, self.storage_options)
        self.finished = False  # prepare() found the manifest of a finished catalog

    def _path(self, *parts: str) -> str:
        return join(self.url, *parts)

    # -- driver side ---------------------------------------------------------------------------

    def prepare(self, description: dict[str, Any], *, overwrite: bool = False) -> set[int]:
        """Start or continue the catalog described by ``description``; return committed shards.

        A finished catalog answers from its manifest (one read); otherwise the commit
        records are read and consolidated (:meth:`CommitLog.consolidate`).

        Raises
        ------
        CatalogMismatchError
            A catalog is already there but was made from another store, shard
            plan or set of models, and ``overwrite`` is false.
        """
        description = json.loads(json.dumps(description))  # compare as stored (no tuples)
        fs, path = resolve(self.url, self.storage_options)
        if overwrite and fs.exists(path):
            log.info("catalog %s: overwriting", redact(self.url))
            fs.rm(path, recursive=True)
        if self.check(description) is None:
            fs.makedirs(path, exist_ok=True)
            write_bytes_atomic(self._path(DESCRIPTION), json.dumps(description, indent=2).encode(),
                               self.storage_options)
            return set()
        done = manifest(self.url, self.storage_options)
        if done is not None and done.get("complete"):
            self.finished = True
            return set(range(int(done["n_shards"])))
        return set(self.log.consolidate())

    def check(self, description: dict[str, Any], *, overwrite: bool = False
              ) -> dict[str, Any] | None:
        """The description of the catalog already at the URL (None: none there), after
        checking that ``description`` may continue it; reads one file, writes nothing.

        Raises
        ------
        CatalogMismatchError
            It was made from another store, shard plan or set of models, and ``overwrite``
            is false.
        """
        description = json.loads(json.dumps(description))
        try:
            existing = json.loads(read_bytes(self._path(DESCRIPTION), self.storage_options))
        except FileNotFoundError:
            return None
        for key in IDENTITY_KEYS:
            if existing.get(key) != description.get(key) and not overwrite:
                msg = (f"catalog {redact(self.url)} was made with other {key} "
                       f"({_difference(existing.get(key), description.get(key))}); "
                       "choose another output or set infer.overwrite=true")
                raise CatalogMismatchError(msg)
        return existing

    def records(self) -> list[CommitRecord]:
        """Commit records present now, by shard index."""
        return list(self.log.records().values())

    def compact(self, records: Iterable[CommitRecord]) -> None:
        """Fold the records the driver learnt from its shards' reports into the commit log."""
        self.log.compact(records)

    def finish(self, n_shards: int, n_objects: int) -> dict[str, Any]:
        """Write ``_manifest.json`` once every shard is committed; return it.

        Raises
        ------
        CatalogMismatchError
            Shards are missing, or the committed rows do not add up to the store.
        """
        loose, segments = self.log.state()
        by_index = self.log.union(loose, segments)
        records = list(by_index.values())
        missing = sorted(set(range(n_shards)) - set(by_index))
        rows = sum(r.rows for r in records)
        if missing or rows != n_objects:
            msg = (f"catalog {redact(self.url)} is incomplete: {len(missing)} shard(s) missing, "
                   f"{rows:,} of {n_objects:,} rows committed")
            raise CatalogMismatchError(msg)
        # every record in one segment, so that the manifest can name it
        segment = self.log.merge(list(segments), records, loose)
        manifest = {"complete": True, "n_shards": n_shards, "rows": rows,
                    "bytes": sum(r.bytes for r in records),
                    "runs": sorted({r.run_id for r in records}),
                    "commits": f"{COMMIT_LOG}/{segment.rsplit('/', 1)[-1]}"}
        write_bytes_atomic(self._path(MANIFEST), json.dumps(manifest, indent=1).encode(),
                           self.storage_options)
        return manifest

    # -- actor side ----------------------------------------------------------------------------

    def commit(self, shard: Shard, table: pa.Table, run_id: str) -> CommitRecord:
        """Write ``table`` as the part of ``shard``, then its commit record."""
        return self.commit_part(shard, encode_part(table), table.num_rows, run_id)

    def commit_part(self, shard: Shard, data: bytes, rows: int, run_id: str) -> CommitRecord:
        """Write ``data`` (:func:`encode_part` of ``rows`` rows) as the part of ``shard``,
        then its commit record: the two steps an actor times apart from encoding."""
        if rows != len(shard):
            msg = f"shard {shard.index} has {len(shard)} objects but {rows} rows"
            raise ValueError(msg)
        write_bytes_atomic(self._path(part_name(shard.index)), data, self.storage_options)
        record = CommitRecord(shard.index, shard.start, shard.stop, rows,
                              part_name(shard.index), run_id, len(data),
                              f"{socket.gethostname()}:{os.getpid()}")
        self.log.write_record(record)
        return record


def encode_part(table: pa.Table) -> bytes:
    """A shard's rows as one Parquet file (zstd, one row group: readers take it whole)."""
    buffer = io.BytesIO()
    pq.write_table(table, buffer, compression="zstd", row_group_size=max(1, table.num_rows))
    return buffer.getvalue()


def _difference(old: Any, new: Any) -> str:
    if isinstance(old, dict) and isinstance(new, dict):
        keys = [k for k in sorted(set(old) | set(new)) if old.get(k) != new.get(k)]
        return "; ".join(f"{k}: {old.get(k)!r} then {new.get(k)!r}" for k in keys[:2])
    if isinstance(old, list) and isinstance(new, list):
        names = [m.get("name", "?") + "=" + str(m.get("model_id", "?"))[:8]
                 for m in old if isinstance(m, dict)]
        names_new = [m.get("name", "?") + "=" + str(m.get("model_id", "?"))[:8]
                     for m in new if isinstance(m, dict)]
        return f"{', '.join(names)} then {', '.join(names_new)}"
    return f"{old!r} then {new!r}"
