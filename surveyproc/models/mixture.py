"""Two density baselines of the CLAP paper beside the softmax over bins: a Gaussian-mixture
head, and a deep ensemble of softmax networks.

Both read the same trunks as :class:`~.density.BinnedDensity` (a ResNet-18 on the cutouts,
or the photometry MLP) and give each galaxy a PDF on the model's grid, so the catalog, the
statistics and the report judge them exactly as they judge the softmax and CLAP.

- :class:`GaussianMixtureDensity`: ``components`` Gaussians in the *standardised* target
  (``(y - mean) / std`` of the training split), trained by their negative log-likelihood.
  Its PDF on a grid is each bin's probability mass divided by the bin width (the
  difference of the mixture's CDF at the bin edges), so a component narrower than a bin
  keeps its mass; mass off the grid is left out and the rest renormalised, as a softmax
  over the grid's bins implies.
- :class:`DensityEnsemble`: ``members`` softmax networks from different random starts,
  each trained by its own cross-entropy on the same batches (Lakshminarayanan et al. 2017
  also shuffle each member's data; their ensembles' spread comes mainly from the starts),
  combined by the arithmetic mean of their PDFs.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import cast

import torch
from torch import nn

from .density import BinnedDensity
from .grid import Grid
from .resnet import ResNet18

__all__ = ["DensityEnsemble", "EnsembleOutput", "GaussianMixtureDensity", "MixtureOutput",
           "mixture_bin_pdf", "mixture_nll"]

#: Smallest component width, in training standard deviations of the target (keeps the
#: likelihood bounded where several training galaxies share one value).
MIN_SIGMA = 1e-3


@dataclass
class MixtureOutput:
    """Per galaxy: components' log-weights, means and widths, in the standardised target."""

    log_weights: torch.Tensor  # (n, K), log-softmax
    means: torch.Tensor  # (n, K)
    sigmas: torch.Tensor  # (n, K), > 0
    features: torch.Tensor


class GaussianMixtureDensity(nn.Module):
    """A ``components``-Gaussian mixture of the standardised target per galaxy.

    Examples
    --------
    >>> model = GaussianMixtureDensity(in_bands=4, components=3, width=8)
    >>> out = model(torch.randn(2, 4, 16, 16))
    >>> out.means.shape, bool(torch.allclose(out.log_weights.exp().sum(1), torch.ones(2)))
    (torch.Size([2, 3]), True)
    """

    def __init__(self, in_bands: int, components: int = 5, width: int = 64,
                 trunk: nn.Module | None = None) -> None:
        super().__init__()
        self.components = components
        self.backbone = trunk if trunk is not None else ResNet18(in_bands, width)
        self.head = nn.Linear(cast(int, self.backbone.out_features), 3 * components)

    def forward(self, x: torch.Tensor) -> MixtureOutput:
        feats = torch.relu(self.backbone(x))
        logits, means, raw_sigma = self.head(feats).float().chunk(3, dim=1)
        sigmas = nn.functional.softplus(raw_sigma) + MIN_SIGMA
        return MixtureOutput(torch.log_softmax(logits, dim=1), means, sigmas, feats)


def mixture_nll(out: MixtureOutput, z: torch.Tensor) -> torch.Tensor:
    """Mean negative log-likelihood of standardised truths ``z`` (n,) under the mixtures.

    >>> out = MixtureOutput(torch.zeros(1, 1), torch.zeros(1, 1), torch.ones(1, 1), None)
    >>> round(float(mixture_nll(out, torch.zeros(1))), 4)  # log sqrt(2 pi)
    0.9189
    """
    z = z[:, None]
    log_normal = (-0.5 * ((z - out.means) / out.sigmas) ** 2 - torch.log(out.sigmas)
                  - 0.5 * math.log(2 * math.pi))
    return -torch.logsumexp(out.log_weights + log_normal, dim=1).mean()


def mixture_bin_pdf(out: MixtureOutput, grid: Grid, mean: float, std: float) -> torch.Tensor:
    """(n, bins) densities on ``grid`` (target units) of mixtures in the standardised target
    (``mean``, ``std``: the training split's): each bin's mass over its width, renormalised
    to the grid.

    >>> out = MixtureOutput(torch.zeros(1, 1), torch.zeros(1, 1), torch.full((1, 1), 0.1), None)
    >>> pdf = mixture_bin_pdf(out, Grid(low=-1.0, high=1.0, n_bins=4), 0.0, 1.0)
    >>> [round(float(v), 4) for v in pdf[0] * 0.5]  # half the mass either side of 0
    [0.0, 0.5, 0.5, 0.0]
    """
    edges = torch.linspace(grid.low, grid.high, grid.n_bins + 1, dtype=torch.float64,
                           device=out.means.device)
    z = ((edges - mean) / std)[None, None, :]  # (1, 1, bins + 1)
    mu, sigma = out.means.double()[..., None], out.sigmas.double()[..., None]
    cdf = 0.5 * (1 + torch.erf((z - mu) / (sigma * math.sqrt(2))))  # (n, K, bins + 1)
    mass = (out.log_weights.double().exp()[..., None] * (cdf[..., 1:] - cdf[..., :-1])).sum(1)
    mass = mass / mass.sum(dim=1, keepdim=True).clamp(min=1e-300)
    return (mass / grid.width).float()


@dataclass
class EnsembleOutput:
    """Per member, per galaxy: logits over the grid's bins."""

    logits: torch.Tensor  # (members, n, bins)


class DensityEnsemble(nn.Module):
    """``members`` :class:`BinnedDensity` networks from different random starts.

    >>> torch.manual_seed(0) is not None
    True
    >>> model = DensityEnsemble(2, 4, Grid(low=0.0, high=1.0, n_bins=10), width=8)
    >>> model(torch.randn(3, 4, 16, 16)).logits.shape
    torch.Size([2, 3, 10])
    >>> torch.allclose(model.pdf(torch.randn(3, 4, 16, 16)).sum(1) * 0.1, torch.ones(3))
    True
    """

    def __init__(self, members: int, in_bands: int, grid: Grid, width: int = 64,
                 trunks: list[nn.Module] | None = None) -> None:
        super().__init__()
        self.grid = grid
        self.members = nn.ModuleList(
            BinnedDensity(in_bands, grid, width, trunks[i] if trunks else None)
            for i in range(members))

    def forward(self, x: torch.Tensor) -> EnsembleOutput:
        return EnsembleOutput(torch.stack([m(x).logits for m in self.members]))

    def pdf(self, x: torch.Tensor) -> torch.Tensor:
        """The members' mean density at the bin centres (integrates to 1 on the grid)."""
        logits = self.forward(x).logits.float()
        return torch.softmax(logits, dim=2).mean(0) / self.grid.width
