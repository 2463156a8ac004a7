"""Cutouts from large images with WCS: exact pixels, per-band WCS, off-edge objects kept."""

from __future__ import annotations

import numpy as np
import pytest
from astropy.io import fits
from astropy.table import Table
from astropy.wcs import WCS

from surveyproc.errors import IngestError
from surveyproc.flags import Flag
from surveyproc.store import open_store
from surveyproc.store.ingest import CatalogColumns, detect_positions, ingest_images, read_catalog

SIZE = 200
SCALE = 0.25 / 3600  # deg per pixel


def _wcs(shift: float) -> WCS:
    wcs = WCS(naxis=2)
    wcs.wcs.ctype = ["RA---TAN", "DEC--TAN"]
    wcs.wcs.crval = [150.0, 2.0]
    wcs.wcs.crpix = [100.5 + shift, 100.5 - shift]
    wcs.wcs.cd = [[-SCALE, 0.0], [0.0, SCALE]]
    return wcs


def _image(path, shift: float, sources) -> WCS:
    wcs = _wcs(shift)
    rng = np.random.default_rng(int(shift * 10))
    data = rng.normal(0.0, 1.0, (SIZE, SIZE)).astype(np.float32)
    y, x = np.indices(data.shape)
    for ra, dec in sources:
        sx, sy = wcs.world_to_pixel_values(ra, dec)
        data += 200.0 * np.exp(-((x - sx) ** 2 + (y - sy) ** 2) / (2 * 2.0**2))
    header = wcs.to_header()
    header["MAGZERO"] = 25.0
    fits.PrimaryHDU(data, header=header).writeto(path)
    return wcs


@pytest.fixture
def field(tmp_path):
    inside = [(150.0 + dx / 3600, 2.0 + dy / 3600) for dx, dy in ((0, 0), (8, -6), (-10, 12))]
    edge = (150.0 + (SIZE / 2 - 5) * 0.25 / 3600 / np.cos(np.radians(2.0)), 2.0)  # 5 px in
    outside = (151.0, 2.0)
    wcs = {b: _image(tmp_path / f"{b}.fits", shift, inside)
           for b, shift in (("g", 0.0), ("r", 3.0))}
    positions = tmp_path / "positions.csv"
    coords = [*inside, edge, outside]
    Table({"object_id": [1, 2, 3, 4, 5], "ra": [c[0] for c in coords],
           "dec": [c[1] for c in coords], "redshift": [0.1, 0.2, 0.3, 0.4, 0.5]}) \
        .write(positions, format="ascii.csv")
    return tmp_path, wcs, coords


def test_cutouts_match_the_image_and_off_edge_objects_are_kept(field):
    folder, wcs, coords = field
    catalog = read_catalog(str(folder / "positions.csv"))
    report = ingest_images(str(folder / "s.zarr"),
                           {"g": str(folder / "g.fits"), "r": str(folder / "r.fits")},
                           catalog, size=16, chunk_objects=2, parallel=False,
                           sky_subtracted=True)
    store = open_store(str(folder / "s.zarr"))
    batch = store.read(0, 5)
    to_nanomaggy = 10 ** (-0.4 * (25.0 - 22.5))  # the images' MAGZERO is 25
    assert batch.object_id.tolist() == [1, 2, 3, 4, 5]
    assert batch.flags.tolist() == [0, 0, 0, int(Flag.OFF_EDGE), int(Flag.NO_DATA)]
    for b, band in enumerate(("g", "r")):
        data = fits.getdata(folder / f"{band}.fits")
        for i, (ra, dec) in enumerate(coords[:3]):
            x, y = wcs[band].world_to_pixel_values(ra, dec)
            # Cutout2D's documented placement: first pixel at ceil(position - size / 2)
            x0, y0 = int(np.ceil(x - 8)), int(np.ceil(y - 8))
            np.testing.assert_allclose(batch.images[i, b],
                                       data[y0:y0 + 16, x0:x0 + 16] * to_nanomaggy, rtol=1e-6)
            # the source sits at the centre of every band despite the different WCS
            peak = np.unravel_index(np.argmax(batch.images[i, b]), (16, 16))
            assert abs(peak[0] - 7.5) <= 1.5 and abs(peak[1] - 7.5) <= 1.5
    edge = batch.images[3]
    assert np.isnan(edge).any() and np.isfinite(edge).any()
    assert np.isnan(batch.images[4]).all()
    assert report.flags == {"OFF_EDGE": 1, "NO_DATA": 1}
    assert report.problems == {"partly off the image edge": 1, "no overlap with the g image": 1,
                               "no overlap with the r image": 1}
    assert store.attrs["pixel_scale"] == pytest.approx(0.25)
    np.testing.assert_allclose(batch.labels["redshift"], [0.1, 0.2, 0.3, 0.4, 0.5], rtol=1e-6)


def test_detected_sources_are_found_where_they_were_put(field):
    folder, _, coords = field
    found = detect_positions(str(folder / "g.fits"), nsigma=5, npixels=5)
    assert len(found) == 3
    for ra, dec in coords[:3]:
        separation = np.hypot((found.ra - ra) * np.cos(np.radians(dec)), found.dec - dec) * 3600
        assert separation.min() < 0.1  # arcsec; pixels are 0.25"


def test_bad_images_are_refused_with_the_reason(field, tmp_path):
    folder, _, _ = field
    catalog = read_catalog(str(folder / "positions.csv"), CatalogColumns(labels=()))
    fits.PrimaryHDU(np.zeros((10, 10), np.float32)).writeto(tmp_path / "nowcs.fits")
    with pytest.raises(IngestError, match="no celestial WCS"):
        ingest_images(str(tmp_path / "a.zarr"), {"g": str(tmp_path / "nowcs.fits")}, catalog,
                      size=8, parallel=False)
    with pytest.raises(IngestError, match="cannot open it"):
        ingest_images(str(tmp_path / "b.zarr"), {"g": str(tmp_path / "absent.fits")}, catalog,
                      size=8, parallel=False)
    with pytest.raises(IngestError, match=r"HDU 3\): cannot open it"):
        ingest_images(str(tmp_path / "c.zarr"), {"g": (str(folder / "g.fits"), 3)}, catalog,
                      size=8, parallel=False)
