"""Kind ``mixture_density``: ResNet-18 (or the photometry MLP) -> a Gaussian mixture of one
target per galaxy, written as a PDF on the model's grid: a baseline of CLAP's paper."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, ClassVar

import numpy as np
import torch
from pydantic import Field
from torch import nn

from ..catalog.schema import ModelColumns
from ..models.checkpoint import Checkpoint, TargetInfo
from ..models.grid import Grid
from ..models.inputs import build_trunk
from ..models.mixture import GaussianMixtureDensity, mixture_bin_pdf, mixture_nll
from .base import ModelSettings
from .binned_density import BinnedDensityKind, BinnedDensitySettings
from .columns import density_outputs
from .registry import register_kind
from .tasks import DensityTask

__all__ = ["MixtureDensityKind", "MixtureDensitySettings", "MixtureTask"]


class MixtureDensitySettings(BinnedDensitySettings):
    """A Gaussian mixture of one target, written on ``grid``."""

    components: int = Field(5, ge=1, le=64, description="Gaussian components per galaxy.")


@dataclass
class MixtureTask(DensityTask):
    """Negative log-likelihood of the standardised truth; the density task's metrics on the
    mixture's grid PDF."""

    def loss(self, model: nn.Module, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        out = model(x)
        known = torch.isfinite(y[:, 0])
        if not known.any():
            return out.means.sum() * 0.0
        z = (y[known, 0].float() - self.target.mean) / self.target.std
        return mixture_nll(_rows(out, known), z)

    def predict(self, model: nn.Module, x: torch.Tensor) -> np.ndarray:
        return mixture_bin_pdf(model(x), self.grid, self.target.mean,
                               self.target.std).cpu().numpy()


def _rows(out: Any, rows: torch.Tensor) -> Any:
    return type(out)(out.log_weights[rows], out.means[rows], out.sigmas[rows],
                     out.features[rows])


@register_kind
class MixtureDensityKind(BinnedDensityKind):
    """The binned density's grid, columns and inputs; a mixture head in place of softmax."""

    name = "mixture_density"
    description = "ResNet-18 (or an MLP on photometry) -> Gaussian mixture of a target (PDF)"
    settings: ClassVar[type[ModelSettings]] = MixtureDensitySettings

    def build(self, config: Mapping[str, Any]) -> nn.Module:
        return GaussianMixtureDensity(config["in_bands"], int(config["components"]),
                                      config.get("width", 64), build_trunk(config))

    def task(self, config: Mapping[str, Any], targets: list[TargetInfo]) -> MixtureTask:
        return MixtureTask(Grid(**config["grid"]), targets[0])

    def infer(self, module: nn.Module, x: torch.Tensor, columns: ModelColumns,
              checkpoint: Checkpoint, truth: np.ndarray | None = None
              ) -> dict[str, np.ndarray]:
        assert columns.grid is not None
        info = checkpoint.targets[0]
        pdf = mixture_bin_pdf(module(x), columns.grid, info.mean, info.std).cpu().numpy()
        return density_outputs(pdf, columns.targets[0], columns.grid)
