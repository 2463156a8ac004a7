"""Ingest real survey files into a store: per-object FITS cutouts, or large images with WCS."""

from __future__ import annotations

from .catalog import Catalog, CatalogColumns, catalog_from_table, read_catalog
from .cutouts import ingest_cutouts
from .detect import detect_positions
from .images import ingest_images
from .report import IngestReport

__all__ = [
    "Catalog",
    "CatalogColumns",
    "IngestReport",
    "catalog_from_table",
    "detect_positions",
    "ingest_cutouts",
    "ingest_images",
    "read_catalog",
]
