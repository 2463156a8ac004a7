"""The VAE + flow network: densities that integrate to 1, reproducible draws, masked labels,
and a chain that learns a known correlated posterior."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from surveyproc.kinds.vae_flow import VAEFlowTask, posterior_correlations
from surveyproc.models import TargetInfo
from surveyproc.models.vae_flow import ConditionalChain, VAEFlow, _interp, quasi_normal


def _chain(n: int = 2, context: int = 3, seed: int = 0) -> ConditionalChain:
    torch.manual_seed(seed)
    chain = ConditionalChain(n, context, transforms=2, hidden=16)
    with torch.no_grad():  # a non-trivial, non-Gaussian density
        for parameter in chain.parameters():
            parameter.add_(0.3 * torch.randn_like(parameter))
    return chain.eval()


def test_a_marginal_density_integrates_to_one_on_a_grid():
    chain = _chain()
    context = torch.randn(4, 3)
    points = torch.linspace(-30, 30, 6001)
    step = float(points[1] - points[0])
    with torch.no_grad():
        for i in range(2):
            density = chain.marginal_density(i, context, points)
            np.testing.assert_allclose(density.sum(dim=1).numpy() * step, 1.0, atol=2e-3)


def test_draws_are_reproducible_by_seed_and_independent_of_the_batch():
    chain = _chain()
    context = torch.randn(6, 3)
    with torch.no_grad():
        first = chain.sample(context, quasi_normal(32, 2, seed=7))
        again = chain.sample(context, quasi_normal(32, 2, seed=7))
        alone = chain.sample(context[2:3], quasi_normal(32, 2, seed=7))
        other = chain.sample(context, quasi_normal(32, 2, seed=8))
    assert torch.equal(first, again)
    torch.testing.assert_close(alone[:, 0], first[:, 2])
    assert not torch.allclose(first, other)


def test_unknown_labels_are_masked_not_dropped():
    chain = _chain()
    context = torch.randn(3, 3)
    nan = float("nan")
    y = torch.tensor([[0.5, -0.2], [nan, -0.2], [0.5, nan]])
    with torch.no_grad():
        log_p = chain.log_prob(y, context)
        # a galaxy without the first label still scores its second, conditioned on
        # "first unknown" (value 0, flag 0)
        second_alone = chain.flows[1](torch.cat([context[1:2], torch.zeros(1, 2)], 1)) \
            .log_prob(torch.tensor([[-0.2]]))
        first_alone = chain.flows[0](context[2:3]).log_prob(torch.tensor([[0.5]]))
    assert log_p[1, 0] == 0 and log_p[2, 1] == 0
    torch.testing.assert_close(log_p[1, 1:2], second_alone)
    torch.testing.assert_close(log_p[2, 0:1], first_alone)
    assert torch.isfinite(log_p).all()

    # the training loss is finite and every galaxy's known labels reach the gradient
    net = VAEFlow(2, [[0, 1]], latent=3, width=4, transforms=1, hidden=8)
    task = VAEFlowTask([TargetInfo("a", "", 0.0, 1.0), TargetInfo("b", "", 0.0, 1.0)])
    loss = task.loss(net, torch.randn(3, 2, 16, 16), y)
    loss.backward()
    assert torch.isfinite(loss)
    assert net.flows[0].flows[1].transform.transforms[0].hyper[0].weight.grad.abs().sum() > 0


@pytest.mark.slow
def test_the_chain_learns_a_known_correlated_posterior():
    """y1 = c + N(0, 0.5^2), y2 = y1 + N(0, 0.5^2): given c the posterior is Gaussian with
    std 0.5 and 0.71 and correlation 1/sqrt(2); the trained chain's joint draws must match,
    and so must its marginals (learned by hiding y1 from y2's conditional half the time)."""
    torch.manual_seed(0)
    chain = ConditionalChain(2, 1, transforms=2, hidden=32)
    optimizer = torch.optim.Adam(chain.parameters(), lr=5e-3)
    schedule = torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, 800)
    for _ in range(800):
        c = torch.randn(512, 1)
        y1 = c + 0.5 * torch.randn(512, 1)
        y = torch.cat([y1, y1 + 0.5 * torch.randn(512, 1)], 1)
        loss = -chain.log_prob(y, c, hide_rate=0.5).mean()
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        schedule.step()
    c = torch.tensor([[-1.0], [0.0], [1.5]])
    with torch.no_grad():
        base = quasi_normal(4096, 2, seed=0)
        draws = chain.sample(c, base)
        marginals = chain.sample_marginals(c, base)
    for sample in (draws, marginals):
        np.testing.assert_allclose(sample.mean(0).numpy(), c.expand(3, 2).numpy(), atol=0.1)
        np.testing.assert_allclose(sample.std(0).numpy(), [[0.5, 0.5 ** 0.5]] * 3, rtol=0.12)
    np.testing.assert_allclose(posterior_correlations(draws)[:, 0].numpy(), 0.5 ** 0.5,
                               atol=0.08)
    # the catalog's marginal PDF is the density of the marginal draws
    points = torch.linspace(-4, 4, 161)
    density = chain.marginal_density(1, c, points).detach()
    assert torch.argmax(density, dim=1).tolist() == pytest.approx(
        [80 + 20 * v for v in (-1.0, 0.0, 1.5)], abs=3)


@pytest.mark.parametrize("rho", [-0.6, 0.0, 0.9])
def test_posterior_correlations_match_numpy(rho):
    rng = np.random.default_rng(1)
    cov = [[1.0, rho, 0.2 * rho], [rho, 1.0, 0.0], [0.2 * rho, 0.0, 1.0]]
    draws = rng.multivariate_normal([0, 0, 0], cov, size=(500, 2))
    ours = posterior_correlations(torch.from_numpy(draws)).numpy()
    for b in range(2):
        expected = np.corrcoef(draws[:, b].T)[np.triu_indices(3, k=1)]
        np.testing.assert_allclose(ours[b], expected, atol=1e-10)


def test_recalibration_makes_pits_uniform_and_the_draws_follow_the_recalibrated_pdf():
    torch.manual_seed(0)
    net = VAEFlow(2, [[0]], latent=3, width=4, transforms=1, hidden=8).eval()
    pit = torch.distributions.Beta(3.0, 2.0).sample((5000,))  # a miscalibrated marginal
    net.fit_recalibration([pit])
    assert "recalibration" in net.state_dict()  # saved with the checkpoint's weights
    calibrated = torch.sort(_interp(pit, net.knots, net.recalibration[0])).values
    uniform = (torch.arange(len(pit)) + 0.5) / len(pit)
    assert float((calibrated - uniform).abs().max()) < 0.03
    assert bool((net.recalibration[0].diff() > 0).all())

    mu = torch.randn(4, 3)
    edges = torch.linspace(-10, 10, 2001)
    pdf = net.marginal_pdf(0, mu, edges)
    cdf = torch.cat([torch.zeros(4, 1), torch.cumsum(pdf * edges.diff(), dim=1)], dim=1)
    np.testing.assert_allclose(cdf[:, -1].numpy(), 1.0, atol=1e-3)
    draws = net.sample_marginals(mu, quasi_normal(4096, 1, seed=2))[..., 0]  # (4096, 4)
    below = (draws[:, :, None] <= edges[None, None, ::100]).double().mean(dim=0)
    np.testing.assert_allclose(below.numpy(), cdf[:, ::100].numpy(), atol=0.01)
