"""Binned-density model: ResNet-18 features -> softmax over a grid of the target.

The plain photo-z estimator of the CLAP paper's baselines (and the estimator the
information-decomposition work trains): a classifier over bins whose softmax is
read as a probability density.  Trained with cross-entropy it is typically
over-confident; the calibrated version is a later model.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import cast

import torch
from torch import nn

from .grid import Grid
from .resnet import ResNet18

__all__ = ["BinnedDensity", "DensityOutput"]


@dataclass
class DensityOutput:
    """Per-galaxy ``logits`` over the bins and the pooled ``features``."""

    logits: torch.Tensor
    features: torch.Tensor


class BinnedDensity(nn.Module):
    """A PDF over ``grid`` per galaxy.

    Examples
    --------
    >>> model = BinnedDensity(in_bands=4, grid=Grid(low=0.0, high=0.4, n_bins=180))
    >>> pdf = model.pdf(torch.randn(3, 4, 32, 32))
    >>> pdf.shape, bool((pdf >= 0).all())
    (torch.Size([3, 180]), True)
    >>> torch.allclose((pdf * model.grid.width).sum(1), torch.ones(3, dtype=pdf.dtype))
    True
    """

    def __init__(self, in_bands: int, grid: Grid, width: int = 64,
                 trunk: nn.Module | None = None) -> None:
        super().__init__()
        self.grid = grid
        #: a ResNet-18 on the cutouts, or the given trunk (the photometry MLP)
        self.backbone = trunk if trunk is not None else ResNet18(in_bands, width)
        self.head = nn.Linear(cast(int, self.backbone.out_features), grid.n_bins)

    def forward(self, x: torch.Tensor) -> DensityOutput:
        feats = torch.relu(self.backbone(x))
        return DensityOutput(self.head(feats), feats)

    def pdf(self, x: torch.Tensor) -> torch.Tensor:
        """Probability density at the bin centres: non-negative, integrates to 1 on the grid."""
        return torch.softmax(self.forward(x).logits, dim=1) / self.grid.width
