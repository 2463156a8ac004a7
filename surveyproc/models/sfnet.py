"""SFNet (Wu): ResNet-18 features -> ReLU -> top-k -> linear head; and its dense twin.

With k of the 512 pooled features non-zero per galaxy, every prediction is a
short linear "equation" in a handful of features, which is what makes the
network interpretable; the dense CNN is the same network without the top-k
layer, the baseline it is compared with.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

from .resnet import ResNet18
from .topk import TopK

__all__ = ["DenseCNN", "RegressionOutput", "SFNet"]


@dataclass
class RegressionOutput:
    """Predictions (batch, targets) in standardised units, plus the features behind them.

    ``features`` is the vector the head reads (sparse for SFNet); ``act_idx``
    and ``act_val`` are the top-k indices and values (None for dense models).
    """

    prediction: torch.Tensor
    features: torch.Tensor
    act_idx: torch.Tensor | None = None
    act_val: torch.Tensor | None = None


class DenseCNN(nn.Module):
    """ResNet-18 features -> ReLU -> linear head (the baseline of the SFNet paper)."""

    def __init__(self, in_bands: int, n_targets: int, width: int = 64) -> None:
        super().__init__()
        self.backbone = ResNet18(in_bands, width)
        self.head = nn.Linear(self.backbone.out_features, n_targets)

    def features(self, x: torch.Tensor) -> torch.Tensor:
        """Pooled, rectified features (batch, 8 * width): what PCA-k is fitted to."""
        return torch.relu(self.backbone(x))

    def forward(self, x: torch.Tensor) -> RegressionOutput:
        feats = self.features(x)
        return RegressionOutput(self.head(feats), feats)


class SFNet(DenseCNN):
    """Sparse feature network: only the ``k`` largest features of each galaxy reach the head.

    Examples
    --------
    >>> net = SFNet(in_bands=3, n_targets=4, k=2)
    >>> out = net(torch.randn(5, 3, 32, 32))
    >>> out.prediction.shape, out.act_idx.shape, int((out.features != 0).sum(1).max())
    (torch.Size([5, 4]), torch.Size([5, 2]), 2)
    """

    def __init__(self, in_bands: int, n_targets: int, k: int, width: int = 64) -> None:
        super().__init__(in_bands, n_targets, width)
        self.topk = TopK(k)

    def forward(self, x: torch.Tensor) -> RegressionOutput:
        sparse, idx, val = self.topk(self.features(x))
        return RegressionOutput(self.head(sparse), sparse, idx, val)
