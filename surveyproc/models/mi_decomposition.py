"""Three density estimators of binned targets: from input 1, from input 2, from both.

The information decomposition (:mod:`surveyproc.models.information`) compares
what three estimators know about each target: one sees input 1, one input 2,
one both.  An input is a group of the cutout's bands, seen either as **images**
(a ResNet-18 on those bands) or as **photometry**: each band's integrated flux
in a circular aperture of the cutout (radius a quarter of its side), the way a
catalog's aperture magnitudes are measured from the same imaging, passed as
asinh magnitudes and adjacent colours to an MLP.  The joint estimator has one
encoder per kind of input over the union of both inputs' bands (so pixels of
two band groups meet in one convolution, where resolved colours live) and one
head.  The estimators share nothing, so summing their losses trains each as if
alone.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import torch
from torch import nn

from .resnet import ResNet18

__all__ = ["APERTURE_FRACTION", "EncoderInput", "InformationEstimators", "InformationOutput",
           "aperture_photometry"]

#: Radius of the photometry aperture as a fraction of the cutout side.
APERTURE_FRACTION = 0.25


@dataclass(frozen=True)
class EncoderInput:
    """The bands (indices into the cutout) an estimator sees as images and as photometry."""

    images: tuple[int, ...] = ()
    photometry: tuple[int, ...] = ()

    def union(self, other: EncoderInput) -> EncoderInput:
        return EncoderInput(tuple(sorted({*self.images, *other.images})),
                            tuple(sorted({*self.photometry, *other.photometry})))


def aperture_photometry(x: torch.Tensor, bands: Sequence[int]) -> torch.Tensor:
    """(batch, len(bands)) asinh of the aperture flux over its noise, from normalised
    pixels ``x`` (asinh of pixel / sky noise, :class:`~surveyproc.models.preprocess.
    Normalization`): sinh undoes the stretch, so each band's sum is its flux in units of
    the per-pixel noise; dividing by sqrt(pixels) makes it a signal-to-noise ratio, and
    asinh of that behaves like a magnitude for bright galaxies and stays finite for faint
    ones.

    >>> x = torch.asinh(torch.full((1, 2, 8, 8), 2.0))
    >>> aperture_photometry(x, [1]).shape
    torch.Size([1, 1])
    """
    height, width = x.shape[-2:]
    yy, xx = np.mgrid[:height, :width]
    radius = APERTURE_FRACTION * min(height, width)
    mask = ((yy - (height - 1) / 2) ** 2 + (xx - (width - 1) / 2) ** 2) <= radius ** 2
    inside = torch.from_numpy(mask).to(x.device)
    flux = torch.sinh(x[:, list(bands)].float())[..., inside].sum(dim=-1)
    return torch.asinh(flux / float(np.sqrt(mask.sum())))


class _Photometry(nn.Module):
    """Aperture photometry of some bands (and their adjacent colours) -> an MLP."""

    def __init__(self, bands: Sequence[int], hidden: int) -> None:
        super().__init__()
        self.bands = tuple(bands)
        n = len(self.bands) + max(len(self.bands) - 1, 0)
        self.net = nn.Sequential(nn.BatchNorm1d(n), nn.Linear(n, hidden), nn.ReLU(),
                                 nn.Linear(hidden, hidden), nn.ReLU())
        self.out_features: int = hidden

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        mags = aperture_photometry(x, self.bands)
        return self.net(torch.cat([mags, mags[:, 1:] - mags[:, :-1]], dim=1))


class _Images(nn.Module):
    """A ResNet-18 on some bands of the cutout."""

    def __init__(self, bands: Sequence[int], width: int) -> None:
        super().__init__()
        self.bands = tuple(bands)
        self.net = ResNet18(len(self.bands), width)
        self.out_features: int = self.net.out_features

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.relu(self.net(x[:, list(self.bands)]))


class _Estimator(nn.Module):
    """Logits over each target's bins from one input (images and/or photometry), through a
    low-dimensional latent: what this input says about the targets, in a space where
    nearest neighbours are galaxies the input cannot tell apart (the local tests of
    :mod:`surveyproc.stats.local_tests` search it)."""

    def __init__(self, spec: EncoderInput, n_targets: int, n_bins: int, width: int,
                 hidden: int, latent_dims: int) -> None:
        super().__init__()
        encoders: list[_Images | _Photometry] = []
        if spec.images:
            encoders.append(_Images(spec.images, width))
        if spec.photometry:
            encoders.append(_Photometry(spec.photometry, hidden))
        self.encoders = nn.ModuleList(encoders)
        features = sum(e.out_features for e in encoders)
        self.latent = nn.Linear(features, latent_dims)
        self.head = nn.Sequential(nn.ReLU(), nn.Linear(latent_dims, hidden), nn.ReLU(),
                                  nn.Linear(hidden, n_targets * n_bins))
        self.shape = (n_targets, n_bins)

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """(logits (batch, targets, bins), latent (batch, latent_dims))."""
        latent = self.latent(torch.cat([encoder(x) for encoder in self.encoders], dim=1))
        return self.head(latent).view(len(x), *self.shape), latent


@dataclass
class InformationOutput:
    """(3, batch, targets, bins) logits and (3, batch, latent_dims) latents of the
    estimators on input 1, input 2 and both."""

    logits: torch.Tensor
    latents: torch.Tensor


class InformationEstimators(nn.Module):
    """The three estimators, and each target's binned prior (set after training).

    Examples
    --------
    >>> net = InformationEstimators(EncoderInput(images=(0,)), EncoderInput(photometry=(1,)),
    ...                             n_targets=2, n_bins=10, width=4, hidden=8)
    >>> out = net(torch.zeros(3, 2, 16, 16))
    >>> out.logits.shape, out.latents.shape
    (torch.Size([3, 3, 2, 10]), torch.Size([3, 3, 16]))
    """

    prior: torch.Tensor

    def __init__(self, input_1: EncoderInput, input_2: EncoderInput, n_targets: int,
                 n_bins: int, width: int = 64, hidden: int = 128, latent_dims: int = 16
                 ) -> None:
        super().__init__()
        self.estimators = nn.ModuleList(
            _Estimator(spec, n_targets, n_bins, width, hidden, latent_dims)
            for spec in (input_1, input_2, input_1.union(input_2)))
        # Each target's bin probabilities over the training split (a uniform placeholder
        # until :meth:`set_prior`); saved with the weights.
        self.register_buffer("prior", torch.full((n_targets, n_bins), 1.0 / n_bins))

    def forward(self, x: torch.Tensor) -> InformationOutput:
        logits, latents = zip(*(estimator(x) for estimator in self.estimators), strict=True)
        return InformationOutput(torch.stack(logits), torch.stack(latents))

    def set_prior(self, counts: np.ndarray) -> None:
        """The binned prior from (targets, bins) training counts, with half a count added to
        every bin so that no bin has zero probability."""
        smoothed = np.asarray(counts, dtype=np.float64) + 0.5
        prior = smoothed / smoothed.sum(axis=1, keepdims=True)
        self.prior.copy_(torch.from_numpy(prior).to(self.prior))
