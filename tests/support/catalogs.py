"""The synthetic label store and catalog that the statistics and report tests share."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from surveyproc.catalog import read_catalog
from surveyproc.jobs import TargetSettings
from surveyproc.stats import Aggregates, aggregate_catalog
from surveyproc.store import SurveyStore
from surveyproc.testing import label_store, synthetic_catalog

#: Objects, sparse features and active features per galaxy of the shared catalog.
N, F, K = 3000, 24, 4
#: Photo-z conventions, judged on the PDF mean so tests can recompute them from the catalog.
PHOTO_Z = {"redshift": TargetSettings(relative_error=True, outliers=[0.15, 0.05], point="mean")}


@dataclass
class SmallCatalog:
    """A store of N labelled objects, its catalog (every tenth object OUT_OF_DISTRIBUTION),
    the catalog and labels as frames, and the catalog's aggregates."""

    store: SurveyStore
    root: Path
    table: pd.DataFrame
    labels: pd.DataFrame
    aggregates: Aggregates

    def __iter__(self):  # unpacks as (store, root, table, labels, aggregates)
        return iter((self.store, self.root, self.table, self.labels, self.aggregates))


def small_catalog(root: Path) -> SmallCatalog:
    store = label_store(str(root / "labels.zarr"), N, chunk=500, seed=1)
    synthetic_catalog(str(root / "cat"), store, rows_per_part=1000, n_features=F, k=K,
                      ood_every=10)
    table = read_catalog(str(root / "cat")).to_pandas()
    labels = pd.DataFrame({name: store.read_column(f"labels/{name}")
                           for name in store.label_names}).astype(np.float64)
    return SmallCatalog(store, root, table, labels,
                        aggregate_catalog(str(root / "cat"), store, targets=PHOTO_Z))


def uncommit(url: str, index: int) -> None:
    """Make a finished catalog look as a crash between shard ``index``'s part and its commit
    record leaves it: the part stays, its record and the manifest are gone."""
    from surveyproc.catalog.commits import CommitLog
    from surveyproc.catalog.writer import MANIFEST

    log = CommitLog(url)
    records = log.records()
    Path(url, MANIFEST).unlink()
    for segment in log.segments():
        Path(segment).unlink()
    for record in records.values():
        if record.index != index:
            log.write_record(record)
