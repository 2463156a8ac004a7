"""Every way a store can break the contract gives one sentence naming the problem, and exit 2."""

from __future__ import annotations

import pytest
import zarr

from surveyproc.cli import main
from surveyproc.errors import StoreFormatError, StoreNotFoundError
from surveyproc.store import open_store
from surveyproc.testing import tiny_store


def _group(url):
    return zarr.open_group(url, mode="r+")


def _break_missing_array(g):
    del g["ra"]


def _break_shape(g):
    del g["dec"]
    g.create_array("dec", shape=(7,), dtype="float64")


def _break_band_count(g):
    g.attrs["bands"] = ["b0", "b1", "b2"]
    g.attrs["zero_points"] = {"b0": 22.5, "b1": 22.5, "b2": 22.5}


def _break_duplicate_ids(g):
    ids = g["object_id"][:]
    ids[5] = ids[3]
    g["object_id"][:] = ids


def _break_version(g):
    g.attrs["format_version"] = 99


def _break_not_ours(g):
    del g.attrs["format_version"]


def _break_dtype(g):
    del g["object_id"]
    g.create_array("object_id", shape=(40,), dtype="float32")


def _break_image_dtype(g):
    del g["images"]
    g.create_array("images", shape=(40, 2, 8, 8), dtype="int16", chunks=(16, 2, 8, 8))


def _break_chunking(g):
    del g["images"]
    g.create_array("images", shape=(40, 2, 8, 8), dtype="float32", chunks=(16, 1, 8, 8))


def _break_label_dtype(g):
    g.create_array("labels/z_bad", shape=(40,), dtype="float64")


def _break_photometry_band(g):
    g.create_array("photometry/q", shape=(40,), dtype="float32")


def _break_incomplete(g):
    g.attrs["complete"] = False


def _break_measures_shape(g):
    del g["pixel_measures"]
    g.create_array("pixel_measures", shape=(40, 2, 2), dtype="float32", chunks=(16, 2, 2))


def _break_measures_chunking(g):
    del g["pixel_measures"]
    g.create_array("pixel_measures", shape=(40, 3, 2), dtype="float32", chunks=(8, 3, 2))


CASES = [
    (_break_missing_array, r"array 'ra' is missing"),
    (_break_shape, r"array 'dec' has shape \(7,\) but the store holds 40 objects"),
    (_break_band_count, r"'images' has 2 bands but attribute 'bands' lists 3"),
    (_break_duplicate_ids, r"duplicate ids .* 3 appears 2 times"),
    (_break_version, r"unknown format version 99"),
    (_break_not_ours, r"'format_version' is missing; this is not a surveyproc store"),
    (_break_dtype, r"array 'object_id' has dtype float32, expected int64"),
    (_break_image_dtype, r"array 'images' has dtype int16"),
    (_break_chunking, r"chunks must span whole cutouts"),
    (_break_label_dtype, r"array 'labels/z_bad' has dtype float64, expected float32"),
    (_break_photometry_band, r"'photometry/q' names a band that is not in attribute 'bands'"),
    (_break_incomplete, r"writing this store did not finish"),
    (_break_measures_shape, r"'pixel_measures' has shape \(40, 2, 2\); expected \(40, 3, 2\)"),
    (_break_measures_chunking, r"'pixel_measures' is chunked \(8, 3, 2\); expected chunks "
                               r"of the images' 16 objects"),
]


@pytest.mark.parametrize(("breaker", "message"), CASES, ids=[c[0].__name__[7:] for c in CASES])
def test_malformed_store_fails_with_one_clear_line(tmp_path, capsys, breaker, message):
    url = str(tmp_path / "bad.zarr")
    tiny_store(40, chunk=16, url=url)
    breaker(_group(url))
    with pytest.raises(StoreFormatError, match=message) as caught:
        open_store(url)
    assert str(caught.value).startswith(f"store {url}: ")
    assert "\n" not in str(caught.value)

    assert main(["info", url]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1
    assert err[0].startswith("surveyproc: error: store ")


def test_missing_store_is_not_found(tmp_path, capsys):
    with pytest.raises(StoreNotFoundError, match="no Zarr group found"):
        open_store(tmp_path / "nothing.zarr")
    assert main(["info", str(tmp_path / "nothing.zarr")]) == 2
    assert "no Zarr group found" in capsys.readouterr().err


def test_valid_store_opens_and_reports_layout():
    store = tiny_store(40, chunk=16)
    assert store.n_objects == 40
    assert store.bands == ("b0", "b1")
    assert store.layout.chunk_objects == 16
    assert store.label_names == ("redshift",)
    assert store.layout.photometry_bands == ("b0", "b1")
