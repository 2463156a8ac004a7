"""Per-object FITS cutouts in the three accepted layouts, with missing and odd-sized files."""

from __future__ import annotations

import numpy as np
import pytest
from astropy.io import fits
from astropy.table import Table

from surveyproc.errors import IngestError
from surveyproc.flags import Flag
from surveyproc.store import open_store
from surveyproc.store.ingest import CatalogColumns, ingest_cutouts

BANDS = ("g", "r", "z")
TO_NANOMAGGY = 10 ** (-0.4 * (27.0 - 22.5))  # the files' MAGZERO is 27


def _pixels(object_id: int, size: int = 12) -> np.ndarray:
    rng = np.random.default_rng(object_id)
    return rng.normal(object_id, 1.0, (len(BANDS), size, size)).astype(np.float32)


def _header() -> fits.Header:
    header = fits.Header()
    header.update(CTYPE1="RA---TAN", CTYPE2="DEC--TAN", CRVAL1=150.0, CRVAL2=2.0, CRPIX1=6.5,
                  CRPIX2=6.5, CD1_1=-0.2 / 3600, CD1_2=0.0, CD2_1=0.0, CD2_2=0.2 / 3600,
                  MAGZERO=27.0, BUNIT="nanomaggy")
    return header


def _catalog(tmp_path, ids) -> str:
    path = tmp_path / "catalog.csv"
    Table({"object_id": ids, "ra": 150 + np.arange(len(ids)) * 1e-3,
           "dec": np.full(len(ids), 2.0), "redshift": np.linspace(0.1, 0.2, len(ids))}) \
        .write(path, format="ascii.csv")
    return str(path)


def _write(folder, layout: str, object_id: int, size: int = 12) -> None:
    data = _pixels(object_id, size)
    if layout == "cube":
        fits.PrimaryHDU(data, header=_header()).writeto(folder / f"{object_id}.fits")
    elif layout == "extensions":
        hdus = [fits.PrimaryHDU(header=_header())]
        # Out of band order on purpose: planes are matched by EXTNAME.
        for k in (2, 0, 1):
            hdus.append(fits.ImageHDU(data[k], header=_header(), name=BANDS[k].upper()))
        fits.HDUList(hdus).writeto(folder / f"{object_id}.fits")
    else:
        for k, band in enumerate(BANDS):
            fits.PrimaryHDU(data[k], header=_header()).writeto(folder / f"{object_id}_{band}.fits")


@pytest.mark.parametrize("layout", ["cube", "extensions", "per_band"])
def test_each_layout_round_trips_and_missing_files_are_flagged(tmp_path, layout):
    folder = tmp_path / "cutouts"
    folder.mkdir()
    ids = list(range(100, 120))
    for object_id in ids:
        if object_id not in (105, 117):  # two objects without files
            _write(folder, layout, object_id)
    pattern = "{object_id}_{band}.fits" if layout == "per_band" else "{object_id}.fits"
    report = ingest_cutouts(str(tmp_path / "s.zarr"), _catalog(tmp_path, ids), str(folder),
                            bands=BANDS, pattern=pattern, chunk_objects=8, parallel=False,
                            sky_subtracted=True)
    store = open_store(str(tmp_path / "s.zarr"))
    batch = store.read(0, len(ids))
    assert batch.object_id.tolist() == ids
    for i, object_id in enumerate(ids):
        if object_id in (105, 117):
            assert batch.flags[i] == Flag.NO_DATA and np.isnan(batch.images[i]).all()
        else:
            assert batch.flags[i] == 0
            np.testing.assert_allclose(batch.images[i], _pixels(object_id) * TO_NANOMAGGY,
                                       rtol=1e-6)
    assert report.n_objects == 20 and report.n_clean == 18
    assert report.flags == {"NO_DATA": 2} and report.problems == {"missing file": 2}
    assert store.attrs["pixel_scale"] == pytest.approx(0.2)
    assert store.attrs["zero_points"] == {"g": 22.5, "r": 22.5, "z": 22.5}
    assert store.attrs["flux_unit"] == "nanomaggy"
    assert store.attrs["calibration"]["input_zero_points"] == {"g": 27.0, "r": 27.0, "z": 27.0}
    assert store.attrs["provenance"]["ingest_report"]["n_clean"] == 18
    np.testing.assert_allclose(batch.labels["redshift"], np.linspace(0.1, 0.2, 20), rtol=1e-6)


def test_cutouts_of_other_sizes_are_cropped_or_padded_and_flagged(tmp_path, ray_session):
    folder = tmp_path / "cutouts"
    folder.mkdir()
    _write(folder, "cube", 1, size=12)
    _write(folder, "cube", 2, size=16)  # centre-cropped to 12
    _write(folder, "cube", 3, size=8)  # NaN-padded to 12, flagged
    report = ingest_cutouts(str(tmp_path / "s.zarr"), _catalog(tmp_path, [1, 2, 3]),
                            str(folder), bands=BANDS, chunk_objects=1,
                            sky_subtracted=True)  # on Ray
    batch = open_store(str(tmp_path / "s.zarr")).read(0, 3)
    np.testing.assert_allclose(batch.images[1], _pixels(2, 16)[:, 2:14, 2:14] * TO_NANOMAGGY,
                               rtol=1e-6)
    np.testing.assert_allclose(batch.images[2][:, 2:10, 2:10], _pixels(3, 8) * TO_NANOMAGGY,
                               rtol=1e-6)
    assert np.isnan(batch.images[2][:, 0]).all()
    assert batch.flags.tolist() == [0, 0, int(Flag.OFF_EDGE)]
    assert report.flags == {"OFF_EDGE": 1}


def test_systematic_problems_stop_before_writing(tmp_path):
    folder = tmp_path / "cutouts"
    folder.mkdir()
    _write(folder, "cube", 1)
    catalog = _catalog(tmp_path, [1, 2])
    with pytest.raises(IngestError, match=r"does not hold the 5 bands asked for"):
        ingest_cutouts(str(tmp_path / "a.zarr"), catalog, str(folder),
                       bands=("g", "r", "i", "z", "y"), parallel=False)
    with pytest.raises(IngestError, match="no cutout file found"):
        ingest_cutouts(str(tmp_path / "b.zarr"), catalog, str(folder), bands=BANDS,
                       pattern="{object_id}.fit", parallel=False)
    with pytest.raises(IngestError, match=r"names \['tile'\]"):
        ingest_cutouts(str(tmp_path / "c.zarr"), catalog, str(folder), bands=BANDS,
                       pattern="{tile}/{object_id}.fits", parallel=False)
    assert not (tmp_path / "a.zarr").exists() and not (tmp_path / "b.zarr").exists()


def test_unreadable_file_is_flagged_not_fatal(tmp_path):
    folder = tmp_path / "cutouts"
    folder.mkdir()
    _write(folder, "cube", 1)
    (folder / "2.fits").write_bytes(b"this is not FITS")
    report = ingest_cutouts(str(tmp_path / "s.zarr"), _catalog(tmp_path, [1, 2]), str(folder),
                            bands=BANDS, parallel=False,
                            columns=CatalogColumns(labels=("redshift",)))
    assert report.flags == {"NO_DATA": 1}
    assert list(report.problems) == ["unreadable FITS (OSError)"]


def test_photometry_must_cover_every_band(tmp_path):
    folder = tmp_path / "cutouts"
    folder.mkdir()
    _write(folder, "cube", 1)
    path = tmp_path / "cat.csv"
    Table({"object_id": [1], "ra": [150.0], "dec": [2.0], "flux_g": [3.0]}).write(
        path, format="ascii.csv")
    with pytest.raises(IngestError, match=r"photometry columns are given for bands \['g'\] but "
                                          r"the store's bands are \['g', 'r', 'z'\]"):
        ingest_cutouts(str(tmp_path / "s.zarr"), str(path), str(folder), bands=BANDS,
                       columns=CatalogColumns(photometry={"g": "flux_g"}), parallel=False)
