"""Kind ``deep_ensemble``: ``members`` softmax-binned networks from different random starts,
their PDFs averaged: the deep-ensemble baseline of CLAP's paper."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, ClassVar

import numpy as np
import torch
from pydantic import Field
from torch import nn

from ..catalog.schema import ModelColumns
from ..models.checkpoint import Checkpoint, TargetInfo
from ..models.grid import Grid
from ..models.inputs import build_trunk
from ..models.mixture import DensityEnsemble
from .base import ModelSettings
from .binned_density import BinnedDensityKind, BinnedDensitySettings
from .columns import density_outputs
from .registry import register_kind
from .tasks import DensityTask, binned_cross_entropy

__all__ = ["DeepEnsembleKind", "DeepEnsembleSettings", "EnsembleTask"]


class DeepEnsembleSettings(BinnedDensitySettings):
    """Several softmax-binned networks of one target, averaged."""

    members: int = Field(5, ge=2, le=32, description="Networks in the ensemble, each from "
                         "its own random start.")


@dataclass
class EnsembleTask(DensityTask):
    """The sum of the members' cross-entropies (each member learns as if alone); the
    density task's metrics on the members' mean PDF."""

    def loss(self, model: nn.Module, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        logits = model(x).logits.float()
        return torch.stack([binned_cross_entropy(member, y, self.grid)
                            for member in logits]).sum()

    def predict(self, model: nn.Module, x: torch.Tensor) -> np.ndarray:
        return ensemble_pdf(model(x).logits, self.grid).cpu().numpy()


def ensemble_pdf(logits: torch.Tensor, grid: Grid) -> torch.Tensor:
    """(members, n, bins) logits -> (n, bins) mean of the members' densities."""
    return torch.softmax(logits.float(), dim=2).mean(0) / grid.width


@register_kind
class DeepEnsembleKind(BinnedDensityKind):
    """The binned density's grid, columns and inputs, with ``members`` networks."""

    name = "deep_ensemble"
    description = "members x (ResNet-18 or photometry MLP -> softmax over bins), averaged PDF"
    settings: ClassVar[type[ModelSettings]] = DeepEnsembleSettings

    def build(self, config: Mapping[str, Any]) -> nn.Module:
        members = int(config["members"])
        return DensityEnsemble(members, config["in_bands"], Grid(**config["grid"]),
                               config.get("width", 64),
                               [build_trunk(config) for _ in range(members)])

    def task(self, config: Mapping[str, Any], targets: list[TargetInfo]) -> EnsembleTask:
        return EnsembleTask(Grid(**config["grid"]), targets[0])

    def infer(self, module: nn.Module, x: torch.Tensor, columns: ModelColumns,
              checkpoint: Checkpoint, truth: np.ndarray | None = None
              ) -> dict[str, np.ndarray]:
        assert columns.grid is not None
        pdf = ensemble_pdf(module(x).logits, columns.grid).cpu().numpy()
        return density_outputs(pdf, columns.targets[0], columns.grid)
