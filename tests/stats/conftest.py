"""One synthetic catalog and its aggregates for the whole statistics session."""

from __future__ import annotations

import pytest

from tests.support.catalogs import SmallCatalog, small_catalog


@pytest.fixture(scope="session")
def small(tmp_path_factory, dask_session) -> SmallCatalog:
    return small_catalog(tmp_path_factory.mktemp("stats"))
