"""Commit records, and the log they are compacted into so that resume costs O(1) requests.

A shard counts as done when its commit record exists.  The actor that wrote
the part writes the record as one small file, ``_committed/shard-NNNNNN.json``:
that PUT is the commit point, durable whatever happens to the driver next.
One file per shard is cheap to write but dear to read back: a resume would
list and fetch 10^5 files at 10^5 shards, minutes on an object store.  So the
driver, which learns every record from the shard's report, compacts them:
every :data:`COMPACT_EVERY` shards (and when a run ends) it writes one
Parquet segment ``_commits/commits-<tag>.parquet`` holding those records,
then deletes their per-shard files.  Reading the commit state is then one
listing and one read per segment plus the few records not yet compacted;
when a run starts with more than :data:`MAX_SEGMENTS` segments, they are
merged into one.

Every step is safe to interrupt: a record is in its file, in a segment, or
in both (between a segment's write and the files' deletion), and readers
take the union by shard index.  A reader lists and reads the per-shard files
*before* the segments, so a record it listed but found deleted has already
reached a segment when the segments are read.
"""

from __future__ import annotations

import io
import json
import uuid
from collections.abc import Iterable
from dataclasses import asdict, dataclass
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq

from ..fs import join, resolve, write_bytes_atomic
from ..retry import retrying

__all__ = ["COMMITTED", "COMMIT_LOG", "COMPACT_EVERY", "CommitLog", "CommitRecord"]

COMMITTED = "_committed"
COMMIT_LOG = "_commits"
#: Records per segment while a run goes: one write and one bulk delete per this many shards.
COMPACT_EVERY = 1024
#: Segments beyond this many are merged into one when a run starts.
MAX_SEGMENTS = 16


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
        return json.dumps(asdict(self))


_SEGMENT_SCHEMA = pa.schema([
    ("index", pa.int64()), ("start", pa.int64()), ("stop", pa.int64()), ("rows", pa.int64()),
    ("part", pa.string()), ("run_id", pa.dictionary(pa.int32(), pa.string())),
    ("bytes", pa.int64()), ("writer", pa.dictionary(pa.int32(), pa.string()))])


def _record_name(index: int) -> str:
    return f"shard-{index:06d}.json"


def _segment_bytes(records: Iterable[CommitRecord]) -> bytes:
    rows = sorted(records, key=lambda r: r.index)
    columns = {name: [getattr(r, name) for r in rows] for name in _SEGMENT_SCHEMA.names}
    table = pa.Table.from_pydict(columns, schema=_SEGMENT_SCHEMA)
    buffer = io.BytesIO()
    pq.write_table(table, buffer, compression="zstd")
    return buffer.getvalue()


def _segment_records(data: bytes) -> list[CommitRecord]:
    table = pq.read_table(io.BytesIO(data))
    return [CommitRecord(**row) for row in table.to_pylist()]


class CommitLog:
    """The commit state of one catalog: per-shard records and compacted segments."""

    def __init__(self, url: str, storage_options: dict[str, Any] | None = None) -> None:
        self.url = url
        self.storage_options = dict(storage_options or {})
        self.fs, self.root = resolve(url, self.storage_options)

    def record_path(self, index: int) -> str:
        return f"{self.root}/{COMMITTED}/{_record_name(index)}"

    # -- writing (an actor) --------------------------------------------------------------------

    def write_record(self, record: CommitRecord) -> None:
        """The commit point of one shard (its part must be in place already)."""
        write_bytes_atomic(join(self.url, COMMITTED, _record_name(record.index)),
                           record.to_json().encode(), self.storage_options)

    # -- reading -------------------------------------------------------------------------------

    def _list(self, folder: str, prefix: str, suffix: str) -> list[str]:
        path = f"{self.root}/{folder}"
        self.fs.invalidate_cache(path)
        try:
            names = retrying("list", lambda: self.fs.ls(path, detail=False))
        except FileNotFoundError:
            return []
        return sorted(n for n in names
                      if n.rsplit("/", 1)[-1].startswith(prefix) and n.endswith(suffix))

    def _fetch(self, paths: list[str]) -> dict[str, bytes]:
        """Contents of ``paths`` (fetched concurrently on object stores); missing ones left out."""
        if not paths:
            return {}
        found = retrying("read", lambda: self.fs.cat(paths, on_error="omit"))
        return {path: bytes(data) for path, data in found.items()
                if not isinstance(data, Exception)}

    def loose_records(self) -> list[CommitRecord]:
        """Per-shard records not compacted yet (one listing, then their contents)."""
        found = self._fetch(self._list(COMMITTED, "shard-", ".json"))
        return [CommitRecord(**json.loads(data)) for data in found.values()]

    def segments(self) -> list[str]:
        return self._list(COMMIT_LOG, "commits-", ".parquet")

    def _segment_contents(self) -> dict[str, list[CommitRecord]]:
        for _ in range(3):  # a merge may delete a listed segment: list again
            names = self.segments()
            found = self._fetch(names)
            if len(found) == len(names):
                return {name: _segment_records(data) for name, data in found.items()}
        msg = f"commit log of {self.url} changed under three readings in a row"
        raise RuntimeError(msg)

    def state(self) -> tuple[list[CommitRecord], dict[str, list[CommitRecord]]]:
        """Loose records, then the records of each segment by its path, read in that order
        (see the module docstring for why)."""
        loose = self.loose_records()
        return loose, self._segment_contents()

    @staticmethod
    def union(loose: list[CommitRecord], segments: dict[str, list[CommitRecord]]
              ) -> dict[int, CommitRecord]:
        """Every record of a :meth:`state`, by shard index."""
        merged: dict[int, CommitRecord] = {}
        for records in segments.values():
            merged.update((r.index, r) for r in records)
        merged.update((r.index, r) for r in loose)
        return dict(sorted(merged.items()))

    def records(self) -> dict[int, CommitRecord]:
        """Every commit record, by shard index: the loose files first, then the segments."""
        return self.union(*self.state())

    # -- compaction (the driver) ---------------------------------------------------------------

    def _write_segment(self, records: Iterable[CommitRecord]) -> str:
        name = f"commits-{uuid.uuid4().hex[:12]}.parquet"
        write_bytes_atomic(join(self.url, COMMIT_LOG, name), _segment_bytes(records),
                           self.storage_options)
        self.fs.invalidate_cache(f"{self.root}/{COMMIT_LOG}")
        return f"{self.root}/{COMMIT_LOG}/{name}"

    def _remove(self, paths: list[str]) -> None:
        if paths:  # a retried bulk delete may find some keys gone already: that is fine
            retrying("delete", lambda: self._remove_existing(paths))

    def _remove_existing(self, paths: list[str]) -> None:
        try:
            self.fs.rm(paths, recursive=False)
        except FileNotFoundError:
            for path in paths:
                if self.fs.exists(path):
                    self.fs.rm_file(path)

    def compact(self, records: Iterable[CommitRecord]) -> str | None:
        """Write ``records`` as a new segment, then delete their per-shard files."""
        records = list(records)
        return self.merge([], records, records) if records else None

    def consolidate(self, max_segments: int = MAX_SEGMENTS) -> dict[int, CommitRecord]:
        """Compact loose records and, past ``max_segments`` segments, merge them all into one;
        return every record.  Run by the driver before it plans the work."""
        loose, segments = self.state()
        merged = self.union(loose, segments)
        if len(segments) + bool(loose) > max_segments:
            self.merge(list(segments), merged.values(), loose)
        elif loose:
            self.compact(loose)
        return merged

    def merge(self, old: list[str], records: Iterable[CommitRecord],
              loose: Iterable[CommitRecord] = ()) -> str:
        """One segment holding ``records`` in place of the segments ``old`` and the
        per-shard files of ``loose``."""
        segment = self._write_segment(records)
        stale = [*old, *(self.record_path(r.index) for r in loose)]
        self._remove(stale)
        self.fs.invalidate_cache(f"{self.root}/{COMMITTED}")
        return segment
