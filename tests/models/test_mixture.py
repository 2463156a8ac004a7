"""The Gaussian-mixture head and the deep ensemble: the densities they write on a grid."""

from __future__ import annotations

import numpy as np
import torch
from scipy import stats

from surveyproc.kinds.deep_ensemble import ensemble_pdf
from surveyproc.models.grid import Grid
from surveyproc.models.inputs import PhotometryMLP
from surveyproc.models.mixture import (
    DensityEnsemble,
    GaussianMixtureDensity,
    MixtureOutput,
    mixture_bin_pdf,
    mixture_nll,
)


def test_grid_pdf_is_each_bins_mixture_mass_over_its_width():
    out = MixtureOutput(torch.log(torch.tensor([[0.3, 0.7]])), torch.tensor([[-0.5, 1.0]]),
                        torch.tensor([[0.2, 0.05]]), torch.zeros(1, 1))
    grid = Grid(low=0.0, high=0.5, n_bins=25)
    mean, std = 0.2, 0.1  # target = 0.2 + 0.1 z
    pdf = mixture_bin_pdf(out, grid, mean, std)[0].numpy()
    edges = np.linspace(0.0, 0.5, 26)
    cdf = sum(w * stats.norm.cdf(edges, mean + std * m, std * s)
              for w, m, s in ((0.3, -0.5, 0.2), (0.7, 1.0, 0.05)))
    mass = np.diff(cdf)
    np.testing.assert_allclose(pdf, mass / mass.sum() / grid.width, rtol=1e-4, atol=1e-6)


def test_mixture_head_learns_a_two_peaked_distribution():
    """Galaxies that look alike but sit at two redshifts: the head gives both peaks."""
    torch.manual_seed(0)
    rng = np.random.default_rng(0)
    n = 4000
    z = np.where(rng.random(n) < 0.3, rng.normal(-1.0, 0.15, n), rng.normal(1.0, 0.3, n))
    x = torch.zeros(n, 3)
    model = GaussianMixtureDensity(3, components=3, trunk=PhotometryMLP(3, hidden=16))
    optimiser = torch.optim.Adam(model.parameters(), lr=0.02)
    target = torch.from_numpy(z).float()
    for _ in range(400):
        optimiser.zero_grad()
        loss = mixture_nll(model(x[:512]), target[rng.integers(0, n, 512)])
        loss.backward()
        optimiser.step()
    grid = Grid(low=-2.5, high=2.5, n_bins=50)
    with torch.no_grad():
        pdf = mixture_bin_pdf(model(x[:1]), grid, 0.0, 1.0)[0].numpy()
    centres = grid.centres().numpy()
    truth = 0.3 * stats.norm.pdf(centres, -1.0, 0.15) + 0.7 * stats.norm.pdf(centres, 1.0, 0.3)
    assert np.abs(pdf - truth).sum() * grid.width < 0.1  # total variation x 2
    assert pdf[np.abs(centres) < 0.3].max() < 0.2 * truth.max()  # no mass in the gap


def test_ensemble_pdf_is_the_mean_of_its_members_and_members_differ():
    torch.manual_seed(1)
    grid = Grid(low=0.0, high=1.0, n_bins=10)
    model = DensityEnsemble(3, 2, grid, trunks=[PhotometryMLP(2, hidden=8) for _ in range(3)])
    x = torch.randn(5, 2)
    with torch.no_grad():
        each = [torch.softmax(m(x).logits, 1) / grid.width for m in model.members]
        pdf = ensemble_pdf(model(x).logits, grid)
    torch.testing.assert_close(pdf, torch.stack(each).mean(0))
    torch.testing.assert_close(model.pdf(x), pdf)
    assert not torch.allclose(each[0], each[1])  # different random starts
