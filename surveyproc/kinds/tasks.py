"""The two training tasks the built-in kinds share: regression and density on a grid.

A task turns a model's output into a loss on a minibatch and into physical
predictions for metrics: regression models predict standardised targets
(masked MSE over the known ones); density models predict a softmax over a
grid (cross-entropy of the true bin).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import torch
from torch import nn

from ..models.checkpoint import TargetInfo
from ..models.grid import Grid

__all__ = ["DensityTask", "RegressionTask", "binned_cross_entropy"]


@dataclass
class RegressionTask:
    """Masked mean-squared error on standardised targets; RMSE per target in physical units."""

    targets: Sequence[TargetInfo]

    def __post_init__(self) -> None:
        self._mean = torch.tensor([t.mean for t in self.targets], dtype=torch.float32)
        self._std = torch.tensor([t.std for t in self.targets], dtype=torch.float32)

    def loss(self, model: nn.Module, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        prediction = model(x).prediction.float()
        z = (y - self._mean.to(y.device)) / self._std.to(y.device)
        known = torch.isfinite(z)
        return ((prediction - torch.nan_to_num(z)) ** 2 * known).sum() / known.sum().clamp(min=1)

    def predict(self, model: nn.Module, x: torch.Tensor) -> np.ndarray:
        """(batch, targets) predictions in the targets' units."""
        prediction = model(x).prediction.float().cpu()
        return (prediction * self._std + self._mean).numpy()

    def metrics(self, predictions: np.ndarray, y: np.ndarray) -> dict[str, float]:
        out: dict[str, float] = {}
        for j, target in enumerate(self.targets):
            known = np.isfinite(y[:, j])
            out[f"rmse_{target.name}"] = float(np.sqrt(np.mean(
                (predictions[known, j] - y[known, j]) ** 2))) if known.any() else float("nan")
        return out


def binned_cross_entropy(logits: torch.Tensor, y: torch.Tensor, grid: Grid) -> torch.Tensor:
    """Cross-entropy of each known truth's bin (``y[:, 0]``) under (batch, bins) logits; 0,
    still in the graph, for a batch without one."""
    known = torch.isfinite(y[:, 0])
    if not known.any():
        return logits.sum() * 0.0
    return nn.functional.cross_entropy(logits[known], grid.bin_of(y[known, 0]))


@dataclass
class DensityTask:
    """Cross-entropy of the true bin; mean-based RMSE, sigma_NMAD and mean log-density."""

    grid: Grid
    target: TargetInfo

    def loss(self, model: nn.Module, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        return binned_cross_entropy(model(x).logits.float(), y, self.grid)

    def predict(self, model: nn.Module, x: torch.Tensor) -> np.ndarray:
        """(batch, bins) PDFs on the grid (the model's ``logits`` output, softmaxed)."""
        logits = model(x).logits.float()
        return (torch.softmax(logits, dim=1) / self.grid.width).cpu().numpy()

    def metrics(self, predictions: np.ndarray, y: np.ndarray) -> dict[str, float]:
        known = np.isfinite(y[:, 0])
        truth = y[known, 0]
        pdf = predictions[known]
        centres = self.grid.centres().numpy()
        mean = (pdf * centres).sum(axis=1) * self.grid.width
        dz = (mean - truth) / (1 + truth)
        bins = self.grid.bin_of(torch.from_numpy(truth)).numpy()
        density = pdf[np.arange(len(bins)), bins]
        name = self.target.name
        return {
            f"rmse_{name}": float(np.sqrt(np.mean((mean - truth) ** 2))),
            f"sigma_nmad_{name}": float(1.4826 * np.median(np.abs(dz - np.median(dz)))),
            f"mean_log_density_{name}": float(np.mean(np.log(np.maximum(density, 1e-12)))),
        }

