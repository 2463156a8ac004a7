"""The catalog: one Parquet row per galaxy with estimates, PDFs and sparse activations."""

from .pdf import summarize_pdfs
from .reader import (
    CommittedParts,
    catalog_schema,
    committed_parts,
    manifest,
    pdf_ensemble,
    pdf_grid,
    read_catalog,
)
from .schema import STATS, CatalogSchema, ModelColumns, name_shared_columns
from .writer import CatalogWriter, CommitRecord, part_name

__all__ = [
    "STATS",
    "CatalogSchema",
    "CatalogWriter",
    "CommitRecord",
    "CommittedParts",
    "ModelColumns",
    "catalog_schema",
    "committed_parts",
    "manifest",
    "name_shared_columns",
    "part_name",
    "pdf_ensemble",
    "pdf_grid",
    "read_catalog",
    "summarize_pdfs",
]
