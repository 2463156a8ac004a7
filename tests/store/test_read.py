"""Store round trip, the reader's range semantics and request count, read-ahead, pickling."""

from __future__ import annotations

import pickle

import numpy as np
import pytest
import zarr
from zarr.storage import LoggingStore

from surveyproc.errors import InvalidParameterError
from surveyproc.store import StoreSpec, open_store
from surveyproc.testing import tiny_batch, tiny_store


@pytest.mark.parametrize("shard_chunks", [None, 2])
@pytest.mark.parametrize("dtype", ["float32", "float16"])
def test_round_trip_returns_what_was_written(tmp_path, shard_chunks, dtype):
    store = tiny_store(100, chunk=16, url=str(tmp_path / "s.zarr"), shard_chunks=shard_chunks,
                       dtype=dtype)
    expected = tiny_batch(0, 100)
    got = store.read(0, 100)
    np.testing.assert_array_equal(got.object_id, expected.object_id)
    np.testing.assert_array_equal(got.ra, expected.ra)
    np.testing.assert_allclose(got.images, expected.images, rtol=1e-3 if dtype == "float16" else 0)
    assert got.images.dtype == np.dtype(dtype)
    np.testing.assert_array_equal(got.labels["redshift"], expected.labels["redshift"])
    np.testing.assert_array_equal(got.photometry["b1"], expected.photometry["b1"])
    assert store.layout.write_unit == (32 if shard_chunks else 16)
    assert store.layout.sharded is bool(shard_chunks)


@pytest.mark.parametrize(("start", "stop"), [(0, 1), (15, 17), (3, 99), (96, 100), (40, 40)])
def test_read_returns_exactly_the_range(start, stop):
    store = tiny_store(100, chunk=16)
    batch = store.read(start, stop, labels=["redshift"], photometry=False)
    assert batch.start == start and len(batch) == stop - start
    np.testing.assert_array_equal(batch.object_id, np.arange(start, stop))
    assert batch.photometry == {}
    if stop > start:
        assert batch.images[:, 1, 0, 0].tolist() == pytest.approx(np.arange(start, stop) + 0.1)


def test_read_outside_the_store_or_unknown_label_is_refused():
    store = tiny_store(10, chunk=4)
    with pytest.raises(InvalidParameterError, match=r"\[5, 11\) is outside \[0, 10\)"):
        store.read(5, 11)
    with pytest.raises(InvalidParameterError, match="no label"):
        store.read(0, 2, labels=["mass"])


def test_one_request_per_image_chunk_touched(tmp_path):
    tiny_store(100, chunk=16, url=str(tmp_path / "s.zarr"))
    store = open_store(str(tmp_path / "s.zarr"))
    logging_store = LoggingStore(store.group.store)
    images = zarr.open_array(logging_store, path="images", mode="r")
    store._arrays["images"] = images  # read the images through the counting store
    logging_store.counter.clear()
    store.read(20, 70)  # touches chunks 1, 2, 3, 4 (objects 16..79)
    assert logging_store.counter["get"] == 4


def test_iter_batches_keeps_order_with_read_ahead():
    store = tiny_store(100, chunk=16)
    shards = store.plan_shards()
    batches = list(store.iter_batches(shards, prefetch=3, labels=False))
    assert [b.start for b in batches] == [s.start for s in shards]
    np.testing.assert_array_equal(np.concatenate([b.object_id for b in batches]),
                                  np.arange(100))
    serial = list(store.iter_batches([(0, 10), (10, 30)], prefetch=0))
    assert [len(b) for b in serial] == [10, 20]


def test_store_pickles_as_its_url(tmp_path):
    store = tiny_store(20, chunk=8, url=str(tmp_path / "s.zarr"))
    clone = pickle.loads(pickle.dumps(store))
    np.testing.assert_array_equal(clone.read(3, 9).images, store.read(3, 9).images)


def test_spec_rejects_bad_layouts():
    with pytest.raises(InvalidParameterError, match="band names must be unique"):
        StoreSpec(n_objects=1, bands=("g", "g"), height=4, width=4)
    with pytest.raises(InvalidParameterError, match="image dtype must be one of"):
        StoreSpec(n_objects=1, bands=("g",), height=4, width=4, dtype="int8")
    with pytest.raises(InvalidParameterError, match="label name '2x' is not allowed"):
        StoreSpec(n_objects=1, bands=("g",), height=4, width=4, labels=("2x",))


def test_a_read_of_several_chunks_quarantines_only_the_chunk_that_does_not_decode(tmp_path):
    """An inference read unit spans chunks; when one chunk is corrupt, only its objects
    come back NaN and UNREADABLE, named with the cause; the rest are read as they are."""
    from surveyproc.flags import Flag

    store = tiny_store(n=64, chunk=16, url=str(tmp_path / "s.zarr"))
    intact = store.read(0, 64).images.copy()
    for path in (tmp_path / "s.zarr" / "images" / "c" / "2").rglob("*"):
        if path.is_file():
            path.write_bytes(b"not a compressed chunk" * 4)
    store = open_store(str(tmp_path / "s.zarr"))
    with pytest.raises(RuntimeError):
        store.read(0, 64)
    batch = store.read(0, 64, quarantine=True)
    lost = np.zeros(64, dtype=bool)
    lost[32:48] = True
    assert batch.unreadable == ["objects 32-48: RuntimeError: error during blosc "
                                "decompression: -1"]
    assert (((batch.flags & Flag.UNREADABLE) != 0) == lost).all()
    assert np.isnan(batch.images[lost]).all()
    assert np.array_equal(batch.images[~lost], intact[~lost])


@pytest.mark.parametrize("dtype", ["float32", "float16"])
def test_kept_pixel_measures_are_what_measuring_the_stored_pixels_gives(tmp_path, dtype):
    """A store keeps each cutout's sky, noise and central flux, measured from its pixels as
    stored (float16 ones included), so inference can read them instead of measuring."""
    from surveyproc.models.background import CutoutBackground, measure_background

    store = tiny_store(100, chunk=16, url=str(tmp_path / "s.zarr"), dtype=dtype,
                       shard_chunks=2)
    assert store.layout.has_pixel_measures
    batch = store.read(5, 70, measures=True)
    measured = measure_background(batch.images)
    kept = CutoutBackground.from_array(batch.measures, 8, 8)
    for name in ("sky", "noise", "flux"):
        np.testing.assert_allclose(getattr(kept, name), getattr(measured, name), rtol=1e-6)
    assert kept.aperture_pixels == measured.aperture_pixels
    assert store.read(5, 70).measures is None  # only when asked for


def test_pixel_measures_of_a_lost_chunk_are_nan_and_stale_ones_are_not_used(tmp_path):
    tiny_store(n=64, chunk=16, url=str(tmp_path / "s.zarr"))
    for path in (tmp_path / "s.zarr" / "images" / "c" / "2").rglob("*"):
        if path.is_file():
            path.write_bytes(b"not a compressed chunk" * 4)
    batch = open_store(str(tmp_path / "s.zarr")).read(0, 64, quarantine=True, measures=True)
    assert np.isnan(batch.measures[32:48]).all() and np.isfinite(batch.measures[:32]).all()
    zarr.open_array(str(tmp_path / "s.zarr" / "pixel_measures"), mode="r+").attrs[
        "method"] = "another way"
    stale = open_store(str(tmp_path / "s.zarr"))
    assert not stale.layout.has_pixel_measures
    assert stale.read(0, 16, measures=True).measures is None
