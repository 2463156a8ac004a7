"""Kind ``clap`` (Lin et al., "CLAP I"): calibrated photo-z densities from a contrastive
latent, adaptive-k nearest neighbours, a refit and a harmonic-mean ensemble.

The four stages of the paper's code, on our training path:

1. **Contrastive learning** (gradient training, one process or Ray Train): each of
   ``members`` realisations learns a ``latent_dims`` redshift latent with a softmax
   estimator head (cross-entropy on the grid), a decoder that reconstructs the input,
   and CLAP's contrastive term ``-log(p / (p + n))`` with ``p = exp(-RMS distance)``
   between two views of the same galaxy (dihedral flips and noise for cutouts, noise for
   photometry) and ``n`` the same between different galaxies.
2. **Adaptive KNN with recalibration** (:mod:`surveyproc.models.knn_pdf`, after training):
   the training split's redshift latents and truths are the reference set; each
   training galaxy (itself left out) gets the density of its k nearest references, k
   chosen per galaxy where the neighbours' own PITs are most uniform, reweighted by the
   local PIT distribution.
3. **Refit**: each realisation's encoder and refit head are trained (``refit_epochs``) to
   those densities with a 1-Wasserstein plus cross-entropy loss, so inference needs no
   neighbour search.
4. **Ensemble**: the catalog's PDF is the harmonic mean of the realisations' refit
   densities, each smoothed by a Gaussian of ``smooth`` bins.

The checkpoint's readouts list the realisations with, on the validation split, the k
chosen and the 1-Wasserstein distance between the refit and the KNN densities.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, ClassVar, Literal, cast

import numpy as np
import torch
from pydantic import Field
from torch import nn

from ..models.checkpoint import TargetInfo
from ..models.clap import (
    RECONSTRUCTED_SIDE,
    ClapNet,
    ClapTerms,
    clap_network,
    reconstruction_target,
)
from ..models.grid import Grid
from ..models.inputs import PhotometryInput, build_trunk, input_source
from ..models.knn_pdf import adaptive_knn_densities, wasserstein_pdfs
from .base import TrainingData
from .binned_density import BinnedDensityKind, BinnedDensitySettings
from .registry import register_kind
from .tasks import DensityTask

__all__ = ["ClapKind", "ClapSettings", "ClapTask", "contrastive_loss"]


class ClapSettings(BinnedDensitySettings):
    """CLAP on one target (a redshift) on a grid (SDSS in the paper: 0 to 0.4 in 180 bins),
    from images or photometry."""

    members: int = Field(5, ge=1, le=32, description="Realisations combined by harmonic "
                         "mean (10 in the paper).")
    latent_dims: int = Field(16, ge=2, description="Dimensions of the redshift latent the "
                             "neighbours are found in.")
    extra_dims: int = Field(64, ge=0, description="Further latent dimensions, for the "
                            "reconstruction (512 in the paper's image networks).")
    reconstruction: float = Field(1.0, ge=0.0, description="Weight of the reconstruction "
                                  "term.")
    contrastive: float = Field(1.0, ge=0.0, description="Weight of the contrastive term.")
    view_noise: float = Field(0.1, ge=0.0, description="Gaussian noise (input units) that "
                              "makes the second view of a galaxy.")
    k_max: int = Field(200, ge=5, description="Largest k the adaptive KNN considers (2000 "
                       "in the paper with 400,000 references).")
    recalibrate: bool = Field(True, description="Reweight KNN densities by the local PIT "
                              "distribution.")
    calibration_split: Literal["train", "val"] = Field(
        "train", description="Whose PITs choose k and recalibrate: the training galaxies' "
        "own (leave-one-out; the CLAP code's recali_op=1), or the validation galaxies' "
        "against the training references (out of sample, as the paper's SDSS default).")
    refit_epochs: int = Field(10, ge=0, description="Epochs of the refit (0: the estimator "
                              "heads give the densities, no KNN).")
    refit_lr: float = Field(1e-3, gt=0.0, description="Learning rate of the refit.")
    smooth: float = Field(1.0, ge=0.0, description="Gaussian smoothing (bins) of each "
                          "realisation's density before the harmonic mean.")


def contrastive_loss(anchor: torch.Tensor, positive: torch.Tensor) -> torch.Tensor:
    """CLAP's contrastive term: ``-log(p / (p + n))``, ``p = exp(-mean RMS distance)``
    between two views of each galaxy, ``n`` the same between each galaxy and the next one
    in the batch.

    >>> a = torch.randn(8, 4)
    >>> bool(contrastive_loss(a, a) < contrastive_loss(a, torch.randn(8, 4)))
    True
    """
    def closeness(u: torch.Tensor, v: torch.Tensor) -> torch.Tensor:
        return torch.exp(-((u - v) ** 2).mean(dim=1).clamp(min=1e-12).sqrt().mean())

    p = closeness(anchor, positive)
    n = closeness(anchor, anchor.roll(1, dims=0))
    return -torch.log(p / (p + n))


def _second_view(x: torch.Tensor, noise: float) -> torch.Tensor:
    """Another view of the same galaxies: cutouts mirrored, every input with noise."""
    view = torch.flip(x, dims=[-1]) if x.dim() == 4 else x
    return view + noise * torch.randn_like(view) if noise > 0 else view


@dataclass
class ClapTask(DensityTask):
    """Stage 1's loss per realisation: estimator cross-entropy + contrastive + reconstruction;
    predictions and metrics are those of the combined density."""

    reconstruction: float = 1.0
    contrastive: float = 1.0
    view_noise: float = 0.1
    latent_dims: int = 16  # the redshift latent: the first columns of each full latent

    def loss(self, model: nn.Module, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        known = torch.isfinite(y[:, 0])
        if not known.any():
            return torch.stack([p.sum() for p in model.parameters()]).sum() * 0.0
        x, bins = x[known], self.grid.bin_of(y[known, 0])
        terms = cast(ClapTerms, model(x, _second_view(x, self.view_noise)))
        target = reconstruction_target(x).float()
        total = x.new_zeros(())
        for latent, view, logits, rebuilt in zip(terms.latents, terms.view_latents,
                                                 terms.estimator_logits,
                                                 terms.reconstructions, strict=True):
            total = total + nn.functional.cross_entropy(logits.float(), bins)
            total = total + self.contrastive * contrastive_loss(
                latent[:, :self.latent_dims].float(), view[:, :self.latent_dims].float())
            # even at weight 0: every parameter stays in the graph (data-parallel training)
            total = total + self.reconstruction * nn.functional.mse_loss(rebuilt.float(),
                                                                         target)
        return total / len(terms.latents)


def _reconstructed(config: Mapping[str, Any]) -> int:
    """Width of what the decoder rebuilds: the photometric features, or pooled cutouts."""
    if input_source(config) == "photometry":
        return PhotometryInput.from_dict(config["photometry_input"]).n_features
    return int(config["in_bands"]) * RECONSTRUCTED_SIDE ** 2


@torch.no_grad()
def _latents(network: ClapNet, batches: Any) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(members, n, latent_dims) redshift latents, (n,) truths and ids of a split."""
    network.eval()
    latents: list[list[np.ndarray]] = [[] for _ in network.realisations]
    truths, ids = [], []
    for x, y, object_id in batches:
        known = torch.isfinite(y[:, 0])
        for m, member in enumerate(network.realisations):
            latents[m].append(member.redshift_latent(x[known]).float().numpy())
        truths.append(y[known, 0].numpy())
        ids.append(np.asarray(object_id)[known.numpy()])
    return (np.stack([np.concatenate(part) for part in latents]), np.concatenate(truths),
            np.concatenate(ids))


def _refit(network: ClapNet, member: int, data: TrainingData, ids: np.ndarray,
           targets: np.ndarray, epochs: int, lr: float) -> None:
    """Train realisation ``member``'s encoder and refit head to the KNN bin masses
    ``targets`` of the training galaxies ``ids`` (1-Wasserstein + cross-entropy)."""
    part = network.realisations[member]
    order = np.argsort(ids)
    sorted_ids = ids[order]
    params = [*part.trunk.parameters(), *part.to_latent.parameters(), *part.refit.parameters()]
    optimizer = torch.optim.Adam(params, lr=lr)
    width = network.grid.width
    with torch.enable_grad():
        for _ in range(epochs):
            part.train()
            for x, y, object_id in data.batches("train"):
                known = torch.isfinite(y[:, 0]).numpy()
                if known.sum() < 2:
                    continue
                rows = order[np.searchsorted(sorted_ids, np.asarray(object_id)[known])]
                q = torch.from_numpy(targets[rows]).float()
                log_p = torch.log_softmax(part.refit(part.redshift_latent(x[known])).float(), -1)
                p = log_p.exp()
                wasserstein = (torch.cumsum(p, -1) - torch.cumsum(q, -1)).abs().sum(-1) * width
                cross_entropy = -(q * log_p).sum(-1)
                loss = (wasserstein + cross_entropy).mean()
                optimizer.zero_grad(set_to_none=True)
                loss.backward()
                optimizer.step()
    part.eval()


@register_kind
class ClapKind(BinnedDensityKind):
    """A harmonic-mean ensemble of refit CLAP realisations: a PDF per galaxy (its columns
    and inference are the binned density's: the network's ``logits`` are the combined
    density's log-probabilities, which a softmax leaves unchanged)."""

    name = "clap"
    description = "contrastive latent -> adaptive KNN -> refit -> harmonic-mean ensemble " \
                  "(Lin et al., CLAP): calibrated PDF"
    settings = ClapSettings
    input_sources: ClassVar[tuple[str, ...]] = ("images", "photometry")
    trains_every_parameter = False  # the refit heads learn after gradient training

    def build(self, config: Mapping[str, Any]) -> nn.Module:
        return clap_network(config, lambda: build_trunk(config), _reconstructed(config))

    def task(self, config: Mapping[str, Any], targets: list[TargetInfo]) -> ClapTask:
        return ClapTask(Grid(**config["grid"]), targets[0], float(config["reconstruction"]),
                        float(config["contrastive"]), float(config["view_noise"]),
                        int(config["latent_dims"]))

    def after_fit(self, model: nn.Module, data: TrainingData) -> None:
        """Stages 2-4: adaptive-KNN densities of the training split in each realisation's
        latent, the refit to them, and a summary of the realisations for the readouts."""
        assert isinstance(model, ClapNet)
        config = data.config
        epochs = int(config["refit_epochs"])
        grid = model.grid
        summary: list[dict[str, Any]] = []
        if epochs == 0:
            model.knn_summary = {"refit": False, "members": summary}
            return
        train_latent, train_truth, train_ids = _latents(model, data.batches("train"))
        val_latent, val_truth, _ = _latents(model, data.batches("val"))
        by_val = config.get("calibration_split", "train") == "val" and len(val_truth) > 1
        val_knn = []
        for m in range(len(model.members)):
            knn_settings: dict[str, Any] = {
                "k_max": int(config["k_max"]), "recalibrate": bool(config["recalibrate"]),
                "calibration": (val_latent[m], val_truth) if by_val else None}
            knn = adaptive_knn_densities(train_latent[m], train_truth, train_latent[m], grid,
                                         query_is_reference=True, **knn_settings)
            _refit(model, m, data, train_ids, knn.pdf * grid.width, epochs,
                   float(config["refit_lr"]))
            val = adaptive_knn_densities(train_latent[m], train_truth, val_latent[m], grid,
                                         **knn_settings)
            val_knn.append(val)
            summary.append({"member": m, "train_median_k": float(np.median(knn.k)),
                            "val_median_k": float(np.median(val.k))})
        model.refitted.fill_(True)  # type: ignore[operator]
        model.eval()
        with torch.no_grad():
            refit: list[list[np.ndarray]] = [[] for _ in model.members]
            for x, y, _ in data.batches("val"):
                known = torch.isfinite(y[:, 0])
                probabilities = model.member_probabilities(x[known]).numpy()
                for m in range(len(model.members)):
                    refit[m].append(probabilities[m])
        for m, row in enumerate(summary):
            pdf = np.concatenate(refit[m]) / grid.width if refit[m] else np.empty((0,))
            if len(pdf):
                row["val_wasserstein_refit_knn"] = float(np.mean(wasserstein_pdfs(
                    pdf, val_knn[m].pdf, grid)))
        model.knn_summary = {"refit": True, "reference_galaxies": len(train_truth),
                             "calibration": "val" if by_val else "train",
                             "val_galaxies": len(val_truth), "members": summary}

    def readouts(self, model: nn.Module, data: TrainingData) -> dict[str, Any] | None:
        return model.knn_summary if isinstance(model, ClapNet) else None
