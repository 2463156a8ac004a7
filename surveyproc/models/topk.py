"""The top-k layer of SFNet: keep the k largest activations of each row, zero the rest."""

from __future__ import annotations

import torch
from torch import nn

__all__ = ["TopK"]


class TopK(nn.Module):
    """Keep the ``k`` largest entries per row; the others become exactly zero.

    The gradient reaches only the kept entries (the zeroed ones are multiplied
    by a constant mask), so each feature learns only from the galaxies it is
    active on.  Returns the sparse dense tensor, the kept indices and values.

    Examples
    --------
    >>> layer = TopK(2)
    >>> dense, idx, val = layer(torch.tensor([[0.1, 3.0, 2.0, 0.5]]))
    >>> dense.tolist(), idx.tolist(), val.tolist()
    ([[0.0, 3.0, 2.0, 0.0]], [[1, 2]], [[3.0, 2.0]])
    """

    def __init__(self, k: int) -> None:
        super().__init__()
        if k < 1:
            msg = f"top-k needs k >= 1, got {k}"
            raise ValueError(msg)
        self.k = k

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        values, indices = torch.topk(x, self.k, dim=1)
        mask = torch.zeros_like(x).scatter_(1, indices, 1.0)
        return x * mask, indices, values
