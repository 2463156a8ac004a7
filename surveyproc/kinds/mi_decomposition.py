"""Kind ``mi_decomposition``: what two inputs say about each target, redundantly, uniquely
and synergistically (Zhang, Lin, Ting et al.; public code QiufanLin/InterpretSM).

Training fits three binned density estimators of every target (on input 1, on
input 2, on both: :mod:`surveyproc.models.mi_decomposition`) through the usual
training path, then each target's binned prior on the training split.
Inference writes the joint estimator's PDF and summaries, and for every galaxy
whose store has the target's truth its information terms in bits
(``<t>_mi_1``, ``_mi_2``, ``_mi_12``, ``_mi_redundant``, ``_mi_unique_1``,
``_mi_unique_2``, ``_mi_synergy``: :mod:`surveyproc.models.information`); NaN
where the truth is unknown; and one estimator's latent (``<model>_latent``, input 1's
by default) for the local conditional-independence tests of
:mod:`surveyproc.stats.local_tests`.  The Dask pass sums the terms overall and in bins of
the target, of magnitude and of morphology labels, and the report shows them
with the population-level MMI decomposition.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

import numpy as np
import torch
from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator
from torch import nn

from ..catalog.columns import latent_column
from ..catalog.schema import ModelColumns
from ..errors import InvalidParameterError
from ..models.checkpoint import Checkpoint, TargetInfo
from ..models.grid import Grid
from ..models.information import TERMS, entropy_bits, information_terms, mmi_decomposition
from ..models.mi_decomposition import EncoderInput, InformationEstimators, InformationOutput
from .base import (
    MAGNITUDE_EDGES,
    MAGNITUDE_LABEL,
    ModelKind,
    ModelSettings,
    ReportContext,
    TrainingData,
)
from .columns import check_grids, density_outputs, target_grid
from .registry import register_kind

__all__ = ["InformationAggregator", "InformationTask", "InputSettings",
           "MIDecompositionKind", "MIDecompositionSettings", "term_column"]

#: Edges (bits) of the per-galaxy term histograms in the report.
TERM_EDGES = np.linspace(-6.0, 6.0, 49)
#: Bins of the target's truth over its grid.
TARGET_BINS = 5


def term_column(target: str, term: str) -> str:
    """``<target>_mi_<term>``, e.g. ``log_mstar_mi_synergy``."""
    return f"{target}_mi_{term}"


class InputSettings(BaseModel):
    """One input of the decomposition: some bands, seen as images or as photometry."""

    model_config = ConfigDict(extra="forbid")

    source: Literal["images", "photometry"] = Field(
        description="images: a ResNet-18 on the bands; photometry: their aperture fluxes "
        "and colours measured on the cutout, through an MLP.")
    bands: list[str] | None = Field(None, description="Bands (default: all of the store's).")

    def describe(self, bands: Sequence[str]) -> str:
        return f"{self.source} ({', '.join(self.bands or bands)})"


class MIDecompositionSettings(ModelSettings):
    """Two inputs; every target gets the three estimators' heads and its information terms."""

    inputs: list[InputSettings] = Field(
        min_length=2, max_length=2,
        description="The two inputs, e.g. [images, photometry] or [{source: images, bands: "
                    "[g]}, {source: images, bands: [r]}].")
    hidden: int = Field(128, ge=8, description="Hidden units of the heads and the "
                        "photometry MLP.")
    pdf_bins: int = Field(40, ge=4, description="Bins of each target (one count for all).")
    latent_dims: int = Field(16, ge=2, le=256, description="Width of each estimator's latent "
                             "(the layer before its head).")
    latent: Literal["1", "2", "12"] | None = Field(
        "1", description="Whose latent the catalog keeps as <model>_latent: input 1's "
        "estimator, input 2's or the joint one (12); null keeps none.")
    grids: dict[str, Grid] = Field(
        default_factory=dict, description="Bins of a target; default: the training mean "
        "+- 5 standard deviations in pdf_bins bins.")
    morphology: dict[str, list[float]] = Field(
        default_factory=lambda: {"bulge_fraction": [0, 0.2, 0.4, 0.6, 0.8, 1.0],
                                 "cos_inclination": [0, 0.2, 0.4, 0.6, 0.8, 1.0],
                                 "half_light_radius": [0, 0.5, 1, 1.5, 2, 3, 5]},
        description="Store labels (morphology proxies) and bin edges the report shows the "
        "terms in, where the store has them.")

    @field_validator("inputs", mode="before")
    @classmethod
    def _shorthand(cls, value: Any) -> Any:
        if isinstance(value, list):
            return [{"source": v} if isinstance(v, str) else v for v in value]
        return value

    @field_validator("latent", mode="before")
    @classmethod
    def _latent_as_text(cls, value: Any) -> Any:
        return str(value) if isinstance(value, int) else value

    @model_validator(mode="after")
    def _grids_fit(self) -> MIDecompositionSettings:
        check_grids(self.grids, self.targets, self.name)
        for target, grid in self.grids.items():
            if grid.n_bins != self.pdf_bins:
                msg = (f"grid of {target} has {grid.n_bins} bins; every target of "
                       f"{self.name} has pdf_bins ({self.pdf_bins})")
                raise ValueError(msg)
        return self


def _encoder_input(settings: InputSettings, bands: Sequence[str], model: str) -> EncoderInput:
    names = settings.bands or list(bands)
    missing = [b for b in names if b not in bands]
    if missing:
        msg = (f"model {model}: input band {', '.join(missing)} is not a band of the store "
               f"({', '.join(bands)})")
        raise InvalidParameterError(msg)
    index = tuple(sorted(bands.index(b) for b in names))
    return EncoderInput(images=index) if settings.source == "images" else \
        EncoderInput(photometry=index)


def _log_probabilities(output: InformationOutput) -> torch.Tensor:
    """(3, batch, targets, bins) log-probabilities of the three estimators' bins."""
    return torch.log_softmax(output.logits.float(), dim=-1)


#: What each term means, in the report's tables.
_TERM_MEANINGS = {
    "1": "I_1: bits about the target from input 1's estimator",
    "2": "I_2: bits about the target from input 2's estimator",
    "12": "I_12: bits about the target from the joint estimator",
    "redundant": "min(I_1, I_2): bits both inputs carry",
    "unique_1": "I_1 - redundant: bits only input 1 carries",
    "unique_2": "I_2 - redundant: bits only input 2 carries",
    "synergy": "I_12 - I_1 - I_2 + redundant: bits only the two together carry",
}
_MEAN_MEANINGS = {
    "target": "predicted quantity",
    "galaxies with truth": "galaxies whose store has the target's truth (the terms need it)",
    **{f"mean {t}": f"mean per galaxy of {m}" for t, m in _TERM_MEANINGS.items()},
    **{f"population {t}": f"{t} of the decomposition of the mean informations"
       for t in ("redundant", "unique_1", "unique_2", "synergy")},
}
_BIN_MEANINGS = {"bin": "range of the binned quantity", "n": "galaxies with truth in the bin",
                 **{t: f"mean per galaxy of {m}" for t, m in _TERM_MEANINGS.items()}}

#: Which estimator (index into the model's output) a ``latent`` setting names.
_ESTIMATOR = {"1": 0, "2": 1, "12": 2}


@dataclass
class InformationTask:
    """Sum of the three estimators' cross-entropies on the known targets' bins; metrics:
    each estimator's information about each target, in bits, against the binned entropy
    of the split's own truths, and their MMI decomposition."""

    grids: Sequence[Grid]
    targets: Sequence[TargetInfo]

    def bins(self, y: torch.Tensor) -> torch.Tensor:
        """(batch, targets) bin of each value (anything for an unknown one)."""
        return torch.stack([grid.bin_of(torch.nan_to_num(y[:, j]))
                            for j, grid in enumerate(self.grids)], dim=1)

    def loss(self, model: nn.Module, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        logp = _log_probabilities(model(x))  # (3, batch, targets, bins)
        known = torch.isfinite(y)
        picked = logp.gather(3, self.bins(y)[None, :, :, None].expand(3, -1, -1, 1))[..., 0]
        return -(picked * known).sum() / known.sum().clamp(min=1)

    def predict(self, model: nn.Module, x: torch.Tensor) -> np.ndarray:
        """(batch, 3 x targets x bins) log-probabilities, flattened per galaxy."""
        logp = _log_probabilities(model(x)).permute(1, 0, 2, 3)
        return logp.reshape(len(x), -1).cpu().numpy()

    def metrics(self, predictions: np.ndarray, y: np.ndarray) -> dict[str, float]:
        n_bins = self.grids[0].n_bins
        logp = predictions.reshape(len(predictions), 3, len(self.targets), n_bins)
        bins = self.bins(torch.from_numpy(y)).numpy()
        out: dict[str, float] = {}
        for j, target in enumerate(self.targets):
            known = np.isfinite(y[:, j])
            if not known.any():
                continue
            prior = entropy_bits(np.bincount(bins[known, j], minlength=n_bins))
            picked = logp[known, :, j, :][np.arange(known.sum()), :, bins[known, j]]
            means = [prior + float(np.mean(picked[:, k])) / np.log(2.0) for k in range(3)]
            for term, value in mmi_decomposition(*means).items():
                out[f"mi_{term}_{target.name}"] = float(value)
        return out


@dataclass
class InformationAggregator:
    """Per target: sums and histograms of each term overall, and sums in bins of the
    target's truth, of magnitude and of each morphology label the store has."""

    targets: list[str]
    grids: list[Grid]
    morphology: dict[str, list[float]]
    columns: list[str] = field(init=False)

    def __post_init__(self) -> None:
        self.columns = [term_column(t, term) for t in self.targets for term in TERMS]

    def binnings(self, target: int) -> dict[str, np.ndarray]:
        """Edges of each binning of one target's terms."""
        grid = self.grids[target]
        return {"truth": np.linspace(grid.low, grid.high, TARGET_BINS + 1),
                "magnitude": np.asarray(MAGNITUDE_EDGES),
                **{name: np.asarray(edges, dtype=np.float64)
                   for name, edges in self.morphology.items()}}

    def partial(self, frame: Any, labels: Mapping[str, np.ndarray]) -> dict[str, np.ndarray]:
        out: dict[str, np.ndarray] = {}
        for j, target in enumerate(self.targets):
            terms = np.stack([frame[term_column(target, t)].to_numpy(
                dtype=np.float64, na_value=np.nan) for t in TERMS], axis=1)
            known = np.isfinite(terms).all(axis=1)
            out[f"{target}/n"] = np.array([known.sum()], dtype=np.float64)
            out[f"{target}/sum"] = np.where(known[:, None], terms, 0.0).sum(axis=0)
            out[f"{target}/hist"] = np.stack([np.histogram(terms[known, k], TERM_EDGES)[0]
                                              for k in range(len(TERMS))]).astype(np.float64)
            sources = {"truth": labels.get(target), "magnitude": labels.get(MAGNITUDE_LABEL),
                       **{name: labels.get(name) for name in self.morphology}}
            for name, edges in self.binnings(j).items():
                values = sources.get(name)
                sums = np.zeros((len(edges) - 1, len(TERMS) + 1))
                if values is not None:
                    index = np.digitize(np.asarray(values, dtype=np.float64), edges) - 1
                    inside = known & (index >= 0) & (index < len(edges) - 1)
                    np.add.at(sums[:, 0], index[inside], 1.0)
                    np.add.at(sums[:, 1:], index[inside], terms[inside])
                out[f"{target}/by/{name}"] = sums
        return out

    def finish(self, total: dict[str, np.ndarray]) -> dict[str, Any]:
        result: dict[str, Any] = {}
        for j, target in enumerate(self.targets):
            n = float(total[f"{target}/n"][0])
            means = total[f"{target}/sum"] / max(n, 1.0)
            population = mmi_decomposition(means[0], means[1], means[2])
            bins = {}
            for name, edges in self.binnings(j).items():
                sums = total[f"{target}/by/{name}"]
                if sums[:, 0].sum() == 0:
                    continue
                bins[name] = [{"low": float(a), "high": float(b), "n": int(row[0]),
                               **{t: (float(v / row[0]) if row[0] else None)
                                  for t, v in zip(TERMS, row[1:], strict=True)}}
                              for a, b, row in zip(edges[:-1], edges[1:], sums, strict=True)]
            result[target] = {
                "n": int(n), "mean": {t: float(v) for t, v in zip(TERMS, means, strict=True)},
                "population": {t: float(v) for t, v in population.items()},
                "histogram": {"edges": TERM_EDGES.tolist(),
                              "counts": {t: total[f"{target}/hist"][k].astype(int).tolist()
                                         for k, t in enumerate(TERMS)}},
                "bins": bins}
        return result


@register_kind
class MIDecompositionKind(ModelKind):
    """Three estimators in training; the joint one's PDFs and per-galaxy information terms
    in the catalog."""

    name = "mi_decomposition"
    description = "three binned estimators (input 1, input 2, both) -> per-galaxy MMI " \
                  "information decomposition (Zhang, Lin, Ting et al.)"
    settings = MIDecompositionSettings
    needs_truth = True

    def network_config(self, settings: ModelSettings, bands: Sequence[str]) -> dict[str, Any]:
        assert isinstance(settings, MIDecompositionSettings)
        config = super().network_config(settings, bands)
        specs = [_encoder_input(s, bands, settings.name) for s in settings.inputs]
        config["encoders"] = [{"images": list(s.images), "photometry": list(s.photometry)}
                              for s in specs]
        config["described"] = [s.describe(bands) for s in settings.inputs]
        return config

    def build(self, config: Mapping[str, Any]) -> nn.Module:
        one, two = (EncoderInput(tuple(e["images"]), tuple(e["photometry"]))
                    for e in config["encoders"])
        return InformationEstimators(one, two, config["n_targets"], config["pdf_bins"],
                                     config.get("width", 64), config["hidden"],
                                     config.get("latent_dims", 16))

    def task(self, config: Mapping[str, Any], targets: list[TargetInfo]) -> InformationTask:
        return InformationTask([target_grid(config, t) for t in targets], targets)

    @torch.no_grad()
    def after_fit(self, model: nn.Module, data: TrainingData) -> None:
        """Each target's binned prior: its histogram over the training split (labels only)."""
        assert isinstance(model, InformationEstimators)
        task = self.task(data.config, data.targets)
        y = data.split_targets("train")
        bins = task.bins(torch.from_numpy(y)).numpy()
        counts = np.zeros(tuple(model.prior.shape))
        for j in range(len(data.targets)):
            known = np.isfinite(y[:, j])
            counts[j] = np.bincount(bins[known, j], minlength=counts.shape[1])
        model.set_prior(counts)

    def columns(self, name: str, checkpoint: Checkpoint) -> ModelColumns:
        config = checkpoint.config
        prior = checkpoint.state_dict["prior"].double().numpy()
        targets = [t.name for t in checkpoint.targets]
        extra = {"inputs": {"1": config["described"][0], "2": config["described"][1]},
                 "prior_entropy_bits": {t: entropy_bits(prior[j])
                                        for j, t in enumerate(targets)},
                 "morphology": config["morphology"]}
        extra_columns = [(term_column(t, term), "float32") for t in targets for term in TERMS]
        if config.get("latent"):
            which = config["latent"]
            extra["latent"] = {"column": latent_column(name), "estimator": which,
                               "input": "both" if which == "12" else config["described"][
                                   int(which) - 1]}
            extra_columns.append((latent_column(name), "list<float32>"))
        return ModelColumns(name, checkpoint.model_id, checkpoint.kind, tuple(targets),
                            tuple(t.unit for t in checkpoint.targets), "pdf",
                            grids=tuple(target_grid(config, t) for t in checkpoint.targets),
                            extra_columns=tuple(extra_columns), extra=extra)

    def infer(self, module: nn.Module, x: torch.Tensor, columns: ModelColumns,
              checkpoint: Checkpoint, truth: np.ndarray | None = None
              ) -> dict[str, np.ndarray]:
        assert isinstance(module, InformationEstimators) and columns.grids is not None
        output = module(x)
        logp = _log_probabilities(output).cpu().numpy().astype(np.float64)
        entropies = columns.extra["prior_entropy_bits"]
        out: dict[str, np.ndarray] = {}
        if "latent" in columns.extra:
            which = _ESTIMATOR[columns.extra["latent"]["estimator"]]
            out[columns.extra["latent"]["column"]] = \
                output.latents[which].float().cpu().numpy()
        for j, (target, grid) in enumerate(zip(columns.targets, columns.grids, strict=True)):
            out.update(density_outputs(np.exp(logp[2, :, j]) / grid.width, target, grid))
            values = (truth[:, j].astype(np.float64) if truth is not None
                      else np.full(len(x), np.nan))
            known = np.isfinite(values)
            bins = grid.bin_of(torch.from_numpy(np.nan_to_num(values))).numpy()
            picked = logp[:, np.arange(len(x)), j, bins]  # (3, batch)
            picked[:, ~known] = np.nan
            terms = information_terms(entropies[target],
                                      {"1": picked[0], "2": picked[1], "12": picked[2]})
            out.update({term_column(target, t): terms[t].astype(np.float32) for t in TERMS})
        return out

    def aggregator(self, columns: ModelColumns) -> InformationAggregator:
        assert columns.grids is not None
        return InformationAggregator(list(columns.targets), list(columns.grids),
                                     dict(columns.extra.get("morphology", {})))

    def report_section(self, context: ReportContext) -> str | None:
        """Mean terms per target (and the population's MMI decomposition), then the terms
        in bins of each quantity."""
        if not context.aggregate:
            return None
        import pandas as pd

        inputs = context.columns.extra["inputs"]
        context.summary["information"] = context.aggregate
        rows = []
        for target, result in context.aggregate.items():
            rows.append({"target": target, "galaxies with truth": result["n"],
                         **{f"mean {t}": result["mean"][t] for t in TERMS},
                         **{f"population {t}": result["population"][t]
                            for t in ("redundant", "unique_1", "unique_2", "synergy")}})
        html = ("<h3>Information decomposition (bits)</h3>"
                f"<p>Input 1: {inputs['1']}; input 2: {inputs['2']}. Per galaxy, I_k = h(y) - "
                "CE_k of the estimator on input k (12: both); redundancy min(I_1, I_2), "
                "unique I_k - redundancy, synergy I_12 - I_1 - I_2 + redundancy (MMI). "
                "Negative values are misinformation. <em>Population</em> is the "
                "decomposition of the mean informations.</p>"
                + context.table(pd.DataFrame(rows), meanings=_MEAN_MEANINGS))
        for target, result in context.aggregate.items():
            for name, bins in result["bins"].items():
                frame = pd.DataFrame([{"bin": f"{b['low']:g}-{b['high']:g}", "n": b["n"],
                                       **{t: b[t] for t in TERMS}} for b in bins if b["n"]])
                html += (f"<h4>{target}: terms in bins of {name}</h4>"
                         + context.table(frame, meanings=_BIN_MEANINGS))
        return html
