"""Ingest real survey files into a store: per-object FITS cutouts, large images with WCS, or a
table of photometry (a photometry-only store)."""

from __future__ import annotations

from .catalog import Catalog, CatalogColumns, catalog_from_table, read_catalog
from .cutouts import ingest_cutouts
from .detect import detect_positions
from .images import ingest_images
from .report import IngestReport
from .table import TableReport, ingest_table

__all__ = [
    "Catalog",
    "CatalogColumns",
    "IngestReport",
    "TableReport",
    "catalog_from_table",
    "detect_positions",
    "ingest_cutouts",
    "ingest_images",
    "ingest_table",
    "read_catalog",
]
