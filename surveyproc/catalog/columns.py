"""Catalog column names and types, generated in one place.

The writer, the statistics, the test helpers and every model kind name
columns through these functions, so a rename is one edit.

Examples
--------
>>> stat_column("redshift", "q50"), pdf_column("redshift"), act_idx_column("sfnet_")
('redshift_q50', 'redshift_pdf', 'sfnet_act_idx')
"""

from __future__ import annotations

import pyarrow as pa

from ..errors import InvalidParameterError

__all__ = ["ARROW_TYPES", "IDENTITY", "POINT_STATS", "STATS", "act_idx_column",
           "act_val_column", "arrow_type", "latent_column", "pdf_column", "stat_column"]

#: Summary statistics written for every target.
STATS = ("mean", "std", "q16", "q50", "q84")
#: Point estimates a PDF target can be summarised by (``<t>_mode`` is written for PDFs).
POINT_STATS = ("mean", "q50", "mode")

IDENTITY = pa.schema([
    ("object_id", pa.int64()),
    ("ra", pa.float64()),
    ("dec", pa.float64()),
    ("flags", pa.int32()),
    ("run_id", pa.dictionary(pa.int8(), pa.string())),
    ("model_id", pa.dictionary(pa.int8(), pa.string())),
])

#: Types a model kind may give its own columns (name -> Arrow type).
ARROW_TYPES: dict[str, pa.DataType] = {
    "float32": pa.float32(),
    "float64": pa.float64(),
    "int16": pa.int16(),
    "int32": pa.int32(),
    "int64": pa.int64(),
    "list<float32>": pa.list_(pa.float32()),
    "list<int16>": pa.list_(pa.int16()),
}


def arrow_type(name: str) -> pa.DataType:
    """The Arrow type of a kind column's type name (one clear line if unsupported)."""
    try:
        return ARROW_TYPES[name]
    except KeyError:
        msg = f"column type {name!r} is not one of {', '.join(ARROW_TYPES)}"
        raise InvalidParameterError(msg) from None


def stat_column(target: str, stat: str) -> str:
    """``<target>_<stat>``: a summary statistic of a target's estimate."""
    return f"{target}_{stat}"


def pdf_column(target: str) -> str:
    """``<target>_pdf``: densities on the model's grid (list<float32>)."""
    return f"{target}_pdf"


def act_idx_column(prefix: str = "") -> str:
    """Indices of a sparse model's active features (list<int16>)."""
    return f"{prefix}act_idx"


def act_val_column(prefix: str = "") -> str:
    """Values of a sparse model's active features (list<float32>)."""
    return f"{prefix}act_val"


def latent_column(model: str) -> str:
    """``<model>_latent``: a model's learned latent vector per galaxy (list<float32>), where
    the local conditional-independence tests find each galaxy's neighbours."""
    return f"{model}_latent"
