from __future__ import annotations

import numpy as np
import pytest
from astropy.table import Table

from surveyproc.errors import IngestError
from surveyproc.store.ingest import CatalogColumns, read_catalog


def _table():
    return Table({"ID": [10, 11, 12], "RA": [150.0, 150.1, 150.2], "Dec": [2.0, 2.1, 2.2],
                  "redshift": [0.1, 0.2, np.nan], "mag_g": [20.0, 21.0, -9999.0],
                  "class": ["GALAXY", "QSO", "GALAXY"]})


@pytest.mark.parametrize("suffix", [".csv", ".fits", ".ecsv"])
def test_reads_each_table_format(tmp_path, suffix):
    path = tmp_path / f"cat{suffix}"
    _table().write(path, format={"csv": "ascii.csv", "fits": "fits",
                                 "ecsv": "ascii.ecsv"}[suffix[1:]])
    cat = read_catalog(str(path), CatalogColumns(id_column="id", photometry={"g": "mag_g"},
                                                 photometry_unit="mag"))
    assert cat.object_id.tolist() == [10, 11, 12]
    np.testing.assert_allclose(cat.ra, [150.0, 150.1, 150.2])
    assert set(cat.labels) == {"redshift"}  # numeric, not id/coords/photometry
    assert np.isnan(cat.labels["redshift"][2])
    np.testing.assert_allclose(cat.photometry["g"][:2], [10 ** (2.5 / 2.5), 10 ** (1.5 / 2.5)],
                               rtol=1e-6)
    assert np.isnan(cat.photometry["g"][2])  # -9999 sentinel means not measured
    assert cat.skipped_columns == ["class"]


def test_ids_hashed_from_several_columns_are_stable_and_unique(tmp_path):
    path = tmp_path / "c.csv"
    Table({"plate": [1, 1, 2], "fiber": [5, 6, 5], "ra": [1.0, 2, 3], "dec": [0.0, 0, 0]}) \
        .write(path, format="ascii.csv")
    columns = CatalogColumns(id_from=("plate", "fiber"))
    first = read_catalog(str(path), columns).object_id
    again = read_catalog(str(path), columns).object_id
    assert len(set(first.tolist())) == 3 and (first >= 0).all()
    np.testing.assert_array_equal(first, again)


def test_problems_name_the_column_and_the_fix(tmp_path):
    path = tmp_path / "c.csv"
    Table({"object_id": [1, 1], "ra": [1.0, 2.0], "dec": [0.0, 0.0]}).write(path,
                                                                            format="ascii.csv")
    with pytest.raises(IngestError, match=r"ids are not unique .* --id-from"):
        read_catalog(str(path))
    with pytest.raises(IngestError, match=r"no column 'ra_deg'.*it has object_id, ra, dec"):
        read_catalog(str(path), CatalogColumns(ra="ra_deg", row_ids=True))
    with pytest.raises(IngestError, match="file not found"):
        read_catalog(str(tmp_path / "absent.csv"))
    with pytest.raises(IngestError, match="unknown table format"):
        read_catalog(str(tmp_path / "c.txt"))
    Table({"object_id": [1, 2], "ra": [1.0, 2.0], "dec": [0.0, 95.0]}).write(
        path, format="ascii.csv", overwrite=True)
    with pytest.raises(IngestError, match=r"impossible coordinates \(first: row 1"):
        read_catalog(str(path))
