"""Augmentation: the 8 flips and 90-degree rotations of the square (a galaxy has no up)."""

from __future__ import annotations

import torch

__all__ = ["dihedral"]


def dihedral(x: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
    """Apply one of the 8 dihedral transforms, drawn per cutout, to a (batch, bands, h, w) batch.

    Examples
    --------
    >>> x = torch.arange(4.0).view(1, 1, 2, 2).repeat(64, 1, 1, 1)
    >>> out = dihedral(x, torch.Generator().manual_seed(0))
    >>> len({tuple(o.flatten().tolist()) for o in out})  # all 8 orientations appear
    8
    >>> torch.equal(out.flatten(1).sort(1).values, x.flatten(1).sort(1).values)  # pixels moved
    True
    """
    choice = torch.randint(0, 8, (x.shape[0],), generator=generator)
    out = torch.empty_like(x)
    for code in range(8):
        rows = choice == code
        if rows.any():
            part = torch.rot90(x[rows], code % 4, dims=(2, 3))
            out[rows] = torch.flip(part, dims=(3,)) if code >= 4 else part
    return out
