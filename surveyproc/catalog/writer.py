"""Write a catalog exactly once per object, however often a run is stopped and restarted.

Layout of a catalog at URL ``C``::

    C/_catalog.json                  what made it: store, shard plan, models, grids
    C/part-000042.parquet            the rows of shard 42 (one part per shard)
    C/_committed/shard-000042.json   the commit record of shard 42
    C/_manifest.json                 every commit record, written when all shards are in

A part is written atomically (a dot-prefixed temporary renamed into place on
local disks, a single PUT on object stores), then its commit record.  A shard
counts as done only when its record exists, so a re-run skips exactly the
committed shards and rewrites any part whose record is missing; a part's name
depends only on its shard, so no object can appear twice.  Files starting
with ``_`` or ``.`` are skipped by pyarrow and Dask, which therefore read the
parts and nothing else.
"""

from __future__ import annotations

import io
import json
import logging
import os
import socket
from dataclasses import dataclass
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq

from ..errors import CatalogMismatchError
from ..fs import join, read_bytes, redact, resolve, write_bytes_atomic
from ..store.shards import Shard

__all__ = ["CatalogWriter", "CommitRecord", "part_name"]

log = logging.getLogger(__name__)

DESCRIPTION = "_catalog.json"
COMMITTED = "_committed"
MANIFEST = "_manifest.json"
#: Fields of the description that must match for a re-run to continue a catalog.
IDENTITY_KEYS = ("store", "shards", "models")


def part_name(shard_index: int) -> str:
    return f"part-{shard_index:06d}.parquet"


@dataclass(frozen=True)
class CommitRecord:
    """Proof that shard ``index`` (objects ``[start, stop)``) is in part ``part``."""

    index: int
    start: int
    stop: int
    rows: int
    part: str
    run_id: str
    bytes: int
    writer: str = ""  # host:pid of the process that committed it (which actor did what)

    def to_json(self) -> str:
        return json.dumps(self.__dict__)


class CatalogWriter:
    """Commits parts of one catalog; safe to use from many Ray actors at once.

    Each shard is written by exactly one actor at a time (the driver hands it
    out once), and every file name is unique to its shard, so writers never
    contend.
    """

    def __init__(self, url: str, storage_options: dict[str, Any] | None = None) -> None:
        self.url = join(url)
        self.storage_options = dict(storage_options or {})

    def _path(self, *parts: str) -> str:
        return join(self.url, *parts)

    # -- driver side ---------------------------------------------------------------------------

    def prepare(self, description: dict[str, Any], *, overwrite: bool = False) -> set[int]:
        """Start or continue the catalog described by ``description``; return committed shards.

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
        try:
            existing = json.loads(read_bytes(self._path(DESCRIPTION), self.storage_options))
        except FileNotFoundError:
            existing = None
        if existing is not None:
            for key in IDENTITY_KEYS:
                if existing.get(key) != description.get(key):
                    msg = (f"catalog {redact(self.url)} was made with other {key} "
                           f"({_difference(existing.get(key), description.get(key))}); "
                           "choose another output or set infer.overwrite=true")
                    raise CatalogMismatchError(msg)
        else:
            fs.makedirs(path, exist_ok=True)
            write_bytes_atomic(self._path(DESCRIPTION), json.dumps(description, indent=2).encode(),
                               self.storage_options)
        return {record.index for record in self.records()}

    def records(self) -> list[CommitRecord]:
        """Commit records present now, by shard index."""
        fs, path = resolve(self._path(COMMITTED), self.storage_options)
        fs.invalidate_cache(path)
        try:
            names = fs.ls(path, detail=False)
        except FileNotFoundError:
            return []
        records = []
        for name in sorted(names):
            if name.rsplit("/", 1)[-1].startswith("shard-") and name.endswith(".json"):
                with fs.open(name, "rb") as f:
                    records.append(CommitRecord(**json.loads(f.read())))
        return sorted(records, key=lambda r: r.index)

    def finish(self, n_shards: int, n_objects: int) -> dict[str, Any]:
        """Write ``_manifest.json`` once every shard is committed; return it.

        Raises
        ------
        CatalogMismatchError
            Shards are missing, or the committed rows do not add up to the store.
        """
        records = self.records()
        missing = sorted(set(range(n_shards)) - {r.index for r in records})
        rows = sum(r.rows for r in records)
        if missing or rows != n_objects:
            msg = (f"catalog {redact(self.url)} is incomplete: {len(missing)} shard(s) missing, "
                   f"{rows:,} of {n_objects:,} rows committed")
            raise CatalogMismatchError(msg)
        manifest = {"complete": True, "n_shards": n_shards, "rows": rows,
                    "bytes": sum(r.bytes for r in records),
                    "runs": sorted({r.run_id for r in records}),
                    "shards": [r.__dict__ for r in records]}
        write_bytes_atomic(self._path(MANIFEST), json.dumps(manifest, indent=1).encode(),
                           self.storage_options)
        return manifest

    # -- actor side ----------------------------------------------------------------------------

    def commit(self, shard: Shard, table: pa.Table, run_id: str) -> CommitRecord:
        """Write ``table`` as the part of ``shard``, then its commit record."""
        if table.num_rows != len(shard):
            msg = f"shard {shard.index} has {len(shard)} objects but {table.num_rows} rows"
            raise ValueError(msg)
        buffer = io.BytesIO()
        pq.write_table(table, buffer, compression="zstd", row_group_size=max(1, table.num_rows))
        data = buffer.getvalue()
        write_bytes_atomic(self._path(part_name(shard.index)), data, self.storage_options)
        record = CommitRecord(shard.index, shard.start, shard.stop, table.num_rows,
                              part_name(shard.index), run_id, len(data),
                              f"{socket.gethostname()}:{os.getpid()}")
        write_bytes_atomic(self._path(COMMITTED, f"shard-{shard.index:06d}.json"),
                           record.to_json().encode(), self.storage_options)
        return record


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
