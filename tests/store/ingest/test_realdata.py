"""Ingest of real survey files from ../shared/data (DECam field, HSC cube, SDSS DR14 table)."""

from __future__ import annotations

import numpy as np
import pytest
from astropy.io import fits
from astropy.table import Table

from surveyproc.cli import main
from surveyproc.errors import IngestError
from surveyproc.flags import Flag
from surveyproc.store import open_store
from surveyproc.store.ingest import CatalogColumns, ingest_cutouts, read_catalog

pytestmark = pytest.mark.realdata


def test_decam_field_sources_detected_and_cut_out(shared_data, tmp_path, capsys, ray_session):
    decam = shared_data / "decam_grz"
    url = str(tmp_path / "decam.zarr")
    code = main(["ingest", "images", url, *(f"--image={b}={decam / f'img_{b}.fits'}"
                                            for b in "grz"),
                 "--detect", "--size", "48", "--zero-point", "30", "--chunk", "32"])
    out = capsys.readouterr().out
    assert code == 0, out
    store = open_store(url)
    batch = store.read(0, store.n_objects)
    assert store.n_objects > 50  # a real field: dozens of sources above 5 sigma
    assert store.bands == ("g", "r", "z")
    assert store.attrs["pixel_scale"] == pytest.approx(0.263, abs=0.001)
    off_edge = (batch.flags & Flag.OFF_EDGE) != 0
    # sources within 24 px of the border must be flagged, and only those
    x, y = batch.labels["det_x"], batch.labels["det_y"]
    near_edge = (np.minimum(x, y) < 23.5) | (np.maximum(x, y) > 511 - 24.5)
    np.testing.assert_array_equal(off_edge[~near_edge], False)
    assert off_edge.sum() >= near_edge.sum() - 2
    assert f"OFF_EDGE: {off_edge.sum()}" in out
    # every clean cutout is centred on its source in the detection band
    clean = batch.flags == 0
    centre = batch.images[clean, 1, 20:28, 20:28].max(axis=(1, 2))
    corner = np.nanmedian(batch.images[clean, 1, :6, :6], axis=(1, 2))
    assert (centre > corner).mean() > 0.95


def test_hsc_cube_ingested_as_a_per_object_file(shared_data, tmp_path):
    cube = shared_data / "hsc_cosmos" / "Cut_HSC.fits"
    header = fits.getheader(cube)
    catalog = tmp_path / "hsc.csv"
    Table({"object_id": [1], "ra": [header["CRVAL1"]], "dec": [header["CRVAL2"]],
           "file": [str(cube)]}).write(catalog, format="ascii.csv")
    report = ingest_cutouts(str(tmp_path / "hsc.zarr"), str(catalog), "/",
                            bands=tuple("grizy"), pattern="{file}", zero_point=27.0,
                            columns=CatalogColumns(exclude=("file",)), parallel=False,
                            sky_subtracted=True)  # HSC coadds come sky-subtracted
    store = open_store(str(tmp_path / "hsc.zarr"))
    assert report.n_clean == 1
    assert store.bands == tuple("grizy")
    assert store.attrs["pixel_scale"] == pytest.approx(0.168, abs=1e-3)
    np.testing.assert_allclose(store.read(0, 1).images[0],
                               fits.getdata(cube) * 10 ** (-0.4 * (27.0 - 22.5)), rtol=1e-5)


def test_sdss_spectroscopic_table_as_catalog(shared_data, tmp_path):
    table = shared_data / "sdss_dr14" / "skyserver_dr14_10k.csv"
    columns = CatalogColumns(id_from=("plate", "mjd", "fiberid"),
                             photometry={b: b for b in "ugriz"}, photometry_unit="mag",
                             labels=("redshift",))
    catalog = read_catalog(str(table), columns)
    assert len(catalog) == 10000
    assert len(np.unique(catalog.object_id)) == 10000  # objid alone is rounded, not unique
    raw = Table.read(table, format="ascii.csv")
    np.testing.assert_allclose(catalog.photometry["r"],
                               10 ** ((22.5 - np.asarray(raw["r"])) / 2.5), rtol=1e-5)
    galaxies = np.asarray(raw["class"]) == "GALAXY"
    assert 0.05 < np.median(catalog.labels["redshift"][galaxies]) < 0.1
    # objid was rounded to 1.24E+18 upstream: refused, with the way out named
    with pytest.raises(IngestError, match="'objid' is floating point and too large to be exact"
                                          "; store ids as integers or use --id-from"):
        read_catalog(str(table), CatalogColumns(id_column="objid"))
