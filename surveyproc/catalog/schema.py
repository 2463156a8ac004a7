"""The catalog's columns, derived from the models a run applies.

One row per galaxy.  Identity columns come first (``object_id``, ``ra``,
``dec``, ``flags``, ``run_id``, ``model_id``); then, per target of every
model, ``<t>_mean``, ``<t>_std``, ``<t>_q16``, ``<t>_q50``, ``<t>_q84``;
models with PDFs add ``<t>_mode`` and ``<t>_pdf`` (list<float32> on a grid
recorded in the metadata); a sparse-feature model adds ``act_idx``
(list<int16>) and ``act_val`` (list<float32>), prefixed with the model name
when a run has more than one; a model kind may add columns of its own
(``extra_columns``).  Names come from :mod:`.columns`.

When several models of a run estimate one target (a calibrated model beside
its baselines), each of their estimates is named ``<model>_<t>``
(``clap_redshift_q50``, ``softmax_redshift_pdf``): :func:`name_shared_columns`
gives them their ``estimate_prefix`` and the metadata records it, so a reader
finds every model's columns in ``ModelColumns``.

The metadata (JSON under the Parquet schema key ``surveyproc``, and in
``_catalog.json``) says which model made which columns, the PDF grids, and
how each uncertainty was obtained, so a reader needs nothing else.
"""

from __future__ import annotations

import json
from collections import Counter
from dataclasses import dataclass, field, fields, replace
from typing import Any

import pyarrow as pa

from ..errors import InvalidParameterError
from ..models.grid import Grid
from .columns import (
    IDENTITY,
    STATS,
    act_idx_column,
    act_val_column,
    arrow_type,
    pdf_column,
    stat_column,
)

__all__ = ["METADATA_KEY", "STATS", "CatalogSchema", "ModelColumns", "list_column",
           "name_shared_columns"]

#: Parquet schema-metadata key holding the catalog description (JSON).
METADATA_KEY = b"surveyproc"
FORMAT = "surveyproc-catalog"
VERSION = 1

def list_column(values: Any) -> pa.ListArray:
    """(n, width) array -> list column of n rows of ``width`` values (PDFs, activations)."""
    import numpy as np

    n, width = values.shape
    offsets = pa.array(np.arange(0, n * width + 1, max(width, 1), dtype=np.int32)[: n + 1])
    return pa.ListArray.from_arrays(offsets, pa.array(values.reshape(-1)))


@dataclass(frozen=True)
class ModelColumns:
    """What one model contributes to a row.

    ``uncertainty`` says where ``<t>_std`` and the quantiles come from:
    ``"pdf"`` (the model's own density) or ``"validation_rmse"`` (a point
    estimate whose spread is the checkpoint's validation RMSE, the same for
    every galaxy; a Gaussian gives the quantiles).
    """

    name: str
    model_id: str
    kind: str
    targets: tuple[str, ...]
    units: tuple[str, ...]
    uncertainty: str
    grid: Grid | None = None  # bins of the targets' PDFs (one grid for every target)
    k: int | None = None  # active features per galaxy of a sparse model
    sparse_prefix: str = ""
    spread: tuple[float, ...] | None = None  # per-target validation RMSE (point estimates)
    n_features: int | None = None  # width of the feature layer (sparse models)
    #: The kind's own columns: (name, type name of :data:`.columns.ARROW_TYPES`).
    extra_columns: tuple[tuple[str, str], ...] = ()
    #: The kind's own facts for readers (JSON).
    extra: dict[str, Any] = field(default_factory=dict)
    #: Bins of each target's PDF, in target order, for a model whose targets have
    #: grids of their own (``grid`` is then None).
    grids: tuple[Grid, ...] | None = None
    #: Put before each of its targets' columns (``<prefix><t>_q50``) when another model of
    #: the run estimates one of them; empty otherwise.
    estimate_prefix: str = ""

    def __post_init__(self) -> None:
        if self.grids is not None and len(self.grids) != len(self.targets):
            msg = (f"model {self.name}: {len(self.grids)} PDF grids for "
                   f"{len(self.targets)} targets")
            raise InvalidParameterError(msg)

    @property
    def pdf_grids(self) -> dict[str, Grid]:
        """The PDF grid of each target that has a PDF column (none for point estimates)."""
        if self.grids is not None:
            return dict(zip(self.targets, self.grids, strict=True))
        return {t: self.grid for t in self.targets} if self.grid is not None else {}

    def estimate(self, target: str) -> str:
        """The name this model's estimate of ``target`` goes by in the catalog and report:
        ``target``, or ``<model>_<target>`` where other models estimate it too."""
        return f"{self.estimate_prefix}{target}"

    @property
    def estimates(self) -> dict[str, str]:
        """Estimate name -> target, in target order."""
        return {self.estimate(t): t for t in self.targets}

    def stat(self, target: str, stat: str) -> str:
        """The column of one summary statistic of this model's estimate of ``target``."""
        return stat_column(self.estimate(target), stat)

    def pdf(self, target: str) -> str:
        """The PDF column of this model's estimate of ``target``."""
        return pdf_column(self.estimate(target))

    def target_columns(self) -> list[str]:
        """Every column named after a target: statistics, and mode and PDF where gridded."""
        grids = self.pdf_grids
        names = []
        for target in self.targets:
            names += [self.stat(target, s) for s in STATS]
            if target in grids:
                names += [self.stat(target, "mode"), self.pdf(target)]
        return names

    def name_estimates(self, outputs: dict[str, Any]) -> dict[str, Any]:
        """A kind's outputs (target columns named ``<t>_<stat>``, as kinds write them)
        with this model's estimate names; unchanged without a prefix."""
        if not self.estimate_prefix:
            return outputs
        plain = replace(self, estimate_prefix="").target_columns()
        renamed = dict(zip(plain, self.target_columns(), strict=True))
        return {renamed.get(name, name): values for name, values in outputs.items()}

    @property
    def act_idx(self) -> str:
        return act_idx_column(self.sparse_prefix)

    @property
    def act_val(self) -> str:
        return act_val_column(self.sparse_prefix)

    def to_dict(self) -> dict[str, Any]:
        out = {f.name: getattr(self, f.name) for f in fields(self)}
        out["grid"] = self.grid.model_dump() if self.grid is not None else None
        out["grids"] = [g.model_dump() for g in self.grids] if self.grids is not None else None
        out["targets"], out["units"] = list(self.targets), list(self.units)
        out["spread"] = list(self.spread) if self.spread is not None else None
        out["extra_columns"] = [list(c) for c in self.extra_columns]
        return out

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> ModelColumns:
        known = {f.name for f in fields(cls)}
        values = {k: v for k, v in data.items() if k in known}
        values["targets"], values["units"] = tuple(data["targets"]), tuple(data["units"])
        values["spread"] = tuple(data["spread"]) if data.get("spread") else None
        values["grid"] = Grid(**data["grid"]) if data.get("grid") else None
        values["grids"] = tuple(Grid(**g) for g in data["grids"]) if data.get("grids") else None
        values["extra_columns"] = tuple(tuple(c) for c in data.get("extra_columns", ()))
        return cls(**values)


@dataclass
class CatalogSchema:
    """Columns and metadata of a catalog written by one set of models."""

    models: list[ModelColumns]
    extra: dict[str, Any] = field(default_factory=dict)  # store and plan facts

    def __post_init__(self) -> None:
        seen: dict[str, str] = {}
        for model in self.models:
            for column in self._model_columns(model):
                if column in seen:
                    msg = (f"models {seen[column]} and {model.name} both write column "
                           f"{column}" + (" (give the models different names)"
                                          if seen[column] != model.name else ""))
                    raise InvalidParameterError(msg)
                seen[column] = model.name

    @staticmethod
    def _model_columns(model: ModelColumns) -> list[str]:
        names = model.target_columns()
        if model.k is not None:
            names += [model.act_idx, model.act_val]
        return names + [name for name, _ in model.extra_columns]

    def find_estimate(self, name: str) -> tuple[ModelColumns, str]:
        """The model and target of estimate ``name`` (``<t>``, or ``<model>_<t>`` where
        several models estimate ``t``); a target estimated by several models must be named
        with its model."""
        for model in self.models:
            if name in model.estimates:
                return model, model.estimates[name]
        known = [e for m in self.models for e in m.estimates]
        msg = f"the catalog has no estimate {name!r}; it has {', '.join(known) or 'none'}"
        raise InvalidParameterError(msg)

    @property
    def model_id(self) -> str:
        """The ``model_id`` column's value: ``name=id`` of every model, comma-separated."""
        return ",".join(f"{m.name}={m.model_id}" for m in self.models)

    def arrow(self) -> pa.Schema:
        columns = list(IDENTITY)
        for model in self.models:
            grids = model.pdf_grids
            for target in model.targets:
                columns += [pa.field(model.stat(target, s), pa.float32()) for s in STATS]
                if target in grids:
                    columns += [pa.field(model.stat(target, "mode"), pa.float32()),
                                pa.field(model.pdf(target), pa.list_(pa.float32()))]
            if model.k is not None:
                columns += [pa.field(model.act_idx, pa.list_(pa.int16())),
                            pa.field(model.act_val, pa.list_(pa.float32()))]
            columns += [pa.field(name, arrow_type(kind)) for name, kind in model.extra_columns]
        return pa.schema(columns, metadata={METADATA_KEY: json.dumps(self.describe()).encode()})

    def describe(self) -> dict[str, Any]:
        """The JSON description stored with every part and in ``_catalog.json``."""
        return {"format": FORMAT, "version": VERSION, **self.extra,
                "models": [m.to_dict() for m in self.models]}

    @classmethod
    def from_description(cls, description: dict[str, Any]) -> CatalogSchema:
        extra = {k: v for k, v in description.items()
                 if k not in ("format", "version", "models")}
        models = [ModelColumns.from_dict(m) for m in description["models"]]
        return cls(models, extra)


def name_shared_columns(models: list[ModelColumns]) -> list[ModelColumns]:
    """``models`` with the model name put before the columns two of them would share: the
    estimates of a target that several models estimate, and the feature columns when
    several models are sparse (a catalog built from one model keeps the plain names)."""
    estimators = Counter(t for m in models for t in m.targets)
    sparse = sum(m.k is not None for m in models)
    out = []
    for model in models:
        if any(estimators[t] > 1 for t in model.targets):
            model = replace(model, estimate_prefix=f"{model.name}_")
        if model.k is not None and sparse > 1:
            model = replace(model, sparse_prefix=f"{model.name}_")
        out.append(model)
    return out
