"""Kind ``pca``: the PCA-k baseline of the SFNet paper, as a model a job file can name.

A dense CNN is trained by gradient descent like ``dense_cnn``; then, in closed
form, PCA with ``k`` components is fitted to its pooled features on the
training split and one least-squares line per target to those ``k`` numbers.
The same budget of k numbers per galaxy as SFNet, chosen without looking at
the target.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import numpy as np
import torch
from pydantic import Field
from torch import nn

from ..models.pca import PCANet, PCARegression
from .base import ModelSettings, TrainingData
from .dense_cnn import DenseCNNKind
from .registry import register_kind

__all__ = ["PCAKind", "PCASettings"]

#: Training galaxies whose features the PCA and the line are fitted to.
FIT_SAMPLE = 20_000


class PCASettings(ModelSettings):
    """PCA-k: k principal components of a dense CNN's features, then a linear fit."""

    k: int = Field(ge=1, description="Principal components per galaxy.")


@register_kind
class PCAKind(DenseCNNKind):
    """Point estimates from k principal components of dense-CNN features (trained, scored
    and written as a dense CNN's, with the closed-form step in between)."""

    name = "pca"
    description = "dense CNN features -> k principal components -> linear fit (SFNet's PCA-k)"
    settings = PCASettings

    def build(self, config: Mapping[str, Any]) -> nn.Module:
        return PCANet(config["in_bands"], config["n_targets"], config["k"],
                      config.get("width", 64))

    @torch.inference_mode()
    def after_fit(self, model: nn.Module, data: TrainingData) -> None:
        """Fit PCA-k and the per-target lines on the trained backbone's training features."""
        assert isinstance(model, PCANet)
        model.eval()
        features, targets, held = [], [], 0
        for x, y, _ in data.batches("train"):
            features.append(model.features(x).numpy())
            targets.append(y.numpy())
            held += len(y)
            if held >= FIT_SAMPLE:
                break
        mean = np.array([t.mean for t in data.targets])
        std = np.array([t.std for t in data.targets])
        standardised = (np.concatenate(targets) - mean) / std
        model.set_pca(PCARegression(int(model.pca_coef.shape[1])).fit(
            np.concatenate(features), standardised))
