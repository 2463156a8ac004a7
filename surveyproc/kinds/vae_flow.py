"""Kind ``vae_flow`` (Siddiqa, Mahmud, Martinez-Galarza): VAE latent -> conditional flows ->
joint posteriors of physical parameters and emission-line fluxes.

Everything the estimator needs beyond the network (:mod:`surveyproc.models.vae_flow`)
lives here: which targets go to which flow, the training objective (flow
negative log-likelihood of the known labels + the VAE's reconstruction and KL
terms), the recalibration of each target's marginal on the validation split
after training, and how posteriors become catalog columns: per target the
recalibrated marginal PDF on the target's grid and its summaries, plus the
posterior correlation matrix of the physical parameters (upper triangle, from
joint draws) in ``<model>_corr``.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal, cast

import numpy as np
import torch
from pydantic import Field, model_validator
from torch import nn

from ..catalog.schema import ModelColumns
from ..models.checkpoint import Checkpoint, TargetInfo
from ..models.grid import Grid
from ..models.vae_flow import VAEFlow, quasi_normal
from .base import ModelKind, ModelSettings, ReportContext, TrainingData
from .columns import check_grids, density_outputs, target_grid
from .registry import register_kind

__all__ = ["VAEFlowKind", "VAEFlowSettings", "VAEFlowTask", "flow_groups",
           "posterior_correlations"]

#: Quantiles the training metrics read from the posterior draws (median, 68 %, 95 %).
_QUANTILES = (0.5, 0.16, 0.84, 0.025, 0.975)
#: Posterior draws behind the validation metrics during training (cheap, quasi-random).
_TRAINING_DRAWS = 64


def is_line_flux(target: str) -> bool:
    """Emission-line fluxes (``flux_<line>``, ``log_flux_<line>``) go to the second flow."""
    return target.removeprefix("log_").startswith("flux_")


def flow_groups(targets: Sequence[str]) -> list[list[int]]:
    """Target indices per flow: physical parameters first, then line fluxes; a group is
    present only when it has targets.

    >>> flow_groups(["log_mstar", "log_flux_halpha", "redshift"])
    [[0, 2], [1]]
    """
    physical = [i for i, t in enumerate(targets) if not is_line_flux(t)]
    lines = [i for i, t in enumerate(targets) if is_line_flux(t)]
    return [g for g in (physical, lines) if g]


class VAEFlowSettings(ModelSettings):
    """A VAE encoder and one or two conditional flows; ``targets`` may be any store labels."""

    latent: int = Field(64, ge=2, description="Dimensions of the VAE latent.")
    transforms: int = Field(3, ge=1, description="Spline transforms per 1-D conditional.")
    hidden: int = Field(128, ge=8, description="Hidden units of each conditional's network.")
    bins: int = Field(8, ge=2, description="Spline bins of each transform.")
    vae_weight: float = Field(0.3, ge=0.0, description="Weight of reconstruction + KL.")
    hide_rate: float = Field(0.5, ge=0.0, lt=1.0, description="Training: chance that a "
                             "conditional sees none of the earlier targets (so it learns "
                             "the target's marginal, the catalog's PDF).")
    beta: float = Field(1.0, ge=0.0, description="Weight of the KL term within the VAE term.")
    training: Literal["joint", "staged"] = Field(
        "joint", description="joint: the flows' likelihood trains the encoder too; staged: "
        "the encoder learns from the VAE objective alone, the flows on its latent.")
    samples: int = Field(256, ge=16, description="Posterior draws per galaxy at inference.")
    seed: int = Field(0, ge=0, description="Seed of the posterior draws (reproducible).")
    pdf_bins: int = Field(100, ge=10, description="Bins of a default PDF grid.")
    grids: dict[str, Grid] = Field(
        default_factory=dict, description="PDF grid per target; default: the training mean "
        "+- 5 standard deviations in pdf_bins bins.")

    @model_validator(mode="after")
    def _grids_name_targets(self) -> VAEFlowSettings:
        check_grids(self.grids, self.targets, self.name)
        return self


def posterior_correlations(samples: torch.Tensor) -> torch.Tensor:
    """(batch, d (d - 1) / 2) upper-triangle correlations of (samples, batch, d) draws,
    row by row (pairs (0, 1), (0, 2), .., (1, 2), ..).

    >>> draws = torch.randn(4000, 1, 1).expand(4000, 1, 2) * torch.tensor([1.0, -2.0])
    >>> round(float(posterior_correlations(draws)[0, 0]), 3)
    -1.0
    """
    centred = samples - samples.mean(dim=0)
    cov = torch.einsum("sbi,sbj->bij", centred, centred) / max(samples.shape[0] - 1, 1)
    scale = cov.diagonal(dim1=1, dim2=2).clamp(min=1e-12).sqrt()
    corr = cov / (scale[:, :, None] * scale[:, None, :])
    rows, cols = torch.triu_indices(samples.shape[2], samples.shape[2], offset=1)
    return corr[:, rows, cols]


def _correlation_column(name: str) -> str:
    return f"{name}_corr"


@dataclass
class CorrelationAggregator:
    """Per pair of physical parameters: the mean posterior correlation, beside the
    correlation of the errors (truth - posterior median) and of the truths where the store
    has them.  For a calibrated joint posterior the first two agree: the mean posterior
    covariance is the covariance of the errors."""

    column: str
    targets: list[str]
    pairs: list[tuple[int, int]]
    medians: list[str]  # each target's posterior median column
    columns: list[str] = field(init=False)

    def __post_init__(self) -> None:
        self.columns = [self.column, *self.medians]

    def partial(self, frame: Any, labels: Mapping[str, np.ndarray]) -> dict[str, np.ndarray]:
        from ..stats.frames import list_values

        corr = list_values(frame[self.column], len(self.pairs)).astype(np.float64)
        out = {"n": np.array([len(corr)], dtype=np.float64), "corr": corr.sum(axis=0)}
        moments = np.zeros((2, len(self.pairs), 6))  # (errors, truths) x pair x sums
        for k, (a, b) in enumerate(self.pairs):
            ta, tb = (np.asarray(labels.get(self.targets[i], np.full(len(corr), np.nan)),
                                 dtype=np.float64) for i in (a, b))
            ma, mb = (frame[self.medians[i]].to_numpy(dtype=np.float64) for i in (a, b))
            both = np.isfinite(ta) & np.isfinite(tb) & np.isfinite(ma) & np.isfinite(mb)
            for m, (u, v) in enumerate(((ta - ma, tb - mb), (ta, tb))):
                u, v = u[both], v[both]
                moments[m, k] = (len(u), u.sum(), v.sum(), (u * u).sum(), (v * v).sum(),
                                 (u * v).sum())
        out["moments"] = moments
        return out

    def finish(self, total: dict[str, np.ndarray]) -> list[dict[str, Any]]:
        def pearson(m: np.ndarray) -> float:
            n, su, sv, suu, svv, suv = m
            if n < 3:
                return float("nan")
            cov = suv / n - su * sv / n ** 2
            var = (suu / n - (su / n) ** 2) * (svv / n - (sv / n) ** 2)
            return float(cov / np.sqrt(var)) if var > 0 else float("nan")

        n = max(float(total["n"][0]), 1.0)
        return [{"pair": [self.targets[a], self.targets[b]],
                 "mean_posterior": float(total["corr"][k] / n),
                 "errors": pearson(total["moments"][0, k]),
                 "truths": pearson(total["moments"][1, k]),
                 "with_truth": int(total["moments"][0, k, 0])}
                for k, (a, b) in enumerate(self.pairs)]


@dataclass
class VAEFlowTask:
    """Flow NLL per known label + ``vae_weight`` x (reconstruction + beta KL) per pixel;
    validation metrics from posterior draws: median RMSE and 68 %/95 % coverage."""

    targets: Sequence[TargetInfo]
    vae_weight: float = 1.0
    beta: float = 1.0
    seed: int = 0
    _mean: torch.Tensor = field(init=False)
    _std: torch.Tensor = field(init=False)

    def __post_init__(self) -> None:
        self._mean = torch.tensor([t.mean for t in self.targets], dtype=torch.float32)
        self._std = torch.tensor([t.std for t in self.targets], dtype=torch.float32)

    def standardise(self, y: torch.Tensor) -> torch.Tensor:
        return (y - self._mean.to(y.device)) / self._std.to(y.device)

    def loss(self, model: nn.Module, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        out = model(x, self.standardise(y.float()))
        known = torch.isfinite(y).sum().clamp(min=1)
        flow_nll = -out.log_prob.sum() / known
        pixels = out.reference[0].numel()
        reconstruction = 0.5 * ((out.reconstruction - out.reference) ** 2).mean()
        kl = -0.5 * (1 + out.logvar - out.mu ** 2 - out.logvar.exp()).sum(dim=1).mean()
        return flow_nll + self.vae_weight * (reconstruction + self.beta * kl / pixels)

    def predict(self, model: nn.Module, x: torch.Tensor) -> np.ndarray:
        """(batch, targets, 5) posterior median, 16 %, 84 %, 2.5 %, 97.5 % quantiles of each
        target's marginal (the catalog's PDFs)."""
        network = cast(VAEFlow, model)  # evaluate() passes the unwrapped model
        mu = network(x).mu
        base = quasi_normal(_TRAINING_DRAWS, len(self.targets), self.seed).to(mu.device)
        draws = network.sample_marginals(mu, base).cpu() * self._std + self._mean
        q = torch.quantile(draws, torch.tensor(_QUANTILES), dim=0)  # (5, batch, targets)
        return q.permute(1, 2, 0).numpy()

    def metrics(self, predictions: np.ndarray, y: np.ndarray) -> dict[str, float]:
        out: dict[str, float] = {}
        for j, target in enumerate(self.targets):
            known = np.isfinite(y[:, j])
            if not known.any():
                continue
            truth, q = y[known, j], predictions[known, j]
            out[f"rmse_{target.name}"] = float(np.sqrt(np.mean((q[:, 0] - truth) ** 2)))
            out[f"coverage68_{target.name}"] = float(np.mean((q[:, 1] <= truth)
                                                             & (truth <= q[:, 2])))
            out[f"coverage95_{target.name}"] = float(np.mean((q[:, 3] <= truth)
                                                             & (truth <= q[:, 4])))
        return out


@register_kind
class VAEFlowKind(ModelKind):
    """Posterior draws per galaxy -> per-target summaries and PDFs, and the physical
    parameters' posterior correlations."""

    name = "vae_flow"
    description = "ResNet-18 VAE latent -> conditional spline flows (Siddiqa et al.): joint " \
                  "posteriors"
    settings = VAEFlowSettings

    def network_config(self, settings: ModelSettings, bands: Sequence[str]) -> dict[str, Any]:
        config = super().network_config(settings, bands)
        config["flow_groups"] = flow_groups(settings.targets)
        return config

    def build(self, config: Mapping[str, Any]) -> nn.Module:
        return VAEFlow(config["in_bands"], config["flow_groups"], latent=config["latent"],
                       width=config.get("width", 64), transforms=config["transforms"],
                       hidden=config["hidden"], bins=config["bins"],
                       detach_context=config["training"] == "staged",
                       hide_rate=config["hide_rate"])

    def task(self, config: Mapping[str, Any], targets: list[TargetInfo]) -> VAEFlowTask:
        return VAEFlowTask(targets, config["vae_weight"], config["beta"], config["seed"])

    @torch.no_grad()
    def after_fit(self, model: nn.Module, data: TrainingData) -> None:
        """Recalibrate each target's marginal on the validation split: its PIT values
        (exact CDFs of the flow at the truths) define the map the catalog PDFs go through."""
        assert isinstance(model, VAEFlow)
        model.eval()
        standardise = VAEFlowTask(data.targets).standardise
        pits: list[list[torch.Tensor]] = [[] for _ in data.targets]
        for x, y, _ in data.batches("val"):
            mu = model(x).mu
            z = standardise(y.float())
            for j in range(len(data.targets)):
                known = torch.isfinite(z[:, j])
                if known.any():
                    pits[j].append(model.marginal_pit(j, mu[known], z[known, j]))
        model.fit_recalibration([torch.cat(p) if p else torch.empty(0) for p in pits])

    def columns(self, name: str, checkpoint: Checkpoint) -> ModelColumns:
        config = checkpoint.config
        physical = [checkpoint.targets[i].name for i in config["flow_groups"][0]
                    if not is_line_flux(checkpoint.targets[i].name)]
        extra_columns: tuple[tuple[str, str], ...] = ()
        extra: dict[str, Any] = {"samples": int(config["samples"]), "seed": int(config["seed"])}
        if len(physical) >= 2:
            extra_columns = ((_correlation_column(name), "list<float32>"),)
            rows, cols = np.triu_indices(len(physical), k=1)
            extra["correlation"] = {"column": _correlation_column(name), "targets": physical,
                                    "pairs": [[physical[i], physical[j]]
                                              for i, j in zip(rows, cols, strict=True)]}
        return ModelColumns(name, checkpoint.model_id, checkpoint.kind,
                            tuple(t.name for t in checkpoint.targets),
                            tuple(t.unit for t in checkpoint.targets), "pdf",
                            grids=tuple(target_grid(config, t) for t in checkpoint.targets),
                            extra_columns=extra_columns, extra=extra)

    def infer(self, module: nn.Module, x: torch.Tensor, columns: ModelColumns,
              checkpoint: Checkpoint, truth: np.ndarray | None = None
              ) -> dict[str, np.ndarray]:
        assert isinstance(module, VAEFlow) and columns.grids is not None
        config = checkpoint.config
        mu = module(x).mu
        out: dict[str, np.ndarray] = {}
        for j, (info, grid) in enumerate(zip(checkpoint.targets, columns.grids, strict=True)):
            edges = (torch.from_numpy(grid.edges()) - info.mean) / info.std
            pdf = module.marginal_pdf(j, mu, edges.to(mu.device))
            out.update(density_outputs((pdf / info.std).cpu().numpy(), info.name, grid))
        correlation = columns.extra.get("correlation")
        if correlation is not None:  # joint draws of the physical parameters (flow 0) only
            base = quasi_normal(int(config["samples"]), module.n_targets, int(config["seed"]))
            draws = module.sample_flow(0, mu, base.to(mu.device))
            out[correlation["column"]] = posterior_correlations(draws).cpu().numpy().astype(
                np.float32)
        return out

    def aggregator(self, columns: ModelColumns) -> CorrelationAggregator | None:
        correlation = columns.extra.get("correlation")
        if correlation is None:
            return None
        targets = list(correlation["targets"])
        pairs = [(targets.index(a), targets.index(b)) for a, b in correlation["pairs"]]
        return CorrelationAggregator(correlation["column"], targets, pairs,
                                     [columns.stat(t, "q50") for t in targets])

    def report_section(self, context: ReportContext) -> str | None:
        """The joint posterior's correlations beside those of the errors and truths."""
        if not context.aggregate:
            return None
        import pandas as pd

        rows = context.aggregate
        context.summary["posterior_correlations"] = rows
        frame = pd.DataFrame({
            "pair": [" - ".join(r["pair"]) for r in rows],
            "mean posterior correlation": [r["mean_posterior"] for r in rows],
            "correlation of errors (truth - median)": [r["errors"] for r in rows],
            "correlation of truths": [r["truths"] for r in rows],
            "galaxies with truth": [r["with_truth"] for r in rows]})
        return ("<h3>Posterior correlations of the physical parameters</h3>"
                "<p>For a calibrated joint posterior the mean posterior correlation matches "
                "the correlation of the errors; the truths' correlation is the population's "
                "(the prior's), which the images narrow.</p>" + context.table(frame, meanings={
                    "pair": "two targets of the joint posterior",
                    "mean posterior correlation": "mean over galaxies of the correlation "
                                                  "of the pair in each galaxy's posterior",
                    "correlation of errors (truth - median)": "correlation over galaxies "
                    "of the pair's errors",
                    "correlation of truths": "correlation over galaxies of the pair's truths",
                    "galaxies with truth": "galaxies with both truths known"}))
