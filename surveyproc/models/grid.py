"""The one PDF-grid type: equal bins of a target, used by job files, networks, catalog and stats.

A validated, frozen pydantic model, so the same object is a job-file setting
(``grid: {low: 0, high: 0.4, n_bins: 180}``), the argument of a density
network, the grid recorded in a catalog's metadata and the grid the
calibration statistics integrate over.
"""

from __future__ import annotations

import numpy as np
import torch
from pydantic import BaseModel, ConfigDict, Field, model_validator

__all__ = ["Grid"]


class Grid(BaseModel):
    """``n_bins`` equal bins on ``[low, high)``; PDFs are densities at the bin centres.

    Examples
    --------
    >>> grid = Grid(low=0.0, high=0.4, n_bins=4)
    >>> grid.width, grid.edges().tolist()
    (0.1, [0.0, 0.1, 0.2, 0.30000000000000004, 0.4])
    """

    model_config = ConfigDict(extra="forbid", frozen=True)

    low: float = Field(description="Lower edge of the grid.")
    high: float = Field(description="Upper edge of the grid.")
    n_bins: int = Field(ge=2, description="Number of equal bins.")

    @model_validator(mode="after")
    def _ordered(self) -> Grid:
        if not self.high > self.low:
            msg = f"grid high ({self.high}) must be above low ({self.low})"
            raise ValueError(msg)
        return self

    @property
    def width(self) -> float:
        return (self.high - self.low) / self.n_bins

    def edges(self) -> np.ndarray:
        """The ``n_bins + 1`` bin edges."""
        return np.linspace(self.low, self.high, self.n_bins + 1)

    def centres_array(self) -> np.ndarray:
        """Bin centres as a float64 NumPy array."""
        return self.low + self.width * (np.arange(self.n_bins, dtype=np.float64) + 0.5)

    def centres(self) -> torch.Tensor:
        return torch.from_numpy(self.centres_array())

    def bin_of(self, values: torch.Tensor) -> torch.Tensor:
        """Bin index of each value, clamped into the grid."""
        index = torch.floor((values - self.low) / self.width).long()
        return index.clamp(0, self.n_bins - 1)
