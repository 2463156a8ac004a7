"""Survey stores: Zarr v3 groups of multi-band cutouts, labels and photometry at any fsspec URL.

``open_store`` validates and reads; ``create_store``/``StoreWriter`` write;
``plan_shards`` splits a store into chunk-aligned work; ``synth`` and
``ingest`` fill new stores.
"""

from __future__ import annotations

from .batch import CutoutBatch
from .create import StoreWriter, create_store
from .layout import StoreSpec
from .open import SurveyStore, open_store
from .shards import Shard, plan_shards

__all__ = [
    "CutoutBatch",
    "Shard",
    "StoreSpec",
    "StoreWriter",
    "SurveyStore",
    "create_store",
    "open_store",
    "plan_shards",
]
