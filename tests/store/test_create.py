"""Laying out a store, writing units in any order, and refusing to pass off a partial store."""

from __future__ import annotations

import numpy as np
import pytest
import zarr

from surveyproc.errors import InvalidParameterError, StoreExistsError, StoreFormatError
from surveyproc.store import StoreSpec, StoreWriter, create_store, open_store
from surveyproc.testing import tiny_batch, tiny_store


def test_create_refuses_existing_store_unless_overwrite(tmp_path):
    url = str(tmp_path / "s.zarr")
    tiny_store(10, chunk=4, url=url)
    spec = StoreSpec(n_objects=5, bands=("g",), height=4, width=4)
    with pytest.raises(StoreExistsError, match="already exists; choose another path or pass "
                                               "--overwrite"):
        create_store(url, spec)
    create_store(url, spec, overwrite=True)
    assert zarr.open_group(url, mode="r")["images"].shape == (5, 1, 4, 4)


def test_writer_refuses_images_off_the_write_unit(tmp_path):
    url = str(tmp_path / "s.zarr")
    create_store(url, StoreSpec(n_objects=40, bands=("b0", "b1"), height=8, width=8,
                                chunk_objects=16, labels=("redshift",)))
    writer = StoreWriter(url)
    with pytest.raises(InvalidParameterError, match="not aligned to the store's write unit of 16"):
        writer.write(tiny_batch(8, 24))
    writer.write(tiny_batch(32, 40))  # the short last unit is fine


def test_writer_refuses_cutouts_of_another_shape(tmp_path):
    """Zarr itself takes a block of the wrong shape without complaint and stores a wrong
    one; the writer names the mismatch and writes nothing."""
    url = str(tmp_path / "s.zarr")
    create_store(url, StoreSpec(n_objects=16, bands=("b0", "b1"), height=8, width=8,
                                chunk_objects=16))
    writer = StoreWriter(url)
    for shape in ((16, 2, 16, 16), (16, 3, 8, 8), (16, 2, 8)):
        with pytest.raises(InvalidParameterError,
                           match=rf"shape \({', '.join(map(str, shape[1:]))},?\) do not fit "
                                 r"store .*, whose cutouts are \(2, 8, 8\)"):
            writer.write_images(0, np.ones(shape, np.float32))
    assert np.isnan(zarr.open_group(url, mode="r")["images"][:]).all()


def test_units_in_any_order_give_the_same_store(tmp_path, monkeypatch):
    """Columns are buffered per window and written when the window is whole."""
    monkeypatch.setattr("surveyproc.store.layout.COLUMN_CHUNK", 48)
    url = str(tmp_path / "s.zarr")
    spec = StoreSpec(n_objects=100, bands=("b0", "b1"), height=8, width=8, chunk_objects=16,
                     labels=("redshift",), photometry=True)
    assert spec.column_chunk_objects == 48
    create_store(url, spec)
    writer = StoreWriter(url)
    order = [80, 16, 96, 0, 48, 64, 32]
    for start in order:
        writer.write_images(start, tiny_batch(start, min(start + 16, 100)).images)
    for start in order:
        writer.add_columns(tiny_batch(start, min(start + 16, 100)))
    writer.finalize()
    store = open_store(url)
    assert store.array("object_id").chunks == (48,)
    got = store.read(0, 100)
    np.testing.assert_array_equal(got.object_id, np.arange(100))
    np.testing.assert_array_equal(got.images, tiny_batch(0, 100).images)
    np.testing.assert_array_equal(got.labels["redshift"], tiny_batch(0, 100).labels["redshift"])


def test_missing_units_leave_the_store_incomplete(tmp_path):
    url = str(tmp_path / "s.zarr")
    create_store(url, StoreSpec(n_objects=40, bands=("b0", "b1"), height=8, width=8,
                                chunk_objects=16, labels=("redshift",)))
    writer = StoreWriter(url)
    writer.write(tiny_batch(0, 16))
    writer.write(tiny_batch(32, 40))
    with pytest.raises(InvalidParameterError, match=r"objects of \[0, 40\) were only partly "
                                                    "written"):
        writer.finalize()
    with pytest.raises(StoreFormatError, match="writing this store did not finish"):
        open_store(url)


