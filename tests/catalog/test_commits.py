"""The commit log: per-shard records compacted into segments, read back as one set."""

from __future__ import annotations

import shutil

import pytest

from surveyproc.catalog.commits import COMMIT_LOG, COMMITTED, CommitLog, CommitRecord
from surveyproc.catalog.writer import CatalogWriter, part_name
from surveyproc.store.shards import Shard
from tests.catalog.test_catalog import _schema, _table


def _record(index: int, run: str = "r") -> CommitRecord:
    return CommitRecord(index, index * 4, index * 4 + 4, 4, part_name(index), run, 100 + index,
                        "host:1")


def _files(path, folder):
    return sorted(p.name for p in (path / folder).glob("*")) if (path / folder).exists() else []


def test_compacted_records_read_back_as_written(tmp_path):
    log = CommitLog(str(tmp_path))
    records = [_record(i) for i in range(50)]
    for record in records:
        log.write_record(record)
    log.compact(records[:30])
    assert len(_files(tmp_path, COMMITTED)) == 20 and len(log.segments()) == 1
    assert list(log.records().values()) == records


def test_a_crash_between_segment_and_deletion_counts_each_shard_once(tmp_path):
    """The driver died after writing a segment and before deleting the files it holds."""
    log = CommitLog(str(tmp_path))
    records = [_record(i) for i in range(10)]
    for record in records:
        log.write_record(record)
    log._write_segment(records[:6])  # the first half of compact()
    assert len(_files(tmp_path, COMMITTED)) == 10
    assert list(log.records().values()) == records
    # the next run's consolidation tidies up
    assert list(log.consolidate().values()) == records
    assert _files(tmp_path, COMMITTED) == [] and len(log.segments()) == 2


def test_many_segments_are_merged_into_one_when_a_run_starts(tmp_path):
    log = CommitLog(str(tmp_path))
    records = [_record(i) for i in range(40)]
    for i in range(20):
        for record in records[2 * i:2 * i + 2]:
            log.write_record(record)
        log.compact(records[2 * i:2 * i + 2])
    assert len(log.segments()) == 20
    assert list(log.consolidate(max_segments=16).values()) == records
    assert len(log.segments()) == 1 and list(log.records().values()) == records


def test_a_finished_catalog_answers_from_its_manifest(tmp_path):
    """Nothing left to do is decided from the manifest alone: with the commit log gone
    (which a resume would otherwise have to read), every shard still counts as done."""
    url = str(tmp_path / "cat")
    schema = _schema(shards={"count": 2})
    writer = CatalogWriter(url)
    writer.prepare(schema.describe())
    writer.commit(Shard(0, 0, 4), _table(schema, 0, 4), "r")
    writer.commit(Shard(1, 4, 8), _table(schema, 4, 8), "r")
    done = writer.finish(2, 8)
    assert _files(tmp_path / "cat", COMMITTED) == []  # all in one segment, named in the manifest
    assert [f"{COMMIT_LOG}/{name}" for name in _files(tmp_path / "cat", COMMIT_LOG)] == [
        done["commits"]]
    shutil.rmtree(tmp_path / "cat" / COMMIT_LOG)
    assert writer.prepare(schema.describe()) == {0, 1}


def test_a_resume_reads_few_files_however_many_shards(tmp_path, monkeypatch):
    """3,000 committed shards, compacted as a run does: a resume opens a handful of files."""
    log = CommitLog(str(tmp_path))
    records = [_record(i) for i in range(3000)]
    for record in records[:2990]:
        log.write_record(record)
    for first in range(0, 2990, 1024):
        log.compact(records[first:min(first + 1024, 2990)])
    for record in records[2990:]:  # committed after the last compaction: a driver crash
        log.write_record(record)
    fetched: list[int] = []
    fetch = log._fetch
    monkeypatch.setattr(log, "_fetch", lambda paths: fetched.append(len(paths)) or fetch(paths))
    assert len(log.records()) == 3000
    assert sum(fetched) == 3 + 10  # three segments and the ten loose records


@pytest.mark.parametrize("bad", ["segment", "record"])
def test_the_writer_reads_its_commit_log_through_object_store_urls(s3_bucket, bad):
    """The same protocol on S3 (listing, bulk reads and deletes through s3fs)."""
    bucket, options = s3_bucket
    log = CommitLog(f"{bucket}/cat", options)
    records = [_record(i) for i in range(12)]
    for record in records:
        log.write_record(record)
    log.compact(records[:8] if bad == "segment" else records[:2])
    assert list(log.records().values()) == records
    assert list(log.consolidate().values()) == records
    assert log.loose_records() == []
