"""CLAP's networks (Lin et al., "CLAP I"): an ensemble of realisations, each a contrastive
encoder with a low-dimensional redshift latent, a decoder, an estimator head and a refit
head; and the harmonic-mean combination of their densities.

Each realisation (:class:`ClapMember`) encodes the input (a ResNet-18 or the photometry
MLP: :func:`~.inputs.build_trunk`) into a ``latent_dims`` redshift latent plus
``extra_dims`` more; the decoder reconstructs a summary of the input from both, the
estimator head reads a softmax over the grid from the redshift latent during contrastive
training, and the refit head learns the adaptive-KNN densities afterwards
(:mod:`surveyproc.kinds.clap` runs the stages).  Survey-scale inference then needs no
neighbour search: :meth:`ClapNet.forward` returns the harmonic mean of the members'
refit densities, each smoothed by a Gaussian of ``smooth`` bins (the CLAP code's
default combination).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any, cast

import torch
from torch import nn

from .grid import Grid

__all__ = ["ClapMember", "ClapNet", "ClapOutput", "ClapTerms", "harmonic_mean",
           "smooth_densities"]

#: Side of the pooled image a member's decoder reconstructs (image inputs).
RECONSTRUCTED_SIDE = 8


def harmonic_mean(probabilities: torch.Tensor, floor: float = 1e-12) -> torch.Tensor:
    """Normalised harmonic mean over the first axis of (members, n, bins) bin
    probabilities: ``1 / mean(1 / p)`` per bin, then rescaled to sum to one per object.

    >>> p = torch.tensor([[[0.5, 0.5]], [[0.9, 0.1]]])
    >>> [round(v, 4) for v in harmonic_mean(p)[0].tolist()]
    [0.7941, 0.2059]
    """
    combined = 1.0 / (1.0 / probabilities.clamp(min=floor)).mean(dim=0)
    return combined / combined.sum(dim=-1, keepdim=True)


def smooth_densities(probabilities: torch.Tensor, sigma_bins: float) -> torch.Tensor:
    """(..., bins) probabilities convolved with a Gaussian of ``sigma_bins`` bins (mass
    pushed past the grid's ends is folded back in), renormalised; none for sigma 0."""
    if sigma_bins <= 0:
        return probabilities
    half = max(1, round(3 * sigma_bins))
    offsets = torch.arange(-half, half + 1, dtype=probabilities.dtype,
                           device=probabilities.device)
    kernel = torch.exp(-0.5 * (offsets / sigma_bins) ** 2)
    kernel = (kernel / kernel.sum()).view(1, 1, -1)
    shape = probabilities.shape
    flat = probabilities.reshape(-1, 1, shape[-1])
    padded = nn.functional.pad(flat, (half, half), mode="replicate")
    out = nn.functional.conv1d(padded, kernel).reshape(shape)
    return out / out.sum(dim=-1, keepdim=True)


@dataclass
class ClapOutput:
    """``logits``: log-probabilities per bin of the combined density (what the density
    task and the catalog read); ``features``: the first member's redshift latent."""

    logits: torch.Tensor
    features: torch.Tensor


@dataclass
class ClapTerms:
    """What stage 1's loss reads, per realisation: the full latent of each galaxy and of
    its second view, the estimator head's logits and the decoder's reconstruction."""

    latents: list[torch.Tensor]
    view_latents: list[torch.Tensor]
    estimator_logits: list[torch.Tensor]
    reconstructions: list[torch.Tensor]


def _head(width: int, out: int, hidden: int = 256) -> nn.Module:
    return nn.Sequential(nn.Linear(width, hidden), nn.ReLU(), nn.Linear(hidden, out))


class ClapMember(nn.Module):
    """One CLAP realisation: encoder, decoder, estimator and refit heads."""

    def __init__(self, trunk: nn.Module, bins: int, latent_dims: int, extra_dims: int,
                 reconstructed: int) -> None:
        super().__init__()
        self.trunk = trunk
        self.latent_dims = latent_dims
        self.to_latent = nn.Linear(cast(int, trunk.out_features), latent_dims + extra_dims)
        self.decoder = _head(latent_dims + extra_dims, reconstructed)
        self.estimator = _head(latent_dims, bins)
        self.refit = _head(latent_dims, bins)

    def encode(self, x: torch.Tensor) -> torch.Tensor:
        """(n, latent_dims + extra_dims): the redshift latent first."""
        return self.to_latent(torch.relu(self.trunk(x)))

    def redshift_latent(self, x: torch.Tensor) -> torch.Tensor:
        return self.encode(x)[:, :self.latent_dims]


def reconstruction_target(x: torch.Tensor) -> torch.Tensor:
    """What the decoder reconstructs: photometric features as they are, cutouts pooled to
    :data:`RECONSTRUCTED_SIDE` pixels a side (the decoder stays small)."""
    if x.dim() == 4:
        return nn.functional.adaptive_avg_pool2d(x, RECONSTRUCTED_SIDE).flatten(1)
    return x


class ClapNet(nn.Module):
    """``members`` CLAP realisations over one grid; ``refitted`` (a buffer) says whether the
    refit heads were trained (until then the estimator heads give the densities).

    Examples
    --------
    >>> from surveyproc.models.inputs import PhotometryMLP
    >>> net = ClapNet(lambda: PhotometryMLP(9, 32), Grid(low=0, high=0.4, n_bins=40),
    ...               members=3, latent_dims=4, extra_dims=4, reconstructed=9)
    >>> out = net(torch.zeros(5, 9))
    >>> assert isinstance(out, ClapOutput)
    >>> out.logits.shape, round(float(out.logits.detach().exp().sum(1)[0]), 4)
    (torch.Size([5, 40]), 1.0)
    """

    def __init__(self, trunk: Callable[[], nn.Module], grid: Grid, *, members: int = 1,
                 latent_dims: int = 16, extra_dims: int = 64, reconstructed: int = 1,
                 smooth: float = 1.0) -> None:
        super().__init__()
        self.grid = grid
        self.smooth = smooth
        self.members = nn.ModuleList(
            ClapMember(trunk(), grid.n_bins, latent_dims, extra_dims, reconstructed)
            for _ in range(members))
        self.register_buffer("refitted", torch.tensor(False))
        #: what the KNN and refit stages found (training only; the checkpoint's readouts)
        self.knn_summary: dict[str, Any] | None = None

    @property
    def realisations(self) -> list[ClapMember]:
        return [cast(ClapMember, m) for m in self.members]

    def _densities(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """(members, n, bins) smoothed bin probabilities of each member (refit heads once
        trained) and the first member's redshift latent, each latent computed once."""
        out, first = [], None
        for member in self.realisations:
            latent = member.redshift_latent(x)
            first = latent if first is None else first
            head = member.refit if bool(self.refitted) else member.estimator
            out.append(torch.softmax(head(latent).float(), dim=-1))
        assert first is not None
        return smooth_densities(torch.stack(out), self.smooth), first

    def member_probabilities(self, x: torch.Tensor) -> torch.Tensor:
        """(members, n, bins) bin probabilities of each member (refit heads once trained),
        smoothed."""
        return self._densities(x)[0]

    def forward(self, x: torch.Tensor, view: torch.Tensor | None = None
                ) -> ClapOutput | ClapTerms:
        """The combined density; with ``view`` (a second view of the same galaxies) the
        training terms instead, so that stage 1's loss goes through the module's own
        forward (data-parallel training synchronises gradients there)."""
        if view is not None:
            return self._training_terms(x, view)
        probabilities, features = self._densities(x)
        combined = harmonic_mean(probabilities)
        return ClapOutput(torch.log(combined.clamp(min=1e-30)), features)

    def _training_terms(self, x: torch.Tensor, view: torch.Tensor) -> ClapTerms:
        terms = ClapTerms([], [], [], [])
        for member in self.realisations:
            latent = member.encode(x)
            terms.latents.append(latent)
            terms.view_latents.append(member.encode(view))
            terms.estimator_logits.append(member.estimator(latent[:, :member.latent_dims]))
            terms.reconstructions.append(member.decoder(latent))
        return terms


def clap_network(config: Mapping[str, Any], trunk: Callable[[], nn.Module],
                 reconstructed: int) -> ClapNet:
    """The network a CLAP config describes."""
    return ClapNet(trunk, Grid(**config["grid"]), members=int(config["members"]),
                   latent_dims=int(config["latent_dims"]), extra_dims=int(config["extra_dims"]),
                   reconstructed=reconstructed, smooth=float(config["smooth"]))
