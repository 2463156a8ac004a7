"""A VAE encoder with conditional normalizing flows on its latent (Siddiqa, Mahmud,
Martinez-Galarza: "From Images to Physics").

The encoder (our ResNet-18 trunk) maps a cutout to a Gaussian latent ``q(z|x)``;
a small decoder reconstructs the cutout at 16 x 16 from a latent sample (the
VAE term keeps the latent a summary of the whole image, not only of the
targets).  Conditional flows on the latent's mean give the joint posterior of
the targets: one flow for the physical parameters, a second one for the
emission-line fluxes, as in the paper.

Each flow is a chain of one-dimensional conditional neural-spline flows from
``zuko`` (``p(y) = p(y1|z) p(y2|y1,z) ...``, the factorisation of a masked
autoregressive flow), with one change that a single ``zuko.flows.NSF`` over all
targets cannot make: each conditional sees the earlier targets *and whether
they are known*.  Labels are often missing (black-hole masses for a few
galaxies, line fluxes below S/N 3), and with the chain a galaxy contributes
the log-density of exactly its known labels: masked, never dropped.  At
inference every earlier target is "known" (it is the sample drawn a step
before), so the chain samples the full joint posterior.  Training also hides, per
row and conditional, all earlier targets at random, so each conditional learns its
target's marginal as well: the catalog's per-target PDFs are those marginals.
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, cast

import torch
import zuko
from torch import nn

from .resnet import ResNet18

__all__ = ["MIN_RECALIBRATION", "RECALIBRATION_KNOTS", "RECONSTRUCTION_SIDE",
           "ConditionalChain", "VAEFlow", "VAEFlowOutput", "quasi_normal"]

#: The decoder reconstructs the cutout average-pooled to this many pixels a side.
RECONSTRUCTION_SIDE = 16
#: Knots of each target's recalibration map (probabilities 0, 0.05, .., 1).
RECALIBRATION_KNOTS = 21
#: Share of the identity mixed into a recalibration map, so that it stays invertible.
_IDENTITY_SHARE = 0.02
#: Fewest validation galaxies with a target for its recalibration to be fitted.
MIN_RECALIBRATION = 100


def _interp(x: torch.Tensor, xp: torch.Tensor, fp: torch.Tensor) -> torch.Tensor:
    """Piecewise-linear interpolation of increasing knots ``(xp, fp)`` at ``x`` (clamped)."""
    x = x.clamp(float(xp[0]), float(xp[-1]))
    right = torch.searchsorted(xp, x.contiguous()).clamp(1, len(xp) - 1)
    left = right - 1
    t = (x - xp[left]) / (xp[right] - xp[left])
    return fp[left] + t * (fp[right] - fp[left])


def quasi_normal(n_samples: int, n_dims: int, seed: int) -> torch.Tensor:
    """(n_samples, n_dims) standard-normal base draws from a scrambled Sobol sequence.

    The same draws serve every galaxy, so a galaxy's posterior depends only on
    its own pixels and the seed (not on its batch, actor or retry), and the
    quasi-random points halve the Monte-Carlo error of quantiles against
    independent draws.

    >>> a, b = quasi_normal(8, 2, seed=1), quasi_normal(8, 2, seed=1)
    >>> bool(torch.equal(a, b)), tuple(a.shape)
    (True, (8, 2))
    """
    engine = torch.quasirandom.SobolEngine(n_dims, scramble=True, seed=seed)
    uniform = engine.draw(n_samples, dtype=torch.float64).clamp(1e-6, 1 - 1e-6)
    return torch.special.ndtri(uniform).float()


class ConditionalChain(nn.Module):
    """Joint density of ``n`` standardised targets given a context, as a chain of 1-D
    conditional zuko NSFs whose contexts carry the earlier targets and their known flags."""

    def __init__(self, n: int, context: int, *, transforms: int = 3, hidden: int = 128,
                 bins: int = 8) -> None:
        super().__init__()
        self.n = n
        self.flows = nn.ModuleList(
            zuko.flows.NSF(1, context + 2 * i, bins=bins, transforms=transforms,
                           hidden_features=(hidden, hidden))
            for i in range(n))

    @staticmethod
    def _base_column(base: torch.Tensor, i: int, batch: int, dtype: torch.dtype) -> torch.Tensor:
        """Column ``i`` of the (samples, n) base draws, the same for every row of a batch."""
        return base[:, i].to(dtype).view(-1, 1, 1).expand(base.shape[0], batch, 1)

    @staticmethod
    def _context(context: torch.Tensor, values: torch.Tensor, known: torch.Tensor,
                 i: int) -> torch.Tensor:
        if i == 0:
            return context
        return torch.cat([context, values[..., :i] * known[..., :i], known[..., :i]], dim=-1)

    def log_prob(self, y: torch.Tensor, context: torch.Tensor,
                 hide_rate: float = 0.0) -> torch.Tensor:
        """(batch, n) log-density of each known target given the earlier known ones; 0 where
        the target is unknown (NaN).

        With ``hide_rate`` > 0 (training), each conditional of each row sees, with that
        probability, none of the earlier targets: the conditional then also learns the
        target's marginal (see :meth:`marginal_density`)."""
        known = torch.isfinite(y)
        values = torch.nan_to_num(y)
        flags = known.to(values.dtype)
        shown = None
        if hide_rate > 0:
            shown = (torch.rand(len(y), self.n, device=y.device) >= hide_rate).to(flags.dtype)
        out = []
        for i, flow in enumerate(self.flows):
            seen = flags if shown is None else flags * shown[:, i:i + 1]
            log_p = flow(self._context(context, values, seen, i)).log_prob(values[:, i:i + 1])
            out.append(torch.where(known[:, i], log_p, torch.zeros_like(log_p)))
        return torch.stack(out, dim=1)

    def sample(self, context: torch.Tensor, base: torch.Tensor) -> torch.Tensor:
        """(samples, batch, n) joint draws for each row of ``context`` from the base draws
        ``base`` (samples, n) (see :func:`quasi_normal`)."""
        n_samples, batch = base.shape[0], context.shape[0]
        expanded = context.expand(n_samples, batch, -1)
        flags = context.new_ones(n_samples, batch, self.n)
        values = context.new_zeros(n_samples, batch, 0)
        for i, flow in enumerate(self.flows):
            # the first conditional is the same for every sample: its spline is built once
            distribution = flow(context if i == 0 else self._context(expanded, values, flags, i))
            u = self._base_column(base, i, batch, context.dtype)
            values = torch.cat([values, distribution.transform.inv(u)], dim=-1)
        return values

    def _marginal(self, i: int, context: torch.Tensor) -> zuko.distributions.NormalizingFlow:
        hidden = context.new_zeros(*context.shape[:-1], i)
        return self.flows[i](self._context(context, hidden, hidden, i))

    def sample_marginals(self, context: torch.Tensor, base: torch.Tensor) -> torch.Tensor:
        """(samples, batch, n) draws of each target from its own marginal (not jointly)."""
        out = [self._marginal(i, context).transform.inv(
                   self._base_column(base, i, len(context), context.dtype))
               for i in range(self.n)]
        return torch.cat(out, dim=-1)

    def marginal_density(self, i: int, context: torch.Tensor,
                         points: torch.Tensor) -> torch.Tensor:
        """(batch, points) density of target ``i`` at ``points`` (standardised): its
        conditional given none of the earlier targets, which training with ``hide_rate``
        fits on every galaxy that has target ``i`` (exact for the first target).

        Why not the chain's own marginal (the conditional averaged over draws of the
        earlier targets): where labels are missing not at random (line fluxes exist only
        above S/N 3) the draws of an earlier line come from galaxies where *it* was
        detected, so the later line's marginal mixes populations; the direct marginal is
        fitted on exactly the galaxies that have the target (and needs no draws).
        """
        grid = points.to(context.dtype).view(-1, 1, 1)
        return self._marginal(i, context).log_prob(grid).exp().T

    def marginal_cdf(self, i: int, context: torch.Tensor, values: torch.Tensor) -> torch.Tensor:
        """CDF of target ``i``'s marginal at ``values``: (points, 1, 1) for every row of
        ``context`` -> (batch, points); (batch, 1), one value per row -> (batch,).  Exact:
        the flow maps a value to its standard-normal base, whose CDF it keeps."""
        base = self._marginal(i, context).transform(values.to(context.dtype))
        cdf = torch.special.ndtr(base[..., 0])
        return cdf.T if values.dim() == 3 else cdf


@dataclass
class VAEFlowOutput:
    """What one forward pass gives: the latent, the reconstruction and (with targets) the
    flows' per-target log-densities."""

    mu: torch.Tensor
    logvar: torch.Tensor
    reconstruction: torch.Tensor | None = None
    reference: torch.Tensor | None = None  # the input pooled to the reconstruction's size
    log_prob: torch.Tensor | None = None  # (batch, targets), 0 where a target is unknown


def _float32(method: Callable[..., torch.Tensor]) -> Callable[..., torch.Tensor]:
    """Run a flow method without gradients and in float32 even under a caller's bf16
    autocast (splines and their inverses lose too much in bf16)."""

    @functools.wraps(method)
    def wrapper(self: VAEFlow, *args: Any) -> torch.Tensor:
        device = next(a.device.type for a in args if isinstance(a, torch.Tensor))
        with torch.no_grad(), torch.autocast(device, enabled=False):
            return method(self, *args)

    return wrapper


class VAEFlow(nn.Module):
    """ResNet-18 -> Gaussian latent -> (decoder, physical-parameter flow, line-flux flow).

    ``flow_groups`` lists, per flow, the indices of the targets it models (in the
    order of the checkpoint's targets); ``detach_context`` trains the flows on a
    latent the flows' gradient does not reach (the encoder then learns from the VAE
    objective alone: the paper's staged training, in one pass).

    Examples
    --------
    >>> net = VAEFlow(in_bands=3, flow_groups=[[0, 1], [2]], latent=8, width=8)
    >>> out = net(torch.zeros(4, 3, 32, 32), torch.tensor([[0., 1., float("nan")]] * 4))
    >>> tuple(out.log_prob.shape), bool(out.log_prob[:, 2].eq(0).all())
    ((4, 3), True)
    """

    knots: torch.Tensor
    recalibration: torch.Tensor

    def __init__(self, in_bands: int, flow_groups: list[list[int]], *, latent: int = 32,
                 width: int = 64, transforms: int = 3, hidden: int = 128, bins: int = 8,
                 detach_context: bool = False, hide_rate: float = 0.5) -> None:
        super().__init__()
        self.in_bands = in_bands
        self.flow_groups = [list(g) for g in flow_groups]
        self.n_targets = sum(len(g) for g in flow_groups)
        self.detach_context = detach_context
        self.hide_rate = hide_rate
        self.trunk = ResNet18(in_bands, width)
        self.to_latent = nn.Linear(self.trunk.out_features, 2 * latent)
        channels = 4 * width
        self.decoder = nn.Sequential(
            nn.Linear(latent, channels * 4 * 4), nn.Unflatten(1, (channels, 4, 4)), nn.ReLU(),
            nn.ConvTranspose2d(channels, channels // 2, 4, 2, 1), nn.ReLU(),   # 8 x 8
            nn.ConvTranspose2d(channels // 2, channels // 4, 4, 2, 1), nn.ReLU(),  # 16 x 16
            nn.Conv2d(channels // 4, in_bands, 3, 1, 1))
        self.flows = nn.ModuleList(
            ConditionalChain(len(g), latent, transforms=transforms, hidden=hidden, bins=bins)
            for g in self.flow_groups)
        # G(p) per target at the knots: the identity until fit_recalibration
        knots = torch.linspace(0.0, 1.0, RECALIBRATION_KNOTS)
        self.register_buffer("knots", knots)
        self.register_buffer("recalibration", knots.repeat(self.n_targets, 1))

    def _groups(self) -> list[tuple[list[int], ConditionalChain]]:
        """Each flow with the target indices it models."""
        return [(g, cast(ConditionalChain, f))
                for g, f in zip(self.flow_groups, self.flows, strict=True)]

    def encode(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        mu, logvar = self.to_latent(self.trunk(x)).float().chunk(2, dim=1)
        return mu, logvar.clamp(-12.0, 8.0)

    def forward(self, x: torch.Tensor, y: torch.Tensor | None = None) -> VAEFlowOutput:
        """The latent alone (inference), or, with standardised targets ``y`` (NaN unknown),
        the reconstruction and the flows' log-densities as well (training: one call, so
        DistributedDataParallel sees every parameter used)."""
        mu, logvar = self.encode(x)
        if y is None:
            return VAEFlowOutput(mu, logvar)
        z = mu + torch.randn_like(mu) * (0.5 * logvar).exp() if self.training else mu
        reference = nn.functional.adaptive_avg_pool2d(x.float(), RECONSTRUCTION_SIDE)
        context = mu.detach() if self.detach_context else mu
        with torch.autocast(x.device.type, enabled=False):  # splines in float32
            log_prob = torch.empty(len(y), self.n_targets, device=y.device)
            for group, flow in self._groups():
                log_prob[:, group] = flow.log_prob(y[:, group].float(), context,
                                                   self.hide_rate if self.training else 0.0)
            reconstruction = self.decoder(z).float()
        return VAEFlowOutput(mu, logvar, reconstruction, reference, log_prob)

    @_float32
    def sample_flow(self, k: int, mu: torch.Tensor, base: torch.Tensor) -> torch.Tensor:
        """(samples, batch, len(flow_groups[k])) standardised joint posterior draws of flow
        ``k``'s targets (in the group's order) given latent means ``mu``; ``base`` is
        (samples, targets) standard-normal draws (:func:`quasi_normal`), of which the flow
        reads the columns of its own targets' places in the group order."""
        start = sum(len(g) for g in self.flow_groups[:k])
        group, flow = self._groups()[k]
        return flow.sample(mu, base[:, start:start + len(group)])

    @_float32
    def sample_marginals(self, mu: torch.Tensor, base: torch.Tensor) -> torch.Tensor:
        """(samples, batch, targets) standardised draws of each target from its recalibrated
        marginal posterior (what the catalog's per-target PDFs describe)."""
        base = self._recalibrated(base)
        out = mu.new_empty(base.shape[0], len(mu), self.n_targets)
        start = 0
        for group, flow in self._groups():
            out[..., group] = flow.sample_marginals(mu, base[:, start:start + len(group)])
            start += len(group)
        return out

    def _recalibrated(self, base: torch.Tensor) -> torch.Tensor:
        """Base draws u -> Phi^-1(G^-1(Phi(u))) per target: the marginal's draws then follow
        the recalibrated CDF G(F)."""
        columns = []
        for j in range(self.n_targets):
            p = torch.special.ndtr(base[:, j].double())
            q = _interp(p, self.recalibration[j].double(), self.knots.double())
            columns.append(torch.special.ndtri(q.clamp(1e-7, 1 - 1e-7)).float())
        return torch.stack(columns, dim=1)

    def _flow_of(self, target: int) -> tuple[ConditionalChain, int]:
        for group, flow in self._groups():
            if target in group:
                return flow, group.index(target)
        msg = f"target index {target} is in no flow"
        raise IndexError(msg)

    @_float32
    def marginal_pdf(self, target: int, mu: torch.Tensor, edges: torch.Tensor) -> torch.Tensor:
        """(batch, bins) recalibrated marginal posterior density of target ``target``,
        averaged over each bin between ``edges`` (standardised units): the CDF at the
        edges, mapped through the target's recalibration, differenced."""
        flow, i = self._flow_of(target)
        cdf = flow.marginal_cdf(i, mu, edges.view(-1, 1, 1))
        calibrated = _interp(cdf, self.knots, self.recalibration[target])
        return calibrated.diff(dim=1) / edges.diff().to(cdf.dtype)

    @_float32
    def marginal_pit(self, target: int, mu: torch.Tensor, values: torch.Tensor) -> torch.Tensor:
        """(batch,) CDF of each row's uncalibrated marginal at its own value (standardised)."""
        flow, i = self._flow_of(target)
        return flow.marginal_cdf(i, mu, values.view(-1, 1))

    def fit_recalibration(self, pits: list[torch.Tensor]) -> None:
        """Set each target's map G to the empirical CDF of its validation PIT values (mixed
        with 2 % identity, so it is strictly increasing), making the marginals calibrated
        on that split (Kuleshov et al. 2018); a target with fewer than
        ``MIN_RECALIBRATION`` values keeps the identity."""
        for j, pit in enumerate(pits):
            if len(pit) < MIN_RECALIBRATION:
                continue
            ecdf = (pit.double()[None, :] <= self.knots.double()[:, None]).double().mean(dim=1)
            mixed = (1 - _IDENTITY_SHARE) * ecdf + _IDENTITY_SHARE * self.knots.double()
            mixed[0], mixed[-1] = 0.0, 1.0
            self.recalibration[j] = mixed.to(self.recalibration.dtype)
