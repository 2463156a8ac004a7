"""What a model kind is: one class that owns everything about one family of models.

A kind (SFNet, the dense CNN, PCA-k, the binned density, and every family to
come) is a :class:`ModelKind` subclass in its own module, registered with
:func:`~surveyproc.kinds.registry.register_kind`.  It owns

- its job-file section (a :class:`ModelSettings` subclass; the ``models:``
  list of a job file is a union keyed on ``kind``),
- how to build its network from a checkpoint's plain config,
- its training task (loss, metrics, which number is the validation score)
  and an optional closed-form step after gradient training,
- its catalog columns for a checkpoint and how a batch of its outputs becomes
  those columns,
- optional readouts at training time, an optional streaming aggregator over
  the catalog and an optional section of the report.

The stages (``jobs``, ``train``, ``infer``, ``catalog``, ``stats``) only loop
over kinds and call these methods, the way RAIL's stages or torchvision's
model builders keep one family in one place.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar, Literal, Protocol

import numpy as np
import torch
from pydantic import BaseModel, ConfigDict, Field, field_validator
from torch import nn

from ..catalog.schema import ModelColumns
from ..models.checkpoint import Checkpoint, TargetInfo

if TYPE_CHECKING:
    import pandas as pd

__all__ = ["MAGNITUDE_LABEL", "InputsSettings", "KindAggregator", "ModelKind", "ModelSettings",
           "ReportContext",
           "Task", "TrainingData"]


def _path_component(name: str, what: str) -> str:
    """Names become file and metric names: no spaces, no slashes."""
    if not name or any(c in name for c in "/\\ "):
        msg = f"{what} {name!r} must be non-empty, without spaces or slashes"
        raise ValueError(msg)
    return name


class ModelSettings(BaseModel):
    """The job-file section every kind's settings extend: a name, the kind, the targets."""

    model_config = ConfigDict(extra="forbid", validate_assignment=True)

    name: str = Field(description="Model name: its checkpoint is checkpoints/<name>.pt.")
    kind: str = Field(description="Model kind (surveyproc kinds lists them).")
    targets: list[str] = Field(min_length=1, description="Labels, or log_<label> (log10, "
                               "S/N >= 3).")
    width: int = Field(64, ge=4, description="Channels of the first ResNet stage.")

    @field_validator("name")
    @classmethod
    def _name_is_a_path_component(cls, name: str) -> str:
        return _path_component(name, "model name")


class InputsSettings(ModelSettings):
    """Settings of a kind that reads images, photometry or both (its ``input_sources``)."""

    inputs: Literal["images", "photometry", "both"] = Field(
        "images", description="images: a ResNet-18 on the cutouts; photometry: an MLP on "
        "the store's photometry (asinh magnitudes, colours and, where the store has them, "
        "errors), e.g. on a photometry-only store from 'surveyproc ingest table'; both: the "
        "two, their features joined (kinds that offer it).")
    mlp_hidden: int = Field(256, ge=8, description="Hidden units of the photometry MLP.")
    dropout: float = Field(0.0, ge=0.0, lt=1.0, description="Dropout rate of the "
                           "photometry MLP.")


class Task(Protocol):
    """What training optimises and reports (see :mod:`surveyproc.kinds.tasks`).

    ``metrics`` compares ``predict``'s output with the targets ``y``; a task whose ``y``
    is large (a translator's target cutouts) may also define ``truth(y) -> ndarray``,
    a per-object summary that evaluation keeps instead of ``y`` itself.
    """

    def loss(self, model: nn.Module, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor: ...

    def predict(self, model: nn.Module, x: torch.Tensor) -> np.ndarray: ...

    def metrics(self, predictions: np.ndarray, y: np.ndarray) -> dict[str, float]: ...


@dataclass
class TrainingData:
    """What a kind's closed-form step and readouts may read: batches of the splits.

    ``batches(split)`` yields ``(x, y, object_id)`` with normalised pixels and
    targets in their units; ``split_targets(split)`` the split's (objects, targets)
    values alone, without reading pixels; ``label(name, object_ids)`` reads a store label
    for those objects (NaN where the store has none); ``config`` is the checkpoint's
    network config.
    """

    targets: list[TargetInfo]
    batches: Callable[[str], Iterable[tuple[torch.Tensor, torch.Tensor, np.ndarray]]]
    label: Callable[[str, np.ndarray], np.ndarray | None]
    split_targets: Callable[[str], np.ndarray]
    config: Mapping[str, Any] = field(default_factory=dict)  # the network config


#: Key of the magnitude (AB, in the store's reference photometry band) in the labels a
#: kind aggregator's ``partial`` gets, where the store has photometry.
MAGNITUDE_LABEL = "@magnitude"
#: Edges (AB mag) of the report's magnitude bins, the aggregate's and every kind's.
MAGNITUDE_EDGES = (14.0, 16.0, 17.0, 18.0, 19.0, 20.0, 21.0, 22.0, 24.0)


class KindAggregator(Protocol):
    """A kind's own catalog statistics, computed in the streaming Dask pass.

    ``partial`` reduces some rows to a dict of NumPy arrays that add
    element-wise (counts, sums, histograms): partials are summed in a tree on
    the Dask workers, so they must be plain arrays; ``finish`` turns the
    total into whatever the kind's report section shows.  ``labels`` holds the store's
    label columns, each catalog target's truth under its name and, where the store has
    photometry, the magnitude under :data:`MAGNITUDE_LABEL`.
    """

    columns: list[str]

    def partial(self, frame: pd.DataFrame, labels: Mapping[str, np.ndarray]
                ) -> dict[str, np.ndarray]: ...

    def finish(self, total: dict[str, np.ndarray]) -> Any: ...


@dataclass
class ReportContext:
    """What a kind's report section can use; ``summary`` is its entry in summary.json."""

    columns: ModelColumns
    checkpoint: Checkpoint | None
    out_dir: Path
    summary: dict[str, Any]
    aggregate: Any = None  # what the kind's aggregator finished with
    features: Any = None  # the sparse-feature statistics of the model, if it has any
    #: ``table(frame, meanings={column: meaning})``: an HTML table and its columns'
    #: meanings (the report's shared ones for columns the mapping does not name).
    table: Callable[..., str] = field(default=lambda frame, meanings=None: "")
    image: Callable[[str, str], str] = field(default=lambda name, alt: "")



class ModelKind:
    """Base class of a model kind; subclasses set the class attributes and override.

    ``name`` is the value of ``kind:`` in a job file and in checkpoints;
    ``settings`` is the kind's job-file section.  The defaults here are those
    of a regression model without readouts, aggregator or report section.
    """

    name: ClassVar[str]
    description: ClassVar[str]
    settings: ClassVar[type[ModelSettings]] = ModelSettings
    #: Whether :meth:`infer` needs the store's true values of the targets (a kind whose
    #: columns measure something against the truth, e.g. information terms); inference
    #: then reads those labels with the pixels.
    needs_truth: ClassVar[bool] = False
    #: The inputs the kind's networks can read (its settings' ``inputs`` choices; a kind
    #: without that setting reads images): see :mod:`surveyproc.models.inputs`.
    input_sources: ClassVar[tuple[str, ...]] = ("images",)
    #: Whether gradient training reaches every parameter; a kind whose closed-form or
    #: later stage trains some of them (CLAP's refit heads) says False, and data-parallel
    #: training then lets DDP find the unused ones each step (else their gradient buckets
    #: are never reduced and the ranks drift apart).
    trains_every_parameter: ClassVar[bool] = True
    #: Whether the kind's models make catalog columns (``surveyproc infer``); an image
    #: translator makes a store instead (``surveyproc translate``) and says False.
    writes_catalog: ClassVar[bool] = True

    # -- building and training ----------------------------------------------------------

    def network_config(self, settings: ModelSettings, bands: Sequence[str]) -> dict[str, Any]:
        """The plain (JSON) config stored in the checkpoint, from which :meth:`build` makes
        the network: the number of input bands (the store's ``bands``, in order), the number
        of targets and every setting of the kind beyond name, kind and targets (override
        when some settings are not the network's, or name bands)."""
        own = settings.model_dump(mode="json", exclude={"name", "kind", "targets"})
        return {"in_bands": len(bands), "n_targets": len(settings.targets), **own}

    def build(self, config: Mapping[str, Any]) -> nn.Module:
        raise NotImplementedError

    def task(self, config: Mapping[str, Any], targets: list[TargetInfo]) -> Task:
        raise NotImplementedError

    def paired_store(self, settings: ModelSettings) -> str | None:
        """URL of a store of the same objects, in the same order, whose cutouts the model
        learns to make (an image translator's target survey); None for a kind that learns
        labels.  Training then takes that store's raw cutouts as ``y`` (augmented with
        the input) and the checkpoint's config gets its layout under ``pair``."""
        return None

    def after_fit(self, model: nn.Module, data: TrainingData) -> None:
        """A closed-form step after gradient training (e.g. PCA on the features); none by
        default."""

    def readouts(self, model: nn.Module, data: TrainingData) -> dict[str, Any] | None:
        """Facts about the trained model stored in its checkpoint's metrics; none by
        default."""
        return None

    # -- inference ----------------------------------------------------------------------

    def columns(self, name: str, checkpoint: Checkpoint) -> ModelColumns:
        raise NotImplementedError

    def infer(self, module: nn.Module, x: torch.Tensor, columns: ModelColumns,
              checkpoint: Checkpoint, truth: np.ndarray | None = None
              ) -> dict[str, np.ndarray]:
        """Catalog columns (1-D, or 2-D for list columns) for a batch of normalised pixels.

        A kind with :attr:`needs_truth` gets ``truth``: the (batch, targets) true values of
        its targets where the store has them, NaN elsewhere; other kinds get None."""
        raise NotImplementedError

    def translate(self, module: nn.Module, x: torch.Tensor, checkpoint: Checkpoint,
                  start: int) -> np.ndarray:
        """Cutouts in the paired survey's layout for a batch of normalised input pixels
        whose first object is ``start`` (each object's index seeds its noise, so the result
        does not depend on how the survey is batched): what ``surveyproc
        translate`` writes; only kinds with a :meth:`paired_store` translate."""
        msg = f"kind {self.name} does not translate images"
        raise NotImplementedError(msg)

    # -- statistics and report --------------------------------------------------------------

    def aggregator(self, columns: ModelColumns) -> KindAggregator | None:
        return None

    def report_section(self, context: ReportContext) -> str | None:
        """HTML for the report (after the model's generic sections); none by default."""
        return None
