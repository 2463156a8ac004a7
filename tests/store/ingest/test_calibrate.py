"""Calibrated ingest: raw counts on a sky become sky-subtracted nanomaggies with the noise,
zero point and PSF recorded, and `info` shows them."""

from __future__ import annotations

import re

import numpy as np
import pytest
from astropy.io import fits
from astropy.table import Table
from astropy.wcs import WCS

from surveyproc.cli import main
from surveyproc.errors import IngestError
from surveyproc.flags import Flag
from surveyproc.store import open_store
from surveyproc.store.ingest import detect_positions, ingest_images, read_catalog

SIZE, SKY, NOISE, ZP = 240, 60.0, 8.0, 30.0  # counts; 1 count = 10**(-0.4 * 7.5) nanomaggy
TO_NMGY = 10 ** (-0.4 * (ZP - 22.5))
PIXEL = 0.25  # arcsec
PSF_SIGMA = 1.7  # pixels: FWHM 4.0 px = 1.0 arcsec


def _field(path, *, zp_keyword: bool = True, seed: int = 0):
    """A sky image with stars (PSF-sized) and galaxies (three times wider) on a grid."""
    wcs = WCS(naxis=2)
    wcs.wcs.ctype = ["RA---TAN", "DEC--TAN"]
    wcs.wcs.crval = [150.0, 2.0]
    wcs.wcs.crpix = [SIZE / 2 + 0.5, SIZE / 2 + 0.5]
    wcs.wcs.cd = [[-PIXEL / 3600, 0.0], [0.0, PIXEL / 3600]]
    rng = np.random.default_rng(seed)
    data = rng.normal(SKY, NOISE, (SIZE, SIZE))
    y, x = np.indices(data.shape)
    centres = [(40 + 53 * i, 40 + 53 * j) for i in range(4) for j in range(4)]
    for k, (cy, cx) in enumerate(centres):
        sigma = PSF_SIGMA if k % 2 == 0 else 3 * PSF_SIGMA
        flux = 20_000.0  # counts: 20 nanomaggies
        data += flux / (2 * np.pi * sigma**2) * np.exp(-((x - cx) ** 2 + (y - cy) ** 2)
                                                        / (2 * sigma**2))
    header = wcs.to_header()
    if zp_keyword:
        header["MAGZERO"] = ZP
    fits.PrimaryHDU(data.astype(np.float32), header=header).writeto(path)
    sky = wcs.pixel_to_world([c[1] for c in centres], [c[0] for c in centres])
    return sky, [k % 2 == 0 for k in range(len(centres))]


def test_counts_on_a_sky_become_sky_subtracted_nanomaggies(tmp_path):
    sky, _ = _field(tmp_path / "g.fits")
    positions = tmp_path / "pos.csv"
    Table({"object_id": range(len(sky)), "ra": sky.ra.deg, "dec": sky.dec.deg}) \
        .write(positions, format="ascii.csv")
    ingest_images(str(tmp_path / "s.zarr"), {"g": str(tmp_path / "g.fits")},
                  read_catalog(str(positions)), size=40, parallel=False)
    store = open_store(str(tmp_path / "s.zarr"))
    images = store.read(0, len(sky)).images[:, 0]
    corners = np.concatenate([images[:, :6, :6].ravel(), images[:, -6:, -6:].ravel()])
    assert abs(np.median(corners)) < 0.05 * NOISE * TO_NMGY  # the sky is gone
    assert np.std(corners) == pytest.approx(NOISE * TO_NMGY, rel=0.1)
    central = images[:, 20 - 12:20 + 12, 20 - 12:20 + 12].sum(axis=(1, 2))
    np.testing.assert_allclose(central[::2], 20.0, rtol=0.05)  # stars: 20 nanomaggies each
    calibration = store.attrs["calibration"]
    assert store.attrs["flux_unit"] == "nanomaggy"
    assert calibration["sky_subtracted"] is True
    assert calibration["input_zero_points"] == {"g": ZP}
    assert calibration["noise"]["g"] == pytest.approx(NOISE * TO_NMGY, rel=0.1)
    assert calibration["sky_before_subtraction"]["g"] == pytest.approx(SKY * TO_NMGY, rel=0.02)


def test_sky_subtracted_inputs_keep_their_level(tmp_path):
    sky, _ = _field(tmp_path / "g.fits")
    positions = tmp_path / "pos.csv"
    Table({"ra": sky.ra.deg[:2], "dec": sky.dec.deg[:2]}).write(positions, format="ascii.csv")
    from surveyproc.store.ingest import CatalogColumns

    ingest_images(str(tmp_path / "s.zarr"), {"g": str(tmp_path / "g.fits")},
                  read_catalog(str(positions), CatalogColumns(row_ids=True)), size=40,
                  sky_subtracted=True, parallel=False)
    images = open_store(str(tmp_path / "s.zarr")).read(0, 2).images
    assert np.median(images[:, :, :6, :6]) == pytest.approx(SKY * TO_NMGY, rel=0.02)
    assert open_store(str(tmp_path / "s.zarr")).attrs["calibration"]["sky_method"] == \
        "subtracted before ingest"


def test_no_zero_point_is_one_line_asking_for_it(tmp_path):
    sky, _ = _field(tmp_path / "g.fits", zp_keyword=False)
    positions = tmp_path / "pos.csv"
    Table({"object_id": [1], "ra": sky.ra.deg[:1], "dec": sky.dec.deg[:1]}) \
        .write(positions, format="ascii.csv")
    with pytest.raises(IngestError, match=r"gives no zero point .* give --zero-point"):
        ingest_images(str(tmp_path / "s.zarr"), {"g": str(tmp_path / "g.fits")},
                      read_catalog(str(positions)), size=40, parallel=False)
    assert not (tmp_path / "s.zarr").exists()


def test_detection_measures_the_psf_and_flags_the_stars(tmp_path):
    sky, is_star = _field(tmp_path / "g.fits")
    catalog = detect_positions(str(tmp_path / "g.fits"), band="g")
    assert catalog.table.meta["psf_fwhm_arcsec"] == pytest.approx(2.355 * PSF_SIGMA * PIXEL,
                                                                  rel=0.1)
    found = catalog.flags == Flag.STAR_LIKE
    from astropy.coordinates import SkyCoord

    nearest, _, _ = SkyCoord(catalog.ra, catalog.dec, unit="deg").match_to_catalog_sky(sky)
    truth = np.asarray(is_star)[nearest]
    assert found[truth].all() and not found[~truth].any()


def test_info_shows_the_calibration(tmp_path, capsys):
    _field(tmp_path / "g.fits")
    assert main(["ingest", "images", str(tmp_path / "s.zarr"), "--image",
                 f"g={tmp_path / 'g.fits'}", "--detect", "--size", "32", "--serial"]) == 0
    out = capsys.readouterr().out
    assert re.search(r"PSF FWHM (0\.9\d|1\.0\d) arcsec; 8 star-like", out), out
    assert main(["info", str(tmp_path / "s.zarr")]) == 0
    info = capsys.readouterr().out
    assert "calibration sky subtracted" in info and "zero points g=30" in info
    assert "noise       g=0.00" in info and re.search(r"psf fwhm    g=(0\.9|1\.0)", info)
    assert "STAR_LIKE: 8" in info
