"""Kind ``binned_density``: ResNet-18 (or, with ``inputs: photometry``, an MLP on the photometry;
with ``inputs: both``, the two) -> softmax over bins of one target, read as its PDF: the plain
baseline of CLAP's paper."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, ClassVar

import numpy as np
import torch
from pydantic import Field, model_validator
from torch import nn

from ..catalog.schema import ModelColumns
from ..models.checkpoint import Checkpoint, TargetInfo
from ..models.density import BinnedDensity
from ..models.grid import Grid
from ..models.inputs import build_trunk
from .base import InputsSettings, ModelKind, ModelSettings
from .columns import density_columns, density_outputs
from .registry import register_kind
from .tasks import DensityTask

__all__ = ["BinnedDensityKind", "BinnedDensitySettings"]


class BinnedDensitySettings(InputsSettings):
    """A PDF of one target on a grid of equal bins, from images or photometry."""

    grid: Grid = Field(description="Bins of the target: low, high, n_bins.")

    @model_validator(mode="after")
    def _one_target(self) -> BinnedDensitySettings:
        if len(self.targets) != 1:
            msg = f"kind {self.kind} predicts exactly one target, got {len(self.targets)}"
            raise ValueError(msg)
        return self


@register_kind
class BinnedDensityKind(ModelKind):
    """Cross-entropy over the bins during training; a PDF column per galaxy in the catalog."""

    name = "binned_density"
    description = "ResNet-18 (or an MLP on photometry) -> softmax over target bins (PDF)"
    settings: ClassVar[type[ModelSettings]] = BinnedDensitySettings
    input_sources: ClassVar[tuple[str, ...]] = ("images", "photometry", "both")

    def build(self, config: Mapping[str, Any]) -> nn.Module:
        return BinnedDensity(config["in_bands"], Grid(**config["grid"]), config.get("width", 64),
                             build_trunk(config))

    def task(self, config: Mapping[str, Any], targets: list[TargetInfo]) -> DensityTask:
        return DensityTask(Grid(**config["grid"]), targets[0])

    def columns(self, name: str, checkpoint: Checkpoint) -> ModelColumns:
        return density_columns(name, checkpoint, Grid(**checkpoint.config["grid"]))

    def infer(self, module: nn.Module, x: torch.Tensor, columns: ModelColumns,
              checkpoint: Checkpoint, truth: np.ndarray | None = None
              ) -> dict[str, np.ndarray]:
        assert columns.grid is not None
        logits = module(x).logits.float()
        pdf = (torch.softmax(logits, dim=1) / columns.grid.width).cpu().numpy()
        return density_outputs(pdf, columns.targets[0], columns.grid)
