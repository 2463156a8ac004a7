"""``surveyproc ingest table``: a catalog's photometry as a photometry-only store."""

from __future__ import annotations

import numpy as np
import pytest
import zarr

from surveyproc.cli import main
from surveyproc.errors import StoreFormatError
from surveyproc.store import open_store


def write_table(path, n=60, seed=0):
    """An SDSS-like CSV: magnitudes with errors, a class column, rounded objid."""
    rng = np.random.default_rng(seed)
    lines = ["objid,ra,dec,u,g,u_err,g_err,redshift,plate,mjd,fiberid,class"]
    for i in range(n):
        cls = "GALAXY" if i % 3 else "STAR"
        u = -9999.0 if i == 1 else 20 + rng.normal()
        lines.append(f"1.24E+18,{150 + i * 0.01},{2.0},{u:.4f},{19 + rng.normal():.4f},0.1,0.05,"
                     f"{rng.uniform(0.01, 0.3):.5f},{300 + i // 10},{51600},{i},{cls}")
    path.write_text("\n".join(lines) + "\n")
    return path


def test_table_becomes_a_photometry_only_store(tmp_path, capsys):
    table = write_table(tmp_path / "sdss.csv")
    url = str(tmp_path / "p.zarr")
    assert main(["ingest", "table", url, "--catalog", str(table),
                 "--id-from", "plate,mjd,fiberid", "--photometry", "u=u", "--photometry",
                 "g=g", "--photometry-error", "u=u_err", "--photometry-error", "g=g_err",
                 "--label", "z_spec=redshift", "--where", 'class == "GALAXY"']) == 0
    out = capsys.readouterr().out
    assert "objects     40 of 60 rows (20 left out by --where)" in out
    store = open_store(url)
    assert not store.layout.has_images and store.layout.photometry_error_bands == ("u", "g")
    batch = store.read(0, store.n_objects)
    assert batch.images is None and len(batch) == 40 and store.label_names == ("z_spec",)
    assert np.all(np.diff(batch.object_id) > 0)  # sorted, unique hashed ids
    # AB magnitudes became nanomaggies (22.5 - 2.5 log10 f); the -9999 sentinel is missing
    text = [line.split(",") for line in table.read_text().splitlines()[1:]]
    galaxies = [row for row in text if row[-1] == "GALAXY"]
    g = np.sort(10 ** ((22.5 - np.array([float(r[4]) for r in galaxies])) / 2.5))
    np.testing.assert_allclose(np.sort(batch.photometry["g"]), g, rtol=1e-5)
    assert np.isnan(batch.photometry["u"]).sum() == 1
    np.testing.assert_allclose(batch.photometry_error["g"] / batch.photometry["g"],
                               0.05 * np.log(10) / 2.5, rtol=1e-5)


@pytest.mark.parametrize(("extra", "needle"), [
    (["--photometry", "g=gmag"], "no column 'gmag'"),
    (["--photometry", "g=class"], "column 'class' row 0: 'STAR' is not a number"),
    (["--photometry", "g=g", "--where", "klass == 1"], "--where 'klass == 1' cannot be"),
    (["--photometry", "g=g", "--where", "redshift > 5"], "no row of 60 satisfies"),
])
def test_bad_table_input_is_one_line_and_writes_nothing(tmp_path, capsys, extra, needle):
    table = write_table(tmp_path / "t.csv")
    url = tmp_path / "bad.zarr"
    assert main(["ingest", "table", str(url), "--catalog", str(table),
                 "--id-from", "plate,mjd,fiberid", *extra]) == 2
    err = capsys.readouterr().err.strip()
    assert needle in err and len(err.splitlines()) == 1
    assert not url.exists()


def test_store_without_images_is_declared_so(tmp_path):
    table = write_table(tmp_path / "t.csv")
    url = str(tmp_path / "p.zarr")
    assert main(["ingest", "table", url, "--catalog", str(table), "--row-ids",
                 "--photometry", "g=g", "-q"]) == 0
    group = zarr.open_group(url, mode="r+")
    group.create_array("images", shape=(60, 1, 4, 4), chunks=(60, 1, 4, 4), dtype="float32")
    with pytest.raises(StoreFormatError, match="says the store has no images but it holds"):
        open_store(url)
    del group["images"]
    group.attrs["images"] = True  # declares images it does not have: still malformed
    with pytest.raises(StoreFormatError, match="array 'images' is missing"):
        open_store(url)
