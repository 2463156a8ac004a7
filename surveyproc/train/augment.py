"""Augmentation: the 8 flips and 90-degree rotations of the square (a galaxy has no up)."""

from __future__ import annotations

import torch

__all__ = ["dihedral", "dihedral_pair"]


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
    return _transform(x, torch.randint(0, 8, (x.shape[0],), generator=generator))


def dihedral_pair(x: torch.Tensor, y: torch.Tensor, generator: torch.Generator
                  ) -> tuple[torch.Tensor, torch.Tensor]:
    """The same dihedral transform on each input cutout and its target cutout (an image
    translator's pair: both sides must turn together); ``x`` draws as :func:`dihedral`.

    Examples
    --------
    >>> x = torch.arange(4.0).view(1, 1, 2, 2).repeat(16, 1, 1, 1)
    >>> a, b = dihedral_pair(x, 10 * x, torch.Generator().manual_seed(0))
    >>> torch.equal(b, 10 * a), torch.equal(a, dihedral(x, torch.Generator().manual_seed(0)))
    (True, True)
    """
    choice = torch.randint(0, 8, (x.shape[0],), generator=generator)
    return _transform(x, choice), _transform(y, choice)


def _transform(x: torch.Tensor, choice: torch.Tensor) -> torch.Tensor:
    """Transform ``choice[i]`` (0-3: rotations, 4-7: the same then a flip) of cutout i."""
    out = torch.empty_like(x)
    for code in range(8):
        rows = choice == code
        if rows.any():
            part = torch.rot90(x[rows], code % 4, dims=(2, 3))
            out[rows] = torch.flip(part, dims=(3,)) if code >= 4 else part
    return out
