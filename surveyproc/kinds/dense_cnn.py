"""Kind ``dense_cnn``: ResNet-18 -> ReLU -> linear head, the dense baseline of the SFNet paper."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import numpy as np
import torch
from torch import nn

from ..catalog.schema import ModelColumns
from ..models.checkpoint import Checkpoint, TargetInfo
from ..models.sfnet import DenseCNN
from .base import ModelKind
from .columns import point_columns, point_outputs
from .registry import register_kind
from .tasks import RegressionTask

__all__ = ["DenseCNNKind"]


@register_kind
class DenseCNNKind(ModelKind):
    """Point estimates of every target from all 8 x width pooled features."""

    name = "dense_cnn"
    description = "ResNet-18 -> ReLU -> linear (SFNet's dense baseline)"

    def build(self, config: Mapping[str, Any]) -> nn.Module:
        return DenseCNN(config["in_bands"], config["n_targets"], config.get("width", 64))

    def task(self, config: Mapping[str, Any], targets: list[TargetInfo]) -> RegressionTask:
        return RegressionTask(targets)

    def columns(self, name: str, checkpoint: Checkpoint) -> ModelColumns:
        return point_columns(name, checkpoint)

    def infer(self, module: nn.Module, x: torch.Tensor, columns: ModelColumns,
              checkpoint: Checkpoint, truth: np.ndarray | None = None
              ) -> dict[str, np.ndarray]:
        prediction = module(x).prediction.float().cpu().numpy()
        return point_outputs(prediction, checkpoint, columns)
