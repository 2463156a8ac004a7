"""Binned-density model: ResNet-18 features -> softmax over a grid of the target.

The plain photo-z estimator of the CLAP paper's baselines (and the estimator the
information-decomposition work trains): a classifier over bins whose softmax is
read as a probability density.  Trained with cross-entropy it is typically
over-confident; the calibrated version is a later model.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

from .resnet import ResNet18

__all__ = ["BinnedDensity", "DensityOutput", "Grid"]


@dataclass(frozen=True)
class Grid:
    """``n_bins`` equal bins on ``[low, high)``; PDFs are densities at the bin centres."""

    low: float
    high: float
    n_bins: int

    def __post_init__(self) -> None:
        if not self.high > self.low or self.n_bins < 2:
            msg = f"grid needs high > low and at least 2 bins, got {self}"
            raise ValueError(msg)

    @property
    def width(self) -> float:
        return (self.high - self.low) / self.n_bins

    def centres(self) -> torch.Tensor:
        return self.low + self.width * (torch.arange(self.n_bins, dtype=torch.float64) + 0.5)

    def bin_of(self, values: torch.Tensor) -> torch.Tensor:
        """Bin index of each value, clamped into the grid."""
        index = torch.floor((values - self.low) / self.width).long()
        return index.clamp(0, self.n_bins - 1)


@dataclass
class DensityOutput:
    """Per-galaxy ``logits`` over the bins and the pooled ``features``."""

    logits: torch.Tensor
    features: torch.Tensor


class BinnedDensity(nn.Module):
    """A PDF over ``grid`` per galaxy.

    Examples
    --------
    >>> model = BinnedDensity(in_bands=4, grid=Grid(0.0, 0.4, 180))
    >>> pdf = model.pdf(torch.randn(3, 4, 32, 32))
    >>> pdf.shape, bool((pdf >= 0).all())
    (torch.Size([3, 180]), True)
    >>> torch.allclose((pdf * model.grid.width).sum(1), torch.ones(3, dtype=pdf.dtype))
    True
    """

    def __init__(self, in_bands: int, grid: Grid, width: int = 64) -> None:
        super().__init__()
        self.grid = grid
        self.backbone = ResNet18(in_bands, width)
        self.head = nn.Linear(self.backbone.out_features, grid.n_bins)

    def forward(self, x: torch.Tensor) -> DensityOutput:
        feats = torch.relu(self.backbone(x))
        return DensityOutput(self.head(feats), feats)

    def pdf(self, x: torch.Tensor) -> torch.Tensor:
        """Probability density at the bin centres: non-negative, integrates to 1 on the grid."""
        return torch.softmax(self.forward(x).logits, dim=1) / self.grid.width
